//! Metric math, the part GetMetricData serves, pure: [`parse`] an `Expression` into an
//! [`Expr`], and [`evaluate`] it over the time series of the queries it names.
//!
//! ## The language
//! Numbers (`60`, `0.5`, `1e3`), query ids (`m1`: a lowercase letter, then letters,
//! digits and underscores), `+ - * /` with the usual precedence, unary minus,
//! parentheses, and `SUM`, `AVG`, `MIN`, `MAX` of an array of time series
//! (`SUM([m1, m2])`). Every other function of CloudWatch's (`FILL`, `METRICS`,
//! `SEARCH`, `RATE`, …) is refused with a message naming it.
//!
//! ## Values
//! As in CloudWatch: an operator between a time series and a number applies to each
//! value; between two time series it is computed at the timestamps both have (the
//! others have no value); `SUM`/`AVG`/`MIN`/`MAX` of an array give, at each timestamp
//! any member has, the sum/mean/least/greatest of the values there. A result that is
//! not a finite number (a division by zero) is left out, as CloudWatch leaves it out of
//! its answer. An expression must come to a time series; one that is only a number is
//! refused.
//!
//! ## Limits
//! An expression has at most [`MAX_EXPRESSION_CHARS`] characters (the model's bound),
//! so its tokens are bounded; nesting (parentheses, unary minus, function calls) at most
//! [`MAX_EXPRESSION_DEPTH`] deep, so the parser's recursion is bounded.

use std::collections::BTreeMap;

/// Longest `Expression` (characters; the model's `MetricExpression` bound).
pub const MAX_EXPRESSION_CHARS: usize = 2048;
/// Deepest nesting of parentheses, unary minus and function calls in one expression.
pub const MAX_EXPRESSION_DEPTH: usize = 32;

/// A time series: value by timestamp (epoch seconds of the period's start).
pub type Series = BTreeMap<i64, f64>;

/// An operator between two values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
}

impl Op {
    fn apply(self, a: f64, b: f64) -> f64 {
        match self {
            Op::Add => a + b,
            Op::Sub => a - b,
            Op::Mul => a * b,
            Op::Div => a / b,
        }
    }
}

/// A function of an array of time series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    /// `SUM([…])`
    Sum,
    /// `AVG([…])`
    Avg,
    /// `MIN([…])`
    Min,
    /// `MAX([…])`
    Max,
}

impl Func {
    fn named(name: &str) -> Option<Func> {
        Some(match name {
            "SUM" => Func::Sum,
            "AVG" => Func::Avg,
            "MIN" => Func::Min,
            "MAX" => Func::Max,
            _ => return None,
        })
    }

    /// The name as expressions spell it.
    fn name(self) -> &'static str {
        match self {
            Func::Sum => "SUM",
            Func::Avg => "AVG",
            Func::Min => "MIN",
            Func::Max => "MAX",
        }
    }

    /// The function of the values one timestamp has (never empty).
    fn apply(self, values: &[f64]) -> f64 {
        match self {
            Func::Sum => values.iter().sum(),
            Func::Avg => values.iter().sum::<f64>() / values.len() as f64,
            Func::Min => values.iter().copied().fold(f64::INFINITY, f64::min),
            Func::Max => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        }
    }
}

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A number.
    Number(f64),
    /// Another query's time series, by id.
    Id(String),
    /// `-e`.
    Neg(Box<Expr>),
    /// `a op b`.
    Binary(Op, Box<Expr>, Box<Expr>),
    /// `F([a, b, …])`.
    Call(Func, Vec<Expr>),
}

impl Expr {
    /// The query ids the expression names, each once, in order of appearance.
    pub fn ids(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.collect_ids(&mut out);
        out
    }

    fn collect_ids<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Expr::Number(_) => {}
            Expr::Id(id) => {
                if !out.contains(&id.as_str()) {
                    out.push(id);
                }
            }
            Expr::Neg(e) => e.collect_ids(out),
            Expr::Binary(_, a, b) => {
                a.collect_ids(out);
                b.collect_ids(out);
            }
            Expr::Call(_, args) => args.iter().for_each(|a| a.collect_ids(out)),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Number(f64),
    /// A query id (starts with a lowercase letter).
    Id(String),
    /// A function name (starts with an uppercase letter).
    Name(String),
    Op(Op),
    Open,
    Close,
    OpenBracket,
    CloseBracket,
    Comma,
}

