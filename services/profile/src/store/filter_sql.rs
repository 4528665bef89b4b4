//! Translates a checked filter expression into a SQL condition. Every value is a
//! bound parameter; column names come from a fixed table, never from input.

use chrono::{DateTime, Utc};
use retention_filter::{CmpOp, Expr as F, FieldPath, Literal, MatchKind};
use sea_orm::DbBackend;
use sea_orm::sea_query::{Expr, ExprTrait, LikeExpr, SimpleExpr, Value};

use crate::domain::validate::{is_attribute_key, is_tag};

fn column(field: &str) -> Option<&'static str> {
    Some(match field {
        "kind" => "kind",
        "gender" => "gender",
        "birth_year" => "birth_year",
        "education" => "education",
        "occupation" => "occupation",
        "income_band" => "income_band",
        "region" => "region",
        "credit_rating" => "credit_rating",
        "business_condition" => "business_condition",
        "annual_revenue" => "revenue_minor",
        "share_of_wallet" => "share_of_wallet",
        "acquisition_channel" => "acquisition_channel",
        "acquire_time" => "acquire_time",
        "create_time" => "create_time",
        "update_time" => "update_time",
        _ => return None,
    })
}

fn never() -> SimpleExpr {
    Expr::val(1).eq(0)
}

fn literal(l: &Literal) -> Value {
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

/// The SQL for `attributes.<key>` on each backend (text stored as JSON).
fn attribute(key: &str, backend: DbBackend) -> SimpleExpr {
    match backend {
        DbBackend::Postgres => Expr::cust_with_values("(CAST(attributes AS jsonb) ->> $1)", [key]),
        _ => Expr::cust_with_values("json_extract(attributes, ?)", [format!("$.\"{key}\"")]),
    }
}

fn target(path: &FieldPath, backend: DbBackend) -> Option<SimpleExpr> {
    match path.0.as_slice() {
        [map, key] if map == "attributes" => is_attribute_key(key).then(|| attribute(key, backend)),
        [field] => column(field).map(Expr::col),
        _ => None,
    }
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

/// Two-valued logic, as `Expr::eval` has it: a missing value fails the predicate
/// (FALSE, not SQL's UNKNOWN), so `!(x == 1)` matches rows where x is NULL in SQL
/// and in segmentation's in-memory evaluation alike.
fn present(t: SimpleExpr, predicate: SimpleExpr) -> SimpleExpr {
    t.is_not_null().and(predicate)
}

/// `expr` must have passed `check` against the customer schema.
pub fn to_condition(expr: &F, backend: DbBackend) -> SimpleExpr {
    match expr {
        F::And(a, b) => to_condition(a, backend).and(to_condition(b, backend)),
        F::Or(a, b) => to_condition(a, backend).or(to_condition(b, backend)),
        F::Not(a) => to_condition(a, backend).not(),
        F::Compare { field, op, value } => match target(field, backend) {
            Some(t) => compare(t, *op, value),
            None => never(),
        },
        F::In { field, values } => match target(field, backend) {
            Some(t) => present(t.clone(), t.is_in(values.iter().map(literal))),
            None => never(),
        },
        F::Contains { field, value } => match (field.0.as_slice(), value) {
            ([f], Literal::String(tag)) if f == "tags" && is_tag(tag) => {
                Expr::col("tags").like(format!("%|{tag}|%"))
            }
            _ => never(),
        },
        F::StringMatch {
            field,
            kind,
            pattern,
        } => match target(field, backend) {
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
        F::Has(field) => match field.0.as_slice() {
            [f] if f == "tags" => Expr::col("tags").ne("|"),
            _ => match target(field, backend) {
                Some(t) => t.is_not_null(),
                None => never(),
            },
        },
    }
}
