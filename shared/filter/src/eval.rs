//! In-memory evaluation over a record (segmentation evaluates segment filters on
//! per-customer insight records this way). Semantics match the SQL translations the
//! services use: a missing or null field satisfies no predicate except `== null`
//! and `!= null`.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use crate::{CmpOp, Expr, FieldPath, Literal, MatchKind};

/// A field's value in a [`Record`]. `List` and `Map` carry strings only because
/// that is all the filter language can test them against.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    Timestamp { seconds: i64, nanos: u32 },
    List(Vec<String>),
    Map(BTreeMap<String, String>),
}

/// What a filter is evaluated against. Implementors answer for top-level field
/// names only (returning [`Value::Null`] for unknown ones); the evaluator handles
/// `map.key` lookups, so records need not understand paths.
pub trait Record {
    fn get(&self, field: &str) -> Value;
}

fn lookup(record: &impl Record, path: &FieldPath) -> Value {
    match path.0.as_slice() {
        [field] => record.get(field),
        [field, key] => match record.get(field) {
            Value::Map(m) => m.get(key).cloned().map_or(Value::Null, Value::String),
            _ => Value::Null,
        },
        _ => Value::Null,
    }
}

/// Exact comparison of an integer with a float (casting either way loses precision
/// beyond 2^53, which would make `n == 9007199254740993` match the wrong rows).
fn cmp_int_float(i: i64, f: f64) -> Option<Ordering> {
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    if f.is_nan() {
        return None;
    }
    if f >= TWO_63 {
        return Some(Ordering::Less);
    }
    if f < -TWO_63 {
        return Some(Ordering::Greater);
    }
    let whole = f.trunc();
    // In range [-2^63, 2^63), so the cast is exact.
    let ord = i.cmp(&(whole as i64));
    if ord != Ordering::Equal {
        return Some(ord);
    }
    // `f - whole` is exact; a positive fraction means `f` is just above `i`.
    (0.0).partial_cmp(&(f - whole))
}

fn order(v: &Value, l: &Literal) -> Option<Ordering> {
    match (v, l) {
        (Value::Int(a), Literal::Int(b)) => Some(a.cmp(b)),
        (Value::Int(a), Literal::Float(b)) => cmp_int_float(*a, *b),
        (Value::Float(a), Literal::Int(b)) => cmp_int_float(*b, *a).map(Ordering::reverse),
        (Value::Float(a), Literal::Float(b)) => a.partial_cmp(b),
        (Value::String(a), Literal::String(b)) => Some(a.cmp(b)),
        (Value::Bool(a), Literal::Bool(b)) => Some(a.cmp(b)),
        (
            Value::Timestamp { seconds, nanos },
            Literal::Timestamp {
                seconds: s2,
                nanos: n2,
            },
        ) => Some((seconds, nanos).cmp(&(s2, n2))),
        _ => None,
    }
}

fn compare(v: &Value, op: CmpOp, l: &Literal) -> bool {
    if *l == Literal::Null {
        let is_null = *v == Value::Null;
        return match op {
            CmpOp::Eq => is_null,
            CmpOp::Ne => !is_null,
            _ => false,
        };
    }
    // Null, a missing field or a value of another type matches no comparison, not
    // even `!=`, as a NULL column would not in SQL.
    let Some(ord) = order(v, l) else {
        return false;
    };
    match op {
        CmpOp::Eq => ord == Ordering::Equal,
        CmpOp::Ne => ord != Ordering::Equal,
        CmpOp::Lt => ord == Ordering::Less,
        CmpOp::Le => ord != Ordering::Greater,
        CmpOp::Gt => ord == Ordering::Greater,
        CmpOp::Ge => ord != Ordering::Less,
    }
}

