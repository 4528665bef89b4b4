//! The suite's one filter language (DESIGN §3): a small CEL subset, e.g.
//! `churn_probability > 0.7 && value_tier in ["platinum", "gold"]`,
//! `"vip" in tags`, `attributes.tier == "gold"`, `region.startsWith("EU")`,
//! `has(firmographics.credit_rating)`, `create_time >= timestamp("2024-01-01T00:00:00Z")`.
//!
//! One crate owns the syntax so that a filter a caller writes for `ListCustomers`
//! means the same thing in a segment definition. Parsing is bounded ([`Limits`]) so
//! a hostile filter cannot hurt a service; expressions are type-checked against the
//! fields a service declares ([`Schema`]) so mistakes surface as `INVALID_ARGUMENT`
//! with a position instead of as empty results; they evaluate in memory
//! ([`Expr::eval`]) or are translated to SQL by the owning service.
//!
//! Grammar (whitespace is insignificant):
//! ```text
//! expr      := or
//! or        := and ('||' and)*
//! and       := unary ('&&' unary)*
//! unary     := '!' unary | primary
//! primary   := '(' expr ')' | 'has' '(' path ')' | predicate
//! predicate := path op literal | path 'in' '[' literal (',' literal)* ','? ']'
//!            | literal 'in' path | path '.' ('startsWith'|'endsWith'|'contains') '(' string ')'
//!            | path                       (a bare boolean field: `path == true`)
//! path      := ident ('.' ident | '[' string ']')*
//! op        := '==' | '!=' | '<' | '<=' | '>' | '>='
//! literal   := string | int | float | 'true' | 'false' | 'null' | 'timestamp' '(' string ')'
//! ```
//! `!` applies to a whole predicate: `!kind == "BUSINESS"` means `!(kind == "BUSINESS")`.

mod eval;
mod parser;
#[cfg(test)]
mod proptests;
mod schema;
mod time;

pub use eval::{Record, Value};
pub use parser::{parse, parse_and_check, parse_optional, parse_with_limits};
pub use schema::{FieldType, Schema};

use std::fmt;

/// Bounds on what a caller may send: filters arrive from untrusted clients, and
/// parse time, recursion depth and the cost of evaluating or translating to SQL all
/// grow with these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest accepted filter, in bytes.
    pub max_len: usize,
    /// Deepest accepted nesting of `(` and `!`.
    pub max_depth: usize,
    /// Most predicates plus boolean operators (see [`Expr::node_count`]).
    pub max_nodes: usize,
}

impl Default for Limits {
    /// Generous for hand-written and UI-built filters, small enough that no filter
    /// is expensive.
    fn default() -> Self {
        Limits {
            max_len: 4096,
            max_depth: 12,
            max_nodes: 64,
        }
    }
}

/// A rejected filter, phrased for the API caller who wrote it (services put the
/// `Display` form into a `BadRequest` field violation).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("at position {position}: {message}")]
pub struct FilterError {
    /// Byte offset into the filter, so clients can point at the mistake.
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

/// A field reference: `attributes["plan-x"]` and `attributes.plan_x` both become
/// segments, so consumers never deal with the two spellings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldPath(pub Vec<String>);

impl FieldPath {
    /// The top-level field, which is what schemas and records are keyed by.
    pub fn first(&self) -> &str {
        self.0.first().map(String::as_str).unwrap_or("")
    }
}

pub(crate) fn is_keyword(s: &str) -> bool {
    matches!(s, "true" | "false" | "null" | "in" | "has" | "timestamp")
}

fn is_ident(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
        && !is_keyword(s)
}

impl FieldPath {
    /// The path as filter source (`attributes["plan-x"]`, `attributes.tier`), for
    /// canonical output and for error messages that quote what the caller wrote.
    pub fn to_source(&self) -> String {
        let mut out = String::new();
        for (i, seg) in self.0.iter().enumerate() {
            if i == 0 {
                out.push_str(seg);
            } else if is_ident(seg) {
                out.push('.');
                out.push_str(seg);
            } else {
                out.push('[');
                out.push_str(&quote(seg));
                out.push(']');
            }
        }
        out
    }
}

impl fmt::Display for FieldPath {
    /// Segments joined by `.`: a readable name for logs and metrics labels. Use
    /// [`FieldPath::to_source`] where the text must parse again.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

/// Comparison operators; `Lt`..`Ge` order strings bytewise, numbers numerically and
/// timestamps chronologically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    /// The source spelling, for messages and canonical output.
    pub fn as_str(self) -> &'static str {
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

/// The string methods CEL offers that map onto SQL `LIKE` without regexes (which
/// would let callers write catastrophic patterns).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchKind {
    StartsWith,
    EndsWith,
    Contains,
}

impl MatchKind {
    /// The method name as written in a filter.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchKind::StartsWith => "startsWith",
            MatchKind::EndsWith => "endsWith",
            MatchKind::Contains => "contains",
        }
    }
}

