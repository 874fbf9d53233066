//! [`QueryError`]: why an expression could not be parsed, with the byte
//! offset of the problem.

use super::MAX_EXPRESSION_LEN;

/// Why an expression could not be parsed. Every variant carries the byte
/// offset (0-based) into the expression where the problem was found, and its
/// message names that position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// The expression is empty or blank. Callers that treat an empty filter
    /// as "everything" must check for that before parsing.
    #[error("empty expression")]
    Empty,
    /// The expression is longer than [`MAX_EXPRESSION_LEN`].
    #[error("expression is {len} bytes long; the limit is {MAX_EXPRESSION_LEN}")]
    TooLong {
        /// Length of the rejected expression.
        len: usize,
    },
    /// `(`, `!` or `not` nest deeper than [`MAX_NESTING`](super::MAX_NESTING).
    #[error(
        "expression nests `(`, `!` or `not` more than {} deep at position {position}",
        super::MAX_NESTING
    )]
    TooDeep {
        /// Offset of the first token past the limit.
        position: usize,
    },
    /// A quoted value has no closing quote.
    #[error("unterminated quoted value starting at position {position}")]
    UnterminatedQuote {
        /// Offset of the opening quote.
        position: usize,
    },
    /// A character that cannot start any token (for example a lone `=`).
    #[error("unexpected character `{found}` at position {position}{hint}")]
    UnexpectedChar {
        /// The offending character.
        found: char,
        /// Its offset.
        position: usize,
        /// A suggestion such as "; did you mean `==`?" (may be empty).
        hint: &'static str,
    },
    /// The expression ended where more was needed.
    #[error("unexpected end of expression at position {position}: expected {expected}")]
    UnexpectedEnd {
        /// What the parser was looking for.
        expected: &'static str,
        /// Offset of the end of the expression.
        position: usize,
    },
    /// A token that does not fit the grammar at this point.
    #[error("unexpected `{found}` at position {position}: expected {expected}")]
    UnexpectedToken {
        /// The token as written.
        found: String,
        /// What the parser was looking for.
        expected: &'static str,
        /// Offset of the token.
        position: usize,
    },
    /// The subject is not one ECS defines.
    #[error(
        "unknown subject `{subject}` at position {position}: expected attribute:<name>, task:group, \
         agentConnected, agentVersion, ec2InstanceId, registeredAt or runningTasksCount"
    )]
    UnknownSubject {
        /// The subject as written.
        subject: String,
        /// Its offset.
        position: usize,
    },
    /// `attribute:` with no name after the colon.
    #[error("missing attribute name after `attribute:` at position {position}")]
    EmptyAttributeName {
        /// Offset of the subject.
        position: usize,
    },
    /// The operator is valid but not for this subject.
    #[error(
        "operator `{operator}` at position {position} is not supported for subject `{subject}`"
    )]
    UnsupportedOperator {
        /// The operator as written.
        operator: String,
        /// The subject it was applied to.
        subject: String,
        /// Offset of the operator.
        position: usize,
    },
    /// An `=~`/`!~` pattern that does not compile.
    #[error("invalid pattern `{pattern}` at position {position}: {reason}")]
    InvalidPattern {
        /// The pattern as written.
        pattern: String,
        /// Offset of the pattern.
        position: usize,
        /// The regex compiler's complaint.
        reason: String,
    },
    /// A `runningTasksCount` argument that is not a non-negative integer.
    #[error("invalid number `{value}` at position {position}: expected a non-negative integer")]
    InvalidNumber {
        /// The value as written.
        value: String,
        /// Its offset.
        position: usize,
    },
    /// An `agentVersion` argument that is not a dotted version.
    #[error(
        "invalid version `{value}` at position {position}: expected a dotted version such as 1.14.5"
    )]
    InvalidVersion {
        /// The value as written.
        value: String,
        /// Its offset.
        position: usize,
    },
    /// A `registeredAt` argument in none of the accepted date formats.
    #[error(
        "invalid date `{value}` at position {position}: expected 2018-06-18T22:28:28+00:00, \
         2018-06-18T22:28:28Z, 2018-06-18T22:28:28 or 2018-06-18"
    )]
    InvalidDate {
        /// The value as written.
        value: String,
        /// Its offset.
        position: usize,
    },
}

impl QueryError {
    /// Byte offset (0-based) of the problem in the expression, if it has one.
    pub fn position(&self) -> Option<usize> {
        match self {
            QueryError::Empty | QueryError::TooLong { .. } => None,
            QueryError::UnterminatedQuote { position }
            | QueryError::TooDeep { position }
            | QueryError::UnexpectedChar { position, .. }
            | QueryError::UnexpectedEnd { position, .. }
            | QueryError::UnexpectedToken { position, .. }
            | QueryError::UnknownSubject { position, .. }
            | QueryError::EmptyAttributeName { position }
            | QueryError::UnsupportedOperator { position, .. }
            | QueryError::InvalidPattern { position, .. }
            | QueryError::InvalidNumber { position, .. }
            | QueryError::InvalidVersion { position, .. }
            | QueryError::InvalidDate { position, .. } => Some(*position),
        }
    }
}