impl Token {
    /// The token as the expression spelled it, for messages.
    fn spelled(&self) -> String {
        match self {
            Token::Number(n) => n.to_string(),
            Token::Id(s) | Token::Name(s) => s.clone(),
            Token::Op(Op::Add) => "'+'".into(),
            Token::Op(Op::Sub) => "'-'".into(),
            Token::Op(Op::Mul) => "'*'".into(),
            Token::Op(Op::Div) => "'/'".into(),
            Token::Open => "'('".into(),
            Token::Close => "')'".into(),
            Token::OpenBracket => "'['".into(),
            Token::CloseBracket => "']'".into(),
            Token::Comma => "','".into(),
        }
    }
}

fn tokens(text: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let single = match c {
            '+' => Some(Token::Op(Op::Add)),
            '-' => Some(Token::Op(Op::Sub)),
            '*' => Some(Token::Op(Op::Mul)),
            '/' => Some(Token::Op(Op::Div)),
            '(' => Some(Token::Open),
            ')' => Some(Token::Close),
            '[' => Some(Token::OpenBracket),
            ']' => Some(Token::CloseBracket),
            ',' => Some(Token::Comma),
            _ => None,
        };
        if let Some(t) = single {
            out.push(t);
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() || c == '.' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            // An exponent: `e`, an optional sign, digits.
            if i < chars.len() && matches!(chars[i], 'e' | 'E') {
                let mut j = i + 1;
                if j < chars.len() && matches!(chars[j], '+' | '-') {
                    j += 1;
                }
                if j < chars.len() && chars[j].is_ascii_digit() {
                    i = j;
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        i += 1;
                    }
                }
            }
            let s: String = chars[start..i].iter().collect();
            let n: f64 = s.parse().map_err(|_| format!("{s} is not a number"))?;
            out.push(Token::Number(n));
        } else if c.is_ascii_alphabetic() {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let s: String = chars[start..i].iter().collect();
            out.push(if c.is_ascii_lowercase() {
                Token::Id(s)
            } else {
                Token::Name(s)
            });
        } else {
            return Err(format!("the character {c:?} is not part of metric math"));
        }
    }
    Ok(out)
}

/// A recursive-descent parser over the tokens; `depth` bounds its recursion.
struct Parser {
    tokens: Vec<Token>,
    at: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn expect(&mut self, want: &Token, what: &str) -> Result<(), String> {
        match self.next() {
            Some(t) if t == *want => Ok(()),
            _ => Err(format!("{what} is expected")),
        }
    }

    fn nested<T>(&mut self, f: impl FnOnce(&mut Parser) -> Result<T, String>) -> Result<T, String> {
        if self.depth >= MAX_EXPRESSION_DEPTH {
            return Err(format!(
                "it is nested more than {MAX_EXPRESSION_DEPTH} levels deep"
            ));
        }
        self.depth += 1;
        let r = f(self);
        self.depth -= 1;
        r
    }

