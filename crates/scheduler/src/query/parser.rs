//! The parser: recursive descent from the grammar in the module docs to an
//! [`Expr`], validating subjects, operators per subject, and argument
//! formats (patterns, numbers, versions, dates) as it goes.

use regex::Regex;

use super::ast::{Argument, Comparison, Expr, Operator, Subject};
use super::error::QueryError;
use super::eval::parse_version;
use super::lexer::{TokKind, Token, lex_token, raw_pattern_len};
use super::time::parse_timestamp;

/// Parses a whole expression (already checked to be non-blank and within
/// the length limit): an `or` chain and nothing after it.
pub(super) fn parse_expr(source: &str) -> Result<Expr, QueryError> {
    let mut parser = Parser {
        src: source,
        pos: 0,
        peeked: None,
        depth: 0,
    };
    let expr = parser.parse_or()?;
    if let Some(tok) = parser.peek()? {
        return Err(QueryError::UnexpectedToken {
            found: tok.text(),
            expected: "`and`, `or` or the end of the expression",
            position: tok.pos,
        });
    }
    Ok(expr)
}

/// Recursive descent over tokens lexed on demand (so that `=~` patterns can
/// be read raw from the source).
struct Parser<'s> {
    src: &'s str,
    /// Offset of the first character not yet lexed.
    pos: usize,
    /// A token lexed ahead, with the offset just past it.
    peeked: Option<(Token, usize)>,
    /// Open `(`, `!` and `not` around the current position.
    depth: usize,
}