/// A constant in a filter. Timestamps are kept as unix seconds + nanos (the
/// `google.protobuf.Timestamp` shape) so services convert without a date crate here.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    String(String),
    Int(i64),
    /// Always finite when produced by the parser.
    Float(f64),
    Bool(bool),
    Null,
    Timestamp {
        seconds: i64,
        nanos: u32,
    },
}

pub(crate) fn quote(s: &str) -> String {
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
    /// Source syntax that parses back to the same literal (floats use the shortest
    /// representation that round-trips and always look like floats).
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

/// A parsed filter. `And`/`Or` chains are left-associative, as written.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    /// `field op value`; a bare boolean field `erased` parses as `erased == true`.
    Compare {
        field: FieldPath,
        op: CmpOp,
        value: Literal,
    },
    /// `field in [v1, v2]`: equality with any listed value.
    In {
        field: FieldPath,
        values: Vec<Literal>,
    },
    /// `"vip" in tags`: membership in a list field.
    Contains {
        field: FieldPath,
        value: Literal,
    },
    /// `field.startsWith("x")` and friends.
    StringMatch {
        field: FieldPath,
        kind: MatchKind,
        pattern: String,
    },
    /// `has(field)`: the field is set (lists and maps: non-empty).
    Has(FieldPath),
}

/// Binding strength of the context an expression is printed in.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Prec {
    Or,
    And,
    Unary,
}

impl Expr {
    /// Every field the filter mentions, in source order, so a service can
    /// authorize or index-plan before evaluating.
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

    /// Predicates plus boolean operators: the measure [`Limits::max_nodes`] bounds.
    pub fn node_count(&self) -> usize {
        match self {
            Expr::And(a, b) | Expr::Or(a, b) => 1 + a.node_count() + b.node_count(),
            Expr::Not(a) => 1 + a.node_count(),
            _ => 1,
        }
    }

    /// Rejects filters that would silently match nothing (unknown fields, wrong
    /// literal types, enum values that do not exist). `Expr` carries no source
    /// spans, so errors here have position 0; [`parse_and_check`] reports positions.
    pub fn check(&self, schema: &Schema) -> Result<(), FilterError> {
        schema.check(self, &[])
    }

    /// Evaluates against an in-memory record; missing or null fields match nothing
    /// except `== null` / `!= null`, the same as the SQL translations do.
    pub fn eval(&self, record: &impl Record) -> bool {
        eval::eval(self, record)
    }

    fn fmt_in(&self, f: &mut fmt::Formatter<'_>, ctx: Prec) -> fmt::Result {
        match self {
            Expr::Or(a, b) => {
                let wrap = ctx > Prec::Or;
                f.write_str(if wrap { "(" } else { "" })?;
                a.fmt_in(f, Prec::Or)?;
                f.write_str(" || ")?;
                // The parser associates to the left, so a right-hand `||` needs parens.
                b.fmt_in(f, Prec::And)?;
                f.write_str(if wrap { ")" } else { "" })
            }
            Expr::And(a, b) => {
                let wrap = ctx > Prec::And;
                f.write_str(if wrap { "(" } else { "" })?;
                a.fmt_in(f, Prec::And)?;
                f.write_str(" && ")?;
                b.fmt_in(f, Prec::Unary)?;
                f.write_str(if wrap { ")" } else { "" })
            }
            Expr::Not(a) => {
                f.write_str("!")?;
                a.fmt_in(f, Prec::Unary)
            }
            Expr::Compare { field, op, value } => {
                write!(f, "{} {} {value}", field.to_source(), op.as_str())
            }
            Expr::In { field, values } => {
                write!(f, "{} in [", field.to_source())?;
                for (i, v) in values.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            Expr::Contains { field, value } => write!(f, "{value} in {}", field.to_source()),
            Expr::StringMatch {
                field,
                kind,
                pattern,
            } => write!(
                f,
                "{}.{}({})",
                field.to_source(),
                kind.as_str(),
                quote(pattern)
            ),
            Expr::Has(field) => write!(f, "has({})", field.to_source()),
        }
    }
}

impl fmt::Display for Expr {
    /// Canonical source with only the parentheses the tree needs, so it parses back
    /// to an equal `Expr` within the same depth and term limits as the original
    /// (services log it and use it in page-token fingerprints).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_in(f, Prec::Or)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str) -> Expr {
        Expr::Compare {
            field: FieldPath(vec![name.into()]),
            op: CmpOp::Eq,
            value: Literal::Bool(true),
        }
    }

