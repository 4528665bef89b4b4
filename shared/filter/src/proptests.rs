//! Properties over generated input: parsing never panics and respects its limits,
//! canonical output re-parses to the same tree, and evaluation is consistent.

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;

use crate::{
    CmpOp, Expr, FieldPath, Limits, Literal, MatchKind, Record, Value, parse, parse_with_limits,
};

const NAMES: &[&str] = &[
    "n",
    "score",
    "name",
    "flag",
    "t",
    "tags",
    "attributes",
    "kind",
    "missing",
    "_x9",
];
const KEYS: &[&str] = &[
    "tier",
    "plan-x",
    "in",
    "a b",
    "é",
    "",
    "startsWith",
    "\"q\"",
];
/// Unix seconds of 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z.
const MIN_TS: i64 = -62_167_219_200;
const MAX_TS: i64 = 253_402_300_799;

fn name() -> impl Strategy<Value = String> {
    prop::sample::select(NAMES).prop_map(String::from)
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(KEYS).prop_map(String::from),
        any::<String>().prop_map(|s| s.chars().take(6).collect()),
    ]
}

fn path() -> impl Strategy<Value = FieldPath> {
    (name(), prop::collection::vec(key(), 0..3)).prop_map(|(first, rest)| {
        let mut segs = vec![first];
        segs.extend(rest);
        FieldPath(segs)
    })
}

fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z \"'\\\\]{0,6}",
        any::<String>().prop_map(|s| s.chars().take(8).collect()),
    ]
}

fn literal() -> impl Strategy<Value = Literal> {
    prop_oneof![
        any::<i64>().prop_map(Literal::Int),
        prop_oneof![Just(i64::MIN), Just(i64::MAX), -3i64..3].prop_map(Literal::Int),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Literal::Float),
        (-1e6f64..1e6).prop_map(Literal::Float),
        string().prop_map(Literal::String),
        any::<bool>().prop_map(Literal::Bool),
        Just(Literal::Null),
        (MIN_TS..=MAX_TS, 0u32..1_000_000_000)
            .prop_map(|(seconds, nanos)| Literal::Timestamp { seconds, nanos }),
    ]
}

fn op() -> impl Strategy<Value = CmpOp> {
    prop::sample::select(
        &[
            CmpOp::Eq,
            CmpOp::Ne,
            CmpOp::Lt,
            CmpOp::Le,
            CmpOp::Gt,
            CmpOp::Ge,
        ][..],
    )
}

fn leaf() -> impl Strategy<Value = Expr> {
    let kind = prop::sample::select(
        &[
            MatchKind::StartsWith,
            MatchKind::EndsWith,
            MatchKind::Contains,
        ][..],
    );
    prop_oneof![
        (path(), op(), literal()).prop_map(|(field, op, value)| Expr::Compare { field, op, value }),
        (path(), prop::collection::vec(literal(), 1..4))
            .prop_map(|(field, values)| Expr::In { field, values }),
        (path(), literal()).prop_map(|(field, value)| Expr::Contains { field, value }),
        (path(), kind, string()).prop_map(|(field, kind, pattern)| Expr::StringMatch {
            field,
            kind,
            pattern
        }),
        path().prop_map(Expr::Has),
    ]
}

fn expr() -> impl Strategy<Value = Expr> {
    leaf().prop_recursive(6, 40, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Expr::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Expr::Or(Box::new(a), Box::new(b))),
            inner.prop_map(|a| Expr::Not(Box::new(a))),
        ]
    })
}

/// Valid filter source with redundant parentheses, mixed quoting and spacing, so
/// the canonical form differs from what was written.
fn source() -> impl Strategy<Value = String> {
    let leaf = prop::sample::select(
        &[
            "a",
            "n == 1",
            "n!=-2.5e3",
            "x.y['k'] >= 'v'",
            "'vip' in tags",
            "attributes[\"plan-x\"].startsWith('p')",
            "has(a.b)",
            "t < timestamp('0000-01-01T00:00:00+01:00')",
            "k in [1, 'a', null,]",
            "s.contains(\"\\u00e9\\n\")",
        ][..],
    )
    .prop_map(String::from);
    leaf.prop_recursive(8, 64, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} && {b}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a}||{b}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) && ({b})")),
            inner.clone().prop_map(|a| format!("!{a}")),
            inner.clone().prop_map(|a| format!("!({a})")),
            inner.prop_map(|a| format!("( {a} )")),
        ]
    })
}

/// [`source`] wrapped in layers of nesting, so some cases sit at or beyond the
/// default depth and term limits.
fn nested_source() -> impl Strategy<Value = String> {
    (source(), prop::collection::vec(0..5u8, 0..16)).prop_map(|(mut s, layers)| {
        for layer in layers {
            s = match layer {
                0 => format!("!{s}"),
                1 => format!("({s})"),
                2 => format!("!({s})"),
                3 => format!("a && ({s})"),
                _ => format!("({s}) || b == 1 && c"),
            };
        }
        s
    })
}

