//! The suite's one filter language (DESIGN §3): a small CEL subset, e.g.
//! `churn_probability > 0.7 && value_tier in ["platinum", "gold"]`,
//! `"vip" in tags`, `attributes.tier == "gold"`, `region.startsWith("EU")`,
//! `has(firmographics)`, `create_time >= timestamp("2024-01-01T00:00:00Z")`.
//!
//! Parsing is bounded (length, depth, term count) so hostile filters cannot hurt a
//! service; expressions are type-checked against a per-service [`Schema`]; they
//! evaluate in memory ([`Expr::eval`]) or are translated to SQL by the service.

mod eval;
mod parser;
mod schema;
mod time;

pub use eval::{Record, Value};
pub use parser::{parse, parse_optional, parse_with_limits};
pub use schema::{FieldType, Schema};

use std::fmt;

/// Bounds on what a caller may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_len: usize,
    pub max_depth: usize,
    pub max_nodes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_len: 4096,
            max_depth: 12,
            max_nodes: 64,
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("at position {position}: {message}")]
pub struct FilterError {
    /// Byte offset into the filter.
    pub position: usize,
    pub message: String,
}

impl FilterError {
    pub(crate) fn new(position: usize, message: impl Into<String>) -> Self {
        FilterError {
            position,
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldPath(pub Vec<String>);

impl FieldPath {
    pub fn first(&self) -> &str {
        self.0.first().map(String::as_str).unwrap_or("")
    }
}

fn is_ident(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
        && !matches!(s, "true" | "false" | "null" | "in" | "has" | "timestamp")
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            if i == 0 {
                f.write_str(seg)?;
            } else if is_ident(seg) {
                write!(f, ".{seg}")?;
            } else {
                write!(f, "[{}]", quote(seg))?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchKind {
    StartsWith,
    EndsWith,
    Contains,
}

impl MatchKind {
    fn as_str(self) -> &'static str {
        match self {
            MatchKind::StartsWith => "startsWith",
            MatchKind::EndsWith => "endsWith",
            MatchKind::Contains => "contains",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    String(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Null,
    Timestamp { seconds: i64, nanos: u32 },
}

fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::String(s) => f.write_str(&quote(s)),
            Literal::Int(i) => write!(f, "{i}"),
            Literal::Float(x) => write!(f, "{x:?}"),
            Literal::Bool(b) => write!(f, "{b}"),
            Literal::Null => f.write_str("null"),
            Literal::Timestamp { seconds, nanos } => {
                write!(
                    f,
                    "timestamp({})",
                    quote(&time::format_rfc3339(*seconds, *nanos))
                )
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Compare {
        field: FieldPath,
        op: CmpOp,
        value: Literal,
    },
    In {
        field: FieldPath,
        values: Vec<Literal>,
    },
    /// `"vip" in tags`: membership in a list field.
    Contains {
        field: FieldPath,
        value: Literal,
    },
    StringMatch {
        field: FieldPath,
        kind: MatchKind,
        pattern: String,
    },
    Has(FieldPath),
}

impl Expr {
    pub fn fields(&self) -> Vec<&FieldPath> {
        let mut out = Vec::new();
        self.collect_fields(&mut out);
        out
    }

    fn collect_fields<'a>(&'a self, out: &mut Vec<&'a FieldPath>) {
        match self {
            Expr::And(a, b) | Expr::Or(a, b) => {
                a.collect_fields(out);
                b.collect_fields(out);
            }
            Expr::Not(a) => a.collect_fields(out),
            Expr::Compare { field, .. }
            | Expr::In { field, .. }
            | Expr::Contains { field, .. }
            | Expr::StringMatch { field, .. }
            | Expr::Has(field) => out.push(field),
        }
    }

    /// Predicates plus boolean operators.
    pub fn node_count(&self) -> usize {
        match self {
            Expr::And(a, b) | Expr::Or(a, b) => 1 + a.node_count() + b.node_count(),
            Expr::Not(a) => 1 + a.node_count(),
            _ => 1,
        }
    }

    pub fn check(&self, schema: &Schema) -> Result<(), FilterError> {
        schema.check(self)
    }

    pub fn eval(&self, record: &impl Record) -> bool {
        eval::eval(self, record)
    }
}

impl fmt::Display for Expr {
    /// Canonical, fully parenthesised source that parses back to the same tree.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::And(a, b) => write!(f, "({a} && {b})"),
            Expr::Or(a, b) => write!(f, "({a} || {b})"),
            Expr::Not(a) => write!(f, "!{a}"),
            Expr::Compare { field, op, value } => write!(f, "{field} {} {value}", op.as_str()),
            Expr::In { field, values } => {
                let vs: Vec<String> = values.iter().map(ToString::to_string).collect();
                write!(f, "{field} in [{}]", vs.join(", "))
            }
            Expr::Contains { field, value } => write!(f, "{value} in {field}"),
            Expr::StringMatch {
                field,
                kind,
                pattern,
            } => {
                write!(f, "{field}.{}({})", kind.as_str(), quote(pattern))
            }
            Expr::Has(field) => write!(f, "has({field})"),
        }
    }
}
