//! The lexer: [`Token`]s read on demand from the source, plus the raw
//! reading of unquoted `=~` patterns (see [`raw_pattern_len`]), which the
//! parser asks for instead of a token.

use super::ast::Operator;
use super::error::QueryError;

/// What a token is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum TokKind {
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    AndAnd,
    OrOr,
    Bang,
    Symbol(Operator),
    Word(String),
    Quoted(String),
}

/// A token and the byte offset where it starts.
#[derive(Debug, Clone)]
pub(super) struct Token {
    pub(super) kind: TokKind,
    pub(super) pos: usize,
}

impl Token {
    /// The token as written (a quoted value in single quotes).
    pub(super) fn text(&self) -> String {
        match &self.kind {
            TokKind::LParen => "(".into(),
            TokKind::RParen => ")".into(),
            TokKind::LBracket => "[".into(),
            TokKind::RBracket => "]".into(),
            TokKind::Comma => ",".into(),
            TokKind::AndAnd => "&&".into(),
            TokKind::OrOr => "||".into(),
            TokKind::Bang => "!".into(),
            TokKind::Symbol(op) => op.as_str().into(),
            TokKind::Word(w) => w.clone(),
            TokKind::Quoted(q) => format!("'{q}'"),
        }
    }

    fn word(&self) -> Option<&str> {
        match &self.kind {
            TokKind::Word(w) => Some(w),
            _ => None,
        }
    }

    /// Whether the token is the word `kw`, in any case.
    pub(super) fn is_keyword(&self, kw: &str) -> bool {
        self.word().is_some_and(|w| w.eq_ignore_ascii_case(kw))
    }
}

/// Two-character symbols, longest first where it matters.
const SYMBOLS: &[(&str, Option<Operator>)] = &[
    ("&&", None),
    ("||", None),
    ("==", Some(Operator::Eq)),
    ("=~", Some(Operator::Matches)),
    ("!=", Some(Operator::Ne)),
    ("!~", Some(Operator::NotMatches)),
    (">=", Some(Operator::Ge)),
    ("<=", Some(Operator::Le)),
    (">", Some(Operator::Gt)),
    ("<", Some(Operator::Lt)),
];

fn symbol_at(rest: &str) -> Option<(&'static str, Option<Operator>)> {
    SYMBOLS.iter().copied().find(|(s, _)| rest.starts_with(s))
}

fn is_delimiter(c: char) -> bool {
    c.is_whitespace() || matches!(c, '(' | ')' | '[' | ']' | ',' | '\'' | '"')
}

/// Lexes the token starting at or after `i` (whitespace is skipped).
/// Returns the token and the offset just past it, or `None` at the end.
pub(super) fn lex_token(src: &str, mut i: usize) -> Result<Option<(Token, usize)>, QueryError> {
    while let Some(c) = src[i..].chars().next() {
        if !c.is_whitespace() {
            break;
        }
        i += c.len_utf8();
    }
    let Some(c) = src[i..].chars().next() else {
        return Ok(None);
    };
    let single = match c {
        '(' => Some(TokKind::LParen),
        ')' => Some(TokKind::RParen),
        '[' => Some(TokKind::LBracket),
        ']' => Some(TokKind::RBracket),
        ',' => Some(TokKind::Comma),
        _ => None,
    };
    if let Some(kind) = single {
        return Ok(Some((Token { kind, pos: i }, i + 1)));
    }
    if c == '\'' || c == '"' {
        let (value, consumed) =
            lex_quoted(&src[i..], c).ok_or(QueryError::UnterminatedQuote { position: i })?;
        let tok = Token {
            kind: TokKind::Quoted(value),
            pos: i,
        };
        return Ok(Some((tok, i + consumed)));
    }
    if let Some((sym, op)) = symbol_at(&src[i..]) {
        let kind = match (sym, op) {
            (_, Some(op)) => TokKind::Symbol(op),
            ("&&", None) => TokKind::AndAnd,
            _ => TokKind::OrOr,
        };
        return Ok(Some((Token { kind, pos: i }, i + sym.len())));
    }
    if c == '!' {
        let tok = Token {
            kind: TokKind::Bang,
            pos: i,
        };
        return Ok(Some((tok, i + 1)));
    }
    if c == '=' {
        return Err(QueryError::UnexpectedChar {
            found: '=',
            position: i,
            hint: "; did you mean `==`?",
        });
    }
    // A bare word runs to a delimiter or the start of a symbol.
    let start = i;
    while let Some(c) = src[i..].chars().next() {
        if is_delimiter(c) || (i > start && symbol_at(&src[i..]).is_some()) {
            break;
        }
        i += c.len_utf8();
    }
    let tok = Token {
        kind: TokKind::Word(src[start..i].to_string()),
        pos: start,
    };
    Ok(Some((tok, i)))
}

/// Length of an unquoted `=~` pattern at the start of `s`: up to whitespace,
/// `&&`/`||` or an unbalanced `)`, outside parentheses and character
/// classes, so `t[23]\..*` and `(t2|m5)\..*` need no quotes.
pub(super) fn raw_pattern_len(s: &str) -> usize {
    let (mut parens, mut class, mut escaped) = (0usize, false, false);
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            ']' if class => class = false,
            _ if class => {}
            '[' => class = true,
            '(' => parens += 1,
            ')' if parens == 0 => return i,
            ')' => parens -= 1,
            _ if parens == 0
                && (c.is_whitespace() || s[i..].starts_with("&&") || s[i..].starts_with("||")) =>
            {
                return i;
            }
            _ => {}
        }
    }
    s.len()
}

/// Reads a quoted value starting at the opening quote; a backslash escapes
/// the quote character or a backslash. Returns the value and bytes consumed.
fn lex_quoted(s: &str, quote: char) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((idx, c)) = chars.next() {
        if c == quote {
            return Some((out, idx + c.len_utf8()));
        }
        if c == '\\' {
            if let Some((_, next)) = chars.next() {
                if next != quote && next != '\\' {
                    out.push('\\');
                }
                out.push(next);
                continue;
            }
            return None;
        }
        out.push(c);
    }
    None
}