    /// `term (('+' | '-') term)*`
    fn sum(&mut self) -> Result<Expr, String> {
        let mut left = self.product()?;
        while let Some(Token::Op(op @ (Op::Add | Op::Sub))) = self.peek().cloned() {
            self.at += 1;
            let right = self.product()?;
            left = Expr::Binary(op, Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    /// `unary (('*' | '/') unary)*`
    fn product(&mut self) -> Result<Expr, String> {
        let mut left = self.unary()?;
        while let Some(Token::Op(op @ (Op::Mul | Op::Div))) = self.peek().cloned() {
            self.at += 1;
            let right = self.unary()?;
            left = Expr::Binary(op, Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    /// `'-' unary | primary`
    fn unary(&mut self) -> Result<Expr, String> {
        if self.peek() == Some(&Token::Op(Op::Sub)) {
            self.at += 1;
            return self.nested(|p| Ok(Expr::Neg(Box::new(p.unary()?))));
        }
        self.primary()
    }

    /// `number | id | '(' sum ')' | NAME '(' '[' sum (',' sum)* ']' ')'`
    fn primary(&mut self) -> Result<Expr, String> {
        match self.next() {
            Some(Token::Number(n)) => Ok(Expr::Number(n)),
            Some(Token::Id(id)) => Ok(Expr::Id(id)),
            Some(Token::Open) => self.nested(|p| {
                let e = p.sum()?;
                p.expect(&Token::Close, "')'")?;
                Ok(e)
            }),
            Some(Token::Name(name)) => {
                let Some(func) = Func::named(&name) else {
                    return Err(format!(
                        "the function {name} is not supported by flotilla (SUM, AVG, MIN \
                         and MAX of an array are)"
                    ));
                };
                self.nested(|p| {
                    p.expect(&Token::Open, &format!("'(' after {name}"))?;
                    p.expect(&Token::OpenBracket, &format!("an array '[…]' in {name}(…)"))?;
                    let mut args = vec![p.sum()?];
                    while p.peek() == Some(&Token::Comma) {
                        p.at += 1;
                        args.push(p.sum()?);
                    }
                    p.expect(&Token::CloseBracket, "']'")?;
                    p.expect(&Token::Close, "')'")?;
                    Ok(Expr::Call(func, args))
                })
            }
            Some(t) => Err(format!("{} is not expected here", t.spelled())),
            None => Err("it ends too soon".into()),
        }
    }
}

/// Parses an expression; the error says what is wrong with it (the caller names the
/// query).
pub fn parse(text: &str) -> Result<Expr, String> {
    let n = text.chars().count();
    if n == 0 || n > MAX_EXPRESSION_CHARS {
        return Err(format!(
            "it must have between 1 and {MAX_EXPRESSION_CHARS} characters"
        ));
    }
    let mut p = Parser {
        tokens: tokens(text)?,
        at: 0,
        depth: 0,
    };
    let e = p.sum()?;
    if let Some(t) = p.peek() {
        return Err(format!("{} is not expected here", t.spelled()));
    }
    Ok(e)
}

/// What an expression (or a part of it) comes to.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A number.
    Scalar(f64),
    /// A time series.
    Series(Series),
}

fn finite(series: impl Iterator<Item = (i64, f64)>) -> Series {
    series.filter(|(_, v)| v.is_finite()).collect()
}

/// Evaluates `expr`, reading the time series of each id with `series` (the caller
/// checked that every id [`Expr::ids`] names has one). Values that are not finite are
/// left out of series; a series answer is what an expression must give.
pub fn evaluate<'a>(
    expr: &Expr,
    series: &impl Fn(&str) -> Option<&'a Series>,
) -> Result<Value, String> {
    Ok(match expr {
        Expr::Number(n) => Value::Scalar(*n),
        Expr::Id(id) => Value::Series(
            series(id)
                .cloned()
                .ok_or_else(|| format!("{id} is not the id of a query"))?,
        ),
        Expr::Neg(e) => match evaluate(e, series)? {
            Value::Scalar(v) => Value::Scalar(-v),
            Value::Series(s) => Value::Series(s.into_iter().map(|(t, v)| (t, -v)).collect()),
        },
        Expr::Binary(op, a, b) => match (evaluate(a, series)?, evaluate(b, series)?) {
            (Value::Scalar(x), Value::Scalar(y)) => Value::Scalar(op.apply(x, y)),
            (Value::Series(s), Value::Scalar(y)) => {
                Value::Series(finite(s.into_iter().map(|(t, x)| (t, op.apply(x, y)))))
            }
            (Value::Scalar(x), Value::Series(s)) => {
                Value::Series(finite(s.into_iter().map(|(t, y)| (t, op.apply(x, y)))))
            }
            (Value::Series(l), Value::Series(r)) => Value::Series(finite(
                l.into_iter()
                    .filter_map(|(t, x)| r.get(&t).map(|y| (t, op.apply(x, *y)))),
            )),
        },
        Expr::Call(func, args) => {
            let mut at: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
            for a in args {
                match evaluate(a, series)? {
                    Value::Series(s) => {
                        for (t, v) in s {
                            at.entry(t).or_default().push(v);
                        }
                    }
                    Value::Scalar(_) => {
                        return Err(format!(
                            "{} takes an array of time series, and a member of it is a \
                             number",
                            func.name()
                        ));
                    }
                }
            }
            Value::Series(finite(at.into_iter().map(|(t, vs)| (t, func.apply(&vs)))))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(points: &[(i64, f64)]) -> Series {
        points.iter().copied().collect()
    }

    fn eval(text: &str) -> Result<Value, String> {
        let m1 = series(&[(0, 10.0), (60, 20.0), (120, 30.0)]);
        let m2 = series(&[(60, 4.0), (120, 0.0), (180, 8.0)]);
        let e = parse(text)?;
        evaluate(&e, &|id: &str| match id {
            "m1" => Some(&m1),
            "m2" => Some(&m2),
            _ => None,
        })
    }

    fn points(text: &str) -> Vec<(i64, f64)> {
        match eval(text).unwrap() {
            Value::Series(s) => s.into_iter().collect(),
            Value::Scalar(v) => panic!("{text} gave the number {v}"),
        }
    }

    #[test]
    fn arithmetic_follows_precedence_and_applies_per_timestamp() {
        assert_eq!(
            points("m1 / 60"),
            [(0, 10.0 / 60.0), (60, 20.0 / 60.0), (120, 0.5)]
        );
        assert_eq!(
            points("100 * m1 / 10"),
            [(0, 100.0), (60, 200.0), (120, 300.0)]
        );
        assert_eq!(points("1 + m1 * 2"), [(0, 21.0), (60, 41.0), (120, 61.0)]);
        assert_eq!(points("(1 + m1) * 2"), [(0, 22.0), (60, 42.0), (120, 62.0)]);
        assert_eq!(points("-m1 + 1e1"), [(0, 0.0), (60, -10.0), (120, -20.0)]);
        assert_eq!(points("m1 - 2 - 3"), [(0, 5.0), (60, 15.0), (120, 25.0)]);
        assert_eq!(eval("2 * 3 + 1").unwrap(), Value::Scalar(7.0));
    }

    #[test]
    fn two_series_combine_where_both_have_values_and_division_by_zero_is_left_out() {
        assert_eq!(points("m1 + m2"), [(60, 24.0), (120, 30.0)]);
        // 30 / 0 has no value.
        assert_eq!(points("100 * m2 / m1"), [(60, 20.0), (120, 0.0)]);
        assert_eq!(points("m1 / m2"), [(60, 5.0)]);
        assert_eq!(points("m1 / 0"), []);
    }

    #[test]
    fn array_functions_combine_every_timestamp_any_member_has() {
        assert_eq!(
            points("SUM([m1, m2])"),
            [(0, 10.0), (60, 24.0), (120, 30.0), (180, 8.0)]
        );
        assert_eq!(
            points("AVG([m1, m2])"),
            [(0, 10.0), (60, 12.0), (120, 15.0), (180, 8.0)]
        );
        assert_eq!(points("MIN([m1,m2])")[1..3], [(60, 4.0), (120, 0.0)]);
        assert_eq!(points("MAX([m1,m2])")[1..3], [(60, 20.0), (120, 30.0)]);
        assert_eq!(points("SUM([m1 * 2]) / 2"), points("m1"));
        assert!(
            eval("SUM([m1, 1])")
                .unwrap_err()
                .contains("SUM takes an array")
        );
    }

    #[test]
    fn ids_are_listed_once() {
        let e = parse("m1 + SUM([m2, m1]) / e_1").unwrap();
        assert_eq!(e.ids(), ["m1", "m2", "e_1"]);
    }

    #[test]
    fn what_is_not_metric_math_here_is_refused_with_a_reason() {
        for (text, says) in [
            ("", "between 1 and"),
            ("FILL(m1, 0)", "FILL is not supported"),
            ("SUM(m1)", "an array"),
            ("m1 +", "ends too soon"),
            ("m1 m2", "not expected"),
            ("(m1", "')'"),
            ("m1 ^ 2", "'^'"),
            ("1..2", "not a number"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
        assert!(parse(&"m".repeat(MAX_EXPRESSION_CHARS + 1)).is_err());
        let deep = format!("{}m1{}", "(".repeat(40), ")".repeat(40));
        assert!(parse(&deep).unwrap_err().contains("nested"));
        let minus = format!("{}m1", "-".repeat(40));
        assert!(parse(&minus).unwrap_err().contains("nested"));
        let ok = format!("{}m1{}", "(".repeat(30), ")".repeat(30));
        assert!(parse(&ok).is_ok());
        assert!(eval("m3 + 1").unwrap_err().contains("m3"));
    }
}