impl Parser<'_> {
    fn peek(&mut self) -> Result<Option<&Token>, QueryError> {
        if self.peeked.is_none() {
            self.peeked = lex_token(self.src, self.pos)?;
        }
        Ok(self.peeked.as_ref().map(|(t, _)| t))
    }

    /// Whether the next token satisfies `pred` (lexing it if needed).
    fn next_is(&mut self, pred: impl Fn(&Token) -> bool) -> Result<bool, QueryError> {
        Ok(self.peek()?.is_some_and(pred))
    }

    fn bump(&mut self) -> Result<Option<Token>, QueryError> {
        self.peek()?;
        Ok(self.peeked.take().map(|(tok, end)| {
            self.pos = end;
            tok
        }))
    }

    fn expect_some(&mut self, expected: &'static str) -> Result<Token, QueryError> {
        self.bump()?.ok_or(QueryError::UnexpectedEnd {
            expected,
            position: self.src.len(),
        })
    }

    /// An `=~` argument: quoted, or raw up to whitespace (see
    /// [`raw_pattern_len`]).
    fn parse_pattern(&mut self) -> Result<(String, usize), QueryError> {
        if self.peeked.is_some() {
            return self.parse_value();
        }
        let rest = &self.src[self.pos..];
        let start = self.pos + (rest.len() - rest.trim_start().len());
        let body = &self.src[start..];
        if body.starts_with(['\'', '"']) {
            return self.parse_value();
        }
        let len = raw_pattern_len(body);
        if len == 0 {
            // Nothing usable: let the token path report what is there.
            return self.parse_value();
        }
        self.pos = start + len;
        Ok((body[..len].to_string(), start))
    }

    fn parse_or(&mut self) -> Result<Expr, QueryError> {
        self.parse_chain(&TokKind::OrOr, "or", Self::parse_and, Expr::Or)
    }

    fn parse_and(&mut self) -> Result<Expr, QueryError> {
        self.parse_chain(&TokKind::AndAnd, "and", Self::parse_unary, Expr::And)
    }

    /// `operand ((symbol | keyword) operand)*`, joined with `join` when
    /// there is more than one operand.
    fn parse_chain(
        &mut self,
        symbol: &TokKind,
        keyword: &str,
        operand: fn(&mut Self) -> Result<Expr, QueryError>,
        join: fn(Vec<Expr>) -> Expr,
    ) -> Result<Expr, QueryError> {
        let mut terms = vec![operand(self)?];
        while self.next_is(|t| t.kind == *symbol || t.is_keyword(keyword))? {
            self.bump()?;
            terms.push(operand(self)?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            join(terms)
        })
    }

    fn parse_unary(&mut self) -> Result<Expr, QueryError> {
        const EXPECTED: &str = "a subject, `not` or `(`";
        let tok = self.expect_some(EXPECTED)?;
        let nests = matches!(&tok.kind, TokKind::Bang | TokKind::LParen)
            || matches!(&tok.kind, TokKind::Word(w) if w.eq_ignore_ascii_case("not"));
        if !nests {
            return self.parse_leaf(tok);
        }
        if self.depth >= super::MAX_NESTING {
            return Err(QueryError::TooDeep { position: tok.pos });
        }
        self.depth += 1;
        let nested = self.parse_nested(&tok);
        self.depth -= 1;
        nested
    }

    /// What follows a `!`, `not` or `(`.
    fn parse_nested(&mut self, tok: &Token) -> Result<Expr, QueryError> {
        match &tok.kind {
            TokKind::LParen => {
                let inner = self.parse_or()?;
                let close = self.expect_some("`)`")?;
                if close.kind != TokKind::RParen {
                    return Err(QueryError::UnexpectedToken {
                        found: close.text(),
                        expected: "`)`, `and` or `or`",
                        position: close.pos,
                    });
                }
                Ok(inner)
            }
            _ => Ok(Expr::Not(Box::new(self.parse_unary()?))),
        }
    }

    /// A comparison (`subject operator argument`), or an error for any other token.
    fn parse_leaf(&mut self, tok: Token) -> Result<Expr, QueryError> {
        match &tok.kind {
            TokKind::Word(w) => {
                let subject = parse_subject(w, tok.pos)?;
                self.parse_comparison(subject)
            }
            _ => Err(QueryError::UnexpectedToken {
                found: tok.text(),
                expected: "a subject, `not` or `(`",
                position: tok.pos,
            }),
        }
    }

    fn parse_operator(&mut self) -> Result<(Operator, Token), QueryError> {
        const EXPECTED: &str =
            "an operator (==, !=, >, >=, <, <=, exists, !exists, in, !in, =~, !~)";
        let tok = self.expect_some(EXPECTED)?;
        let op = match &tok.kind {
            TokKind::Symbol(op) => Some(*op),
            TokKind::Word(w) => Operator::from_word(w),
            TokKind::Bang => {
                // `!exists` / `!in`: the word must follow the bang directly.
                let adjacent = tok.pos + 1;
                let op = match self.peek()? {
                    Some(next) if next.pos == adjacent && next.is_keyword("exists") => {
                        Some(Operator::NotExists)
                    }
                    Some(next) if next.pos == adjacent && next.is_keyword("in") => {
                        Some(Operator::NotIn)
                    }
                    _ => None,
                };
                if op.is_some() {
                    self.bump()?;
                }
                op
            }
            _ => None,
        };
        match op {
            Some(op) => Ok((op, tok)),
            None => Err(QueryError::UnexpectedToken {
                found: tok.text(),
                expected: EXPECTED,
                position: tok.pos,
            }),
        }
    }

    fn parse_comparison(&mut self, subject: Subject) -> Result<Expr, QueryError> {
        let (operator, op_tok) = self.parse_operator()?;
        if !operator_allowed(&subject, operator) {
            return Err(QueryError::UnsupportedOperator {
                operator: op_tok.text(),
                subject: subject.to_string(),
                position: op_tok.pos,
            });
        }
        let argument = match operator {
            Operator::Exists | Operator::NotExists => Argument::None,
            Operator::In | Operator::NotIn => Argument::List(self.parse_list()?),
            Operator::Matches | Operator::NotMatches => {
                let (pattern, pos) = self.parse_pattern()?;
                let anchored = format!("^(?:{pattern})$");
                let re = Regex::new(&anchored).map_err(|e| QueryError::InvalidPattern {
                    pattern: pattern.clone(),
                    position: pos,
                    reason: e.to_string(),
                })?;
                Argument::Pattern(re)
            }
            _ => {
                let (value, pos) = self.parse_value()?;
                convert_scalar(&subject, value, pos)?
            }
        };
        Ok(Expr::Compare(Comparison {
            subject,
            operator,
            argument,
        }))
    }

    fn parse_value(&mut self) -> Result<(String, usize), QueryError> {
        const EXPECTED: &str = "a value";
        let tok = self.expect_some(EXPECTED)?;
        match tok.kind {
            TokKind::Word(w) => Ok((w, tok.pos)),
            TokKind::Quoted(q) => Ok((q, tok.pos)),
            _ => Err(QueryError::UnexpectedToken {
                found: tok.text(),
                expected: EXPECTED,
                position: tok.pos,
            }),
        }
    }

    fn parse_list(&mut self) -> Result<Vec<String>, QueryError> {
        let open = self.expect_some("`[` starting a list")?;
        let close_kind = match open.kind {
            TokKind::LBracket => TokKind::RBracket,
            TokKind::LParen => TokKind::RParen,
            _ => {
                return Err(QueryError::UnexpectedToken {
                    found: open.text(),
                    expected: "`[` starting a list",
                    position: open.pos,
                });
            }
        };
        let mut values = Vec::new();
        loop {
            values.push(self.parse_value()?.0);
            let tok = self.expect_some("`,` or the end of the list")?;
            if tok.kind == TokKind::Comma {
                continue;
            }
            if tok.kind == close_kind {
                return Ok(values);
            }
            return Err(QueryError::UnexpectedToken {
                found: tok.text(),
                expected: "`,` or the end of the list",
                position: tok.pos,
            });
        }
    }
}