pub(crate) fn eval(e: &Expr, r: &impl Record) -> bool {
    match e {
        Expr::And(a, b) => eval(a, r) && eval(b, r),
        Expr::Or(a, b) => eval(a, r) || eval(b, r),
        Expr::Not(a) => !eval(a, r),
        Expr::Compare { field, op, value } => compare(&lookup(r, field), *op, value),
        Expr::In { field, values } => {
            let v = lookup(r, field);
            values.iter().any(|l| compare(&v, CmpOp::Eq, l))
        }
        Expr::Contains { field, value } => match (lookup(r, field), value) {
            (Value::List(items), Literal::String(s)) => items.contains(s),
            _ => false,
        },
        Expr::StringMatch {
            field,
            kind,
            pattern,
        } => match lookup(r, field) {
            Value::String(s) => match kind {
                MatchKind::StartsWith => s.starts_with(pattern.as_str()),
                MatchKind::EndsWith => s.ends_with(pattern.as_str()),
                MatchKind::Contains => s.contains(pattern.as_str()),
            },
            _ => false,
        },
        Expr::Has(field) => match lookup(r, field) {
            Value::Null => false,
            Value::List(l) => !l.is_empty(),
            Value::Map(m) => !m.is_empty(),
            _ => true,
        },
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::parse;

    struct R(HashMap<&'static str, Value>);

    impl Record for R {
        fn get(&self, field: &str) -> Value {
            self.0.get(field).cloned().unwrap_or(Value::Null)
        }
    }

    fn record() -> R {
        R(HashMap::from([
            ("churn_probability", Value::Float(0.82)),
            ("value_tier", Value::String("gold".into())),
            ("purchases", Value::Int(7)),
            ("big", Value::Int(9_007_199_254_740_993)),
            ("tags", Value::List(vec!["vip".into()])),
            ("no_tags", Value::List(vec![])),
            (
                "attributes",
                Value::Map(BTreeMap::from([
                    ("tier".into(), "gold".into()),
                    ("plan-x".into(), "pro".into()),
                ])),
            ),
            ("region", Value::String("EU-West".into())),
            ("kind", Value::String("INDIVIDUAL".into())),
            ("erased", Value::Bool(false)),
            ("active", Value::Bool(true)),
            ("nan", Value::Float(f64::NAN)),
            ("explicit_null", Value::Null),
            (
                "create_time",
                Value::Timestamp {
                    seconds: 1_704_067_200,
                    nanos: 5,
                },
            ),
        ]))
    }

    #[test]
    fn evaluates_each_construct() {
        let r = record();
        for (src, want) in [
            (
                "churn_probability > 0.7 && value_tier in [\"platinum\",\"gold\"]",
                true,
            ),
            ("churn_probability > 0.9", false),
            ("churn_probability >= 1", false),
            (
                "purchases >= 7.0 && purchases < 8 && purchases <= 7 && purchases > 6.5",
                true,
            ),
            ("purchases == 7.5 || purchases != 7", false),
            // Exact beyond 2^53: the float literal 9007199254740992.0 is not `big`.
            ("big > 9007199254740992.0 && big == 9007199254740993", true),
            ("big == 9007199254740992.0", false),
            ("purchases < 1e300 && purchases > -1e300", true),
            (
                "\"vip\" in tags && !(\"b2b\" in tags) && !('vip' in no_tags)",
                true,
            ),
            ("'vip' in region || 'vip' in missing", false),
            (
                "attributes.tier == \"gold\" && attributes[\"plan-x\"] >= 'pro'",
                true,
            ),
            ("attributes.other == null && attributes.other != 'x'", false),
            ("attributes.other == null", true),
            (
                "attributes.tier.startsWith('go') && attributes.a.b == null",
                true,
            ),
            ("attributes == null || attributes != null", true),
            (
                "region.startsWith(\"EU\") && region.endsWith(\"West\") && region.contains(\"-\")",
                true,
            ),
            ("region.startsWith(\"eu\") || missing.contains('')", false),
            ("!(kind == \"BUSINESS\") || region.startsWith(\"EU\")", true),
            (
                "has(tags) && !has(no_tags) && !has(missing) && has(attributes.tier)",
                true,
            ),
            (
                "has(attributes.nope) || has(explicit_null) || has(tags.vip)",
                false,
            ),
            ("has(erased) && !erased && active && active == true", true),
            ("missing == 1 || missing != 1 || missing < 1", false),
            (
                "missing == null && explicit_null == null && purchases != null",
                true,
            ),
            (
                "kind == null || kind in ['BUSINESS', null] || missing in [1, 2]",
                false,
            ),
            ("missing in [1, null]", true),
            ("nan == 1.0 || nan != 1.0 || nan < 1 || nan > 1", false),
            ("value_tier == 7 || purchases == '7' || erased == 0", false),
            (
                "region > 'EU' && region < 'EU-Xest' && !(region > 'EU-West')",
                true,
            ),
            (
                "create_time > timestamp('2024-01-01T00:00:00Z') && \
                 create_time < timestamp('2024-01-01T00:00:00.000000006Z') && \
                 create_time == timestamp('2024-01-01T01:00:00.000000005+01:00')",
                true,
            ),
            ("create_time > '2024' || create_time == 1704067200", false),
        ] {
            assert_eq!(parse(src).unwrap().eval(&r), want, "{src}");
        }
    }

    #[test]
    fn int_float_comparison_is_exact() {
        use Ordering::*;
        for (i, f, want) in [
            (0, 0.0, Some(Equal)),
            (0, -0.0, Some(Equal)),
            (1, 0.5, Some(Greater)),
            (-1, -0.5, Some(Less)),
            (-1, -1.5, Some(Greater)),
            (i64::MAX, 9_223_372_036_854_775_808.0, Some(Less)),
            (i64::MIN, -9_223_372_036_854_775_808.0, Some(Equal)),
            (i64::MIN, -1e19, Some(Greater)),
            (
                9_007_199_254_740_993,
                9_007_199_254_740_992.0,
                Some(Greater),
            ),
            (5, f64::INFINITY, Some(Less)),
            (5, f64::NEG_INFINITY, Some(Greater)),
            (5, f64::NAN, None),
        ] {
            assert_eq!(cmp_int_float(i, f), want, "{i} vs {f}");
        }
    }
}
