//! Translates a checked filter expression (retention-filter) into a SQL condition.
//! Every value is a bound parameter; column expressions come from the service's
//! [`FilterColumns`], never from input. The NULL rule matches `Expr::eval`: a missing
//! value fails every predicate (two-valued logic, not SQL's UNKNOWN), so a filter
//! selects the same rows in SQL and in memory.

use chrono::{DateTime, Utc};
use retention_filter::{CmpOp, Expr as F, FieldPath, Literal, MatchKind};
use sea_orm::DbBackend;
use sea_orm::sea_query::{Expr, ExprTrait, LikeExpr, SimpleExpr, Value};

/// Where a service keeps each filterable field.
pub trait FilterColumns {
    /// The SQL expression holding a scalar field, or None when the path is not one.
    fn target(&self, path: &FieldPath, backend: DbBackend) -> Option<SimpleExpr>;

    /// `"v" in list_field`; services without list fields keep the default.
    fn contains(&self, _field: &FieldPath, _value: &Literal) -> Option<SimpleExpr> {
        None
    }

    /// `has(field)`: by default, the scalar is not NULL.
    fn has(&self, field: &FieldPath, backend: DbBackend) -> Option<SimpleExpr> {
        self.target(field, backend).map(|t| t.is_not_null())
    }
}

/// A condition no row satisfies (paths a checked filter cannot reach).
pub fn never() -> SimpleExpr {
    Expr::val(1).eq(0)
}

pub fn literal(l: &Literal) -> Value {
    match l {
        Literal::String(s) => s.clone().into(),
        Literal::Int(i) => (*i).into(),
        Literal::Float(f) => (*f).into(),
        Literal::Bool(b) => (*b).into(),
        Literal::Null => Value::String(None),
        Literal::Timestamp { seconds, nanos } => DateTime::<Utc>::from_timestamp(*seconds, *nanos)
            .unwrap_or_default()
            .into(),
    }
}

fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

fn compare(t: SimpleExpr, op: CmpOp, v: &Literal) -> SimpleExpr {
    if *v == Literal::Null {
        return match op {
            CmpOp::Eq => t.is_null(),
            CmpOp::Ne => t.is_not_null(),
            _ => never(),
        };
    }
    let v = literal(v);
    let cmp = match op {
        CmpOp::Eq => t.clone().eq(v),
        CmpOp::Ne => t.clone().ne(v),
        CmpOp::Lt => t.clone().lt(v),
        CmpOp::Le => t.clone().lte(v),
        CmpOp::Gt => t.clone().gt(v),
        CmpOp::Ge => t.clone().gte(v),
    };
    present(t, cmp)
}

/// Two-valued logic: `!(x == 1)` matches rows where x is NULL, as in memory.
fn present(t: SimpleExpr, predicate: SimpleExpr) -> SimpleExpr {
    t.is_not_null().and(predicate)
}

/// `expr` must have passed `check` against the service's schema.
pub fn to_condition(expr: &F, backend: DbBackend, cols: &impl FilterColumns) -> SimpleExpr {
    match expr {
        F::And(a, b) => to_condition(a, backend, cols).and(to_condition(b, backend, cols)),
        F::Or(a, b) => to_condition(a, backend, cols).or(to_condition(b, backend, cols)),
        F::Not(a) => to_condition(a, backend, cols).not(),
        F::Compare { field, op, value } => match cols.target(field, backend) {
            Some(t) => compare(t, *op, value),
            None => never(),
        },
        F::In { field, values } => match cols.target(field, backend) {
            Some(t) => present(t.clone(), t.is_in(values.iter().map(literal))),
            None => never(),
        },
        F::Contains { field, value } => cols.contains(field, value).unwrap_or_else(never),
        F::StringMatch {
            field,
            kind,
            pattern,
        } => match cols.target(field, backend) {
            Some(t) => {
                let p = escape_like(pattern);
                let p = match kind {
                    MatchKind::StartsWith => format!("{p}%"),
                    MatchKind::EndsWith => format!("%{p}"),
                    MatchKind::Contains => format!("%{p}%"),
                };
                present(t.clone(), t.like(LikeExpr::new(p).escape('\\')))
            }
            None => never(),
        },
        F::Has(field) => cols.has(field, backend).unwrap_or_else(never),
    }
}