fn parse_subject(word: &str, pos: usize) -> Result<Subject, QueryError> {
    if let Some(name) = word.strip_prefix("attribute:") {
        if name.is_empty() {
            return Err(QueryError::EmptyAttributeName { position: pos });
        }
        return Ok(Subject::Attribute(name.to_string()));
    }
    Ok(match word {
        "task:group" => Subject::TaskGroup,
        "agentConnected" => Subject::AgentConnected,
        "agentVersion" => Subject::AgentVersion,
        "ec2InstanceId" => Subject::Ec2InstanceId,
        "registeredAt" => Subject::RegisteredAt,
        "runningTasksCount" => Subject::RunningTasksCount,
        _ => {
            return Err(QueryError::UnknownSubject {
                subject: word.to_string(),
                position: pos,
            });
        }
    })
}

fn operator_allowed(subject: &Subject, op: Operator) -> bool {
    use Operator::*;
    match subject {
        Subject::Attribute(_) => true,
        Subject::TaskGroup => matches!(
            op,
            Eq | Ne | In | NotIn | Matches | NotMatches | Exists | NotExists
        ),
        Subject::AgentConnected | Subject::Ec2InstanceId => {
            matches!(op, Eq | Ne | In | NotIn | Matches | NotMatches)
        }
        Subject::AgentVersion | Subject::RegisteredAt | Subject::RunningTasksCount => {
            matches!(op, Eq | Ne | Gt | Ge | Lt | Le)
        }
    }
}

fn convert_scalar(subject: &Subject, value: String, pos: usize) -> Result<Argument, QueryError> {
    Ok(match subject {
        Subject::RunningTasksCount => match value.parse::<u64>() {
            Ok(n) => Argument::Count(n),
            Err(_) => {
                return Err(QueryError::InvalidNumber {
                    value,
                    position: pos,
                });
            }
        },
        Subject::AgentVersion => match parse_version(&value) {
            Some(v) => Argument::Version(v),
            None => {
                return Err(QueryError::InvalidVersion {
                    value,
                    position: pos,
                });
            }
        },
        Subject::RegisteredAt => match parse_timestamp(&value) {
            Some(t) => Argument::Time(t),
            None => {
                return Err(QueryError::InvalidDate {
                    value,
                    position: pos,
                });
            }
        },
        Subject::Attribute(_)
        | Subject::TaskGroup
        | Subject::AgentConnected
        | Subject::Ec2InstanceId => Argument::Value(value),
    })
}