    fn b(e: Expr) -> Box<Expr> {
        Box::new(e)
    }

    #[test]
    fn display_uses_only_needed_parentheses() {
        let (a, bb, c) = (t("a"), t("b"), t("c"));
        for (e, want) in [
            (
                Expr::Or(b(Expr::Or(b(a.clone()), b(bb.clone()))), b(c.clone())),
                "a == true || b == true || c == true",
            ),
            (
                Expr::Or(b(a.clone()), b(Expr::Or(b(bb.clone()), b(c.clone())))),
                "a == true || (b == true || c == true)",
            ),
            (
                Expr::And(b(Expr::Or(b(a.clone()), b(bb.clone()))), b(c.clone())),
                "(a == true || b == true) && c == true",
            ),
            (
                Expr::Or(b(a.clone()), b(Expr::And(b(bb.clone()), b(c.clone())))),
                "a == true || b == true && c == true",
            ),
            (
                Expr::Not(b(Expr::And(b(a.clone()), b(Expr::Not(b(bb.clone())))))),
                "!(a == true && !b == true)",
            ),
        ] {
            assert_eq!(e.to_string(), want);
            assert_eq!(parse(want).unwrap(), e, "{want}");
        }
    }

    #[test]
    fn display_quotes_what_is_not_an_identifier() {
        let e = Expr::StringMatch {
            field: FieldPath(vec!["attributes".into(), "plan-x".into()]),
            kind: MatchKind::EndsWith,
            pattern: "a\"b\\c\n\u{1}é".into(),
        };
        assert_eq!(
            e.to_string(),
            r#"attributes["plan-x"].endsWith("a\"b\\c\n\u0001é")"#
        );
        assert_eq!(parse(&e.to_string()).unwrap(), e);
        let kw = FieldPath(vec!["attributes".into(), "in".into(), "ok_1".into()]);
        assert_eq!(kw.to_source(), r#"attributes["in"].ok_1"#);
        assert_eq!(kw.to_string(), "attributes.in.ok_1");
        assert_eq!(kw.first(), "attributes");
        assert_eq!(FieldPath(vec![]).first(), "");
        let lits = Expr::In {
            field: FieldPath(vec!["x".into()]),
            values: vec![
                Literal::Float(1.0),
                Literal::Float(1e300),
                Literal::Float(-2.5e-8),
                Literal::Int(i64::MIN),
                Literal::Null,
                Literal::Timestamp {
                    seconds: 1_704_067_200,
                    nanos: 5,
                },
            ],
        };
        assert_eq!(
            lits.to_string(),
            "x in [1.0, 1e300, -2.5e-8, -9223372036854775808, null, \
             timestamp(\"2024-01-01T00:00:00.000000005Z\")]"
        );
        assert_eq!(parse(&lits.to_string()).unwrap(), lits);
    }

    #[test]
    fn fields_and_node_count() {
        let e =
            parse(r#"!(a == 1 || "x" in tags) && has(attributes.k) && s.startsWith("p")"#).unwrap();
        let names: Vec<String> = e.fields().iter().map(ToString::to_string).collect();
        assert_eq!(names, ["a", "tags", "attributes.k", "s"]);
        // 4 predicates + ! + || + 2 &&
        assert_eq!(e.node_count(), 8);
    }
}
