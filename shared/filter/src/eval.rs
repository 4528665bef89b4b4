//! In-memory evaluation over a record (segmentation evaluates segment filters on
//! customer insights this way).

use std::cmp::Ordering;
use std::collections::BTreeMap;

use crate::{CmpOp, Expr, FieldPath, Literal, MatchKind};

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

/// A record a filter is evaluated against; `get` takes a top-level field name.
pub trait Record {
    fn get(&self, field: &str) -> Value;
}

fn lookup(record: &impl Record, path: &FieldPath) -> Value {
    match (record.get(path.first()), path.0.get(1)) {
        (Value::Map(m), Some(key)) => m.get(key).cloned().map_or(Value::Null, Value::String),
        (_, Some(_)) => Value::Null,
        (v, None) => v,
    }
}

fn order(v: &Value, l: &Literal) -> Option<Ordering> {
    match (v, l) {
        (Value::Int(a), Literal::Int(b)) => Some(a.cmp(b)),
        (Value::Int(a), Literal::Float(b)) => (*a as f64).partial_cmp(b),
        (Value::Float(a), Literal::Int(b)) => a.partial_cmp(&(*b as f64)),
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
    // Missing values match nothing but `!=`, as in SQL's `IS DISTINCT FROM`-free world
    // they would be NULL and the row would not match either way.
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

    use proptest::prelude::*;

    use super::*;
    use crate::{Limits, parse, parse_with_limits};

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
            ("tags", Value::List(vec!["vip".into()])),
            (
                "attributes",
                Value::Map(BTreeMap::from([("tier".into(), "gold".into())])),
            ),
            ("region", Value::String("EU-West".into())),
        ]))
    }

    #[test]
    fn evaluates_the_documented_examples() {
        let r = record();
        for (src, want) in [
            (
                "churn_probability > 0.7 && value_tier in [\"platinum\",\"gold\"]",
                true,
            ),
            ("churn_probability > 0.9", false),
            ("purchases >= 7.0 && purchases < 8", true),
            ("\"vip\" in tags && !(\"b2b\" in tags)", true),
            (
                "attributes.tier == \"gold\" && attributes.other == null",
                true,
            ),
            (
                "region.startsWith(\"EU\") && region.endsWith(\"West\") && region.contains(\"-\")",
                true,
            ),
            ("has(tags) && !has(missing)", true),
            ("missing == 1 || missing != 1", false),
        ] {
            assert_eq!(parse(src).unwrap().eval(&r), want, "{src}");
        }
    }

    fn leaf() -> impl Strategy<Value = Expr> {
        let field = prop_oneof![
            Just("purchases"),
            Just("value_tier"),
            Just("churn_probability"),
            Just("tags")
        ]
        .prop_map(|f| FieldPath(vec![f.to_string()]));
        let lit = prop_oneof![
            any::<i64>().prop_map(Literal::Int),
            (-1e6f64..1e6).prop_map(Literal::Float),
            "[a-z\"\\\\ ]{0,6}".prop_map(Literal::String),
            any::<bool>().prop_map(Literal::Bool),
            Just(Literal::Null),
            (-10_000_000_000i64..10_000_000_000, 0u32..1_000_000_000)
                .prop_map(|(seconds, nanos)| Literal::Timestamp { seconds, nanos }),
        ];
        let op = prop_oneof![
            Just(CmpOp::Eq),
            Just(CmpOp::Ne),
            Just(CmpOp::Lt),
            Just(CmpOp::Le),
            Just(CmpOp::Gt),
            Just(CmpOp::Ge)
        ];
        prop_oneof![
            (field.clone(), op, lit.clone()).prop_map(|(field, op, value)| Expr::Compare {
                field,
                op,
                value
            }),
            (field.clone(), prop::collection::vec(lit, 1..4))
                .prop_map(|(field, values)| Expr::In { field, values }),
            (field.clone(), "[a-z]{1,5}").prop_map(|(field, s)| Expr::Contains {
                field,
                value: Literal::String(s)
            }),
            field.prop_map(Expr::Has),
        ]
    }

    fn expr() -> impl Strategy<Value = Expr> {
        leaf().prop_recursive(4, 24, 2, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone())
                    .prop_map(|(a, b)| Expr::And(Box::new(a), Box::new(b))),
                (inner.clone(), inner.clone())
                    .prop_map(|(a, b)| Expr::Or(Box::new(a), Box::new(b))),
                inner.prop_map(|a| Expr::Not(Box::new(a))),
            ]
        })
    }

    proptest! {
        #[test]
        fn arbitrary_input_never_panics(s in "\\PC{0,200}") {
            let _ = parse(&s);
        }

        #[test]
        fn operator_soup_never_panics(s in "[a-z0-9 ()\\[\\]!&|=<>.,\"'-]{0,120}") {
            let _ = parse_with_limits(&s, &Limits::default());
        }

        #[test]
        fn display_round_trips(e in expr()) {
            let text = e.to_string();
            let limits = Limits { max_len: 1 << 20, max_depth: 64, max_nodes: 1 << 10 };
            prop_assert_eq!(parse_with_limits(&text, &limits).unwrap(), e);
        }

        #[test]
        fn negation_inverts(e in expr()) {
            let r = record();
            prop_assert_eq!(Expr::Not(Box::new(e.clone())).eval(&r), !e.eval(&r));
        }
    }
}