/// Lexically plausible noise, far more likely than random text to get deep into
/// the parser.
fn token_soup() -> impl Strategy<Value = String> {
    let tok = prop::sample::select(
        &[
            "a",
            "b.c",
            "x['k']",
            "==",
            "!=",
            "<",
            ">=",
            "1",
            "-2.5",
            "1e400",
            "'s'",
            "\"",
            "\\",
            "true",
            "null",
            "in",
            "[",
            "]",
            ",",
            "(",
            ")",
            "!",
            "&&",
            "||",
            "has",
            "tags",
            ".",
            ".startsWith",
            "timestamp",
            "'2024-01-01T00:00:00Z'",
            "-",
            "é",
            "9999999999999999999",
        ][..],
    );
    prop::collection::vec(tok, 0..40).prop_map(|t| t.join(" "))
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        prop_oneof![any::<i64>(), -3i64..3].prop_map(Value::Int),
        prop_oneof![any::<f64>(), -1e6f64..1e6].prop_map(Value::Float),
        string().prop_map(Value::String),
        (MIN_TS..=MAX_TS, 0u32..1_000_000_000)
            .prop_map(|(seconds, nanos)| Value::Timestamp { seconds, nanos }),
        prop::collection::vec(string(), 0..3).prop_map(Value::List),
        prop::collection::btree_map(key(), string(), 0..3).prop_map(Value::Map),
    ]
}

#[derive(Debug)]
struct Rec(HashMap<String, Value>);

impl Record for Rec {
    fn get(&self, field: &str) -> Value {
        self.0.get(field).cloned().unwrap_or(Value::Null)
    }
}

fn record() -> impl Strategy<Value = Rec> {
    prop::collection::hash_map(name(), value(), 0..NAMES.len()).prop_map(Rec)
}

fn roomy() -> Limits {
    Limits {
        max_len: 1 << 20,
        max_depth: 64,
        max_nodes: 1 << 10,
    }
}

fn check_within_default_limits(src: &str) -> Result<(), TestCaseError> {
    if let Ok(e) = parse(src) {
        prop_assert!(src.len() <= 4096);
        prop_assert!(!src.trim().is_empty());
        prop_assert!(e.node_count() <= 64);
        // The canonical form stays within the depth and term limits the original
        // met (it may be longer: it normalises spacing and quoting).
        let limits = Limits {
            max_len: 1 << 20,
            ..Limits::default()
        };
        prop_assert_eq!(parse_with_limits(&e.to_string(), &limits), Ok(e));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_strings_never_panic(s in any::<String>()) {
        check_within_default_limits(&s)?;
    }

    #[test]
    fn printable_strings_never_panic(s in "\\PC{0,300}") {
        check_within_default_limits(&s)?;
    }

    #[test]
    fn token_soup_never_panics(s in token_soup()) {
        check_within_default_limits(&s)?;
        let tight = Limits { max_len: 40, max_depth: 2, max_nodes: 3 };
        if let Ok(e) = parse_with_limits(&s, &tight) {
            prop_assert!(s.len() <= 40 && e.node_count() <= 3);
        }
    }

    #[test]
    fn written_sources_round_trip_within_limits(s in nested_source()) {
        check_within_default_limits(&s)?;
        let e = parse_with_limits(&s, &roomy());
        prop_assert!(e.is_ok(), "{s}: {e:?}");
    }

    #[test]
    fn display_round_trips(e in expr()) {
        let text = e.to_string();
        prop_assert_eq!(parse_with_limits(&text, &roomy()), Ok(e), "{}", text);
    }

    #[test]
    fn negation_inverts(e in expr(), r in record()) {
        prop_assert_eq!(Expr::Not(Box::new(e.clone())).eval(&r), !e.eval(&r));
    }

    #[test]
    fn evaluation_survives_printing(e in expr(), r in record()) {
        let reparsed = parse_with_limits(&e.to_string(), &roomy()).unwrap();
        prop_assert_eq!(reparsed.eval(&r), e.eval(&r));
    }

    #[test]
    fn in_is_a_disjunction_of_equalities(
        field in path(),
        values in prop::collection::vec(literal(), 1..4),
        r in record(),
    ) {
        let any_eq = values.iter().any(|v| {
            Expr::Compare { field: field.clone(), op: CmpOp::Eq, value: v.clone() }.eval(&r)
        });
        prop_assert_eq!(Expr::In { field, values }.eval(&r), any_eq);
    }
}

#[test]
fn hostile_inputs_fail_fast_on_a_small_stack() {
    let inputs = [
        "(".repeat(4096),
        "!".repeat(4096),
        format!("{}a", "!(".repeat(2000)),
        vec!["a"; 1300].join("&&"),
        vec!["a"; 1300].join("||"),
        format!("x in [{}]", vec!["1"; 1300].join(",")),
        "'".repeat(4096),
        "\\".repeat(4096),
    ];
    let handle = std::thread::Builder::new()
        // Depth 12 needs about 100 KiB in debug builds; recursing once per byte of a
        // 4 KiB input would need tens of MiB.
        .stack_size(256 * 1024)
        .spawn(move || {
            inputs
                .iter()
                .map(|s| parse(s).map(|e| e.node_count()))
                .collect::<Vec<_>>()
        })
        .unwrap();
    let results = handle.join().unwrap();
    assert!(results[..5].iter().all(Result::is_err), "{results:?}");
    assert_eq!(results[5], Ok(1));
}

#[test]
fn map_lookups_happen_in_the_evaluator() {
    let r = Rec(HashMap::from([(
        "attributes".to_string(),
        Value::Map(BTreeMap::from([("a b".to_string(), "x".to_string())])),
    )]));
    assert!(parse("attributes['a b'] == 'x'").unwrap().eval(&r));
    assert!(!parse("attributes['a b'].x == 'x'").unwrap().eval(&r));
}
