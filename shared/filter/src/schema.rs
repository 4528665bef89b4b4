//! Per-service declaration of filterable fields and their types. A filter naming a
//! field the service does not expose, or comparing it with the wrong kind of value,
//! is rejected up front instead of quietly matching nothing.

use std::collections::BTreeMap;

use crate::parser::LeafSpan;
use crate::{CmpOp, Expr, FieldPath, FilterError, Literal};

/// What a filterable field holds, which decides the operators and literals a
/// filter may use with it.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldType {
    String,
    Int,
    Float,
    Bool,
    Timestamp,
    /// Allowed values, case-sensitive: a typo in an enum value would otherwise
    /// match nothing silently.
    Enum(Vec<String>),
    /// Tested with `"x" in field`.
    StringList,
    /// `attributes.k` / `attributes["k"]` is a string.
    StringMap,
}

fn type_name(ty: &FieldType) -> &'static str {
    match ty {
        FieldType::String => "a string",
        FieldType::Int => "an integer",
        FieldType::Float => "a number",
        FieldType::Bool => "a boolean",
        FieldType::Timestamp => "a timestamp",
        FieldType::Enum(_) => "an enum",
        FieldType::StringList => "a list of strings",
        FieldType::StringMap => "a map of strings",
    }
}

/// The fields one service lets callers filter on. Declared explicitly (rather than
/// derived from storage) so that, e.g., PII columns are never filterable.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Schema {
    fields: BTreeMap<String, FieldType>,
}

fn err<T>(at: usize, msg: impl Into<String>) -> Result<T, FilterError> {
    Err(FilterError::new(at, msg))
}

/// Source positions of one predicate; all zero when checking a bare `Expr`.
struct At<'a>(Option<&'a LeafSpan>);

impl At<'_> {
    fn field(&self) -> usize {
        self.0.map_or(0, |s| s.field)
    }
    fn op(&self) -> usize {
        self.0.map_or(0, |s| s.op)
    }
    fn value(&self, i: usize) -> usize {
        self.0.and_then(|s| s.values.get(i).copied()).unwrap_or(0)
    }
}

impl Schema {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builder style, so a service declares its schema in one expression.
    pub fn field(mut self, name: impl Into<String>, ty: FieldType) -> Self {
        self.fields.insert(name.into(), ty);
        self
    }

    pub fn get(&self, name: &str) -> Option<&FieldType> {
        self.fields.get(name)
    }

    /// Declared field names, sorted (for documentation and error messages).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.fields.keys().map(String::as_str)
    }

    /// The type a path denotes: map lookups are strings, scalars have no sub-fields.
    fn resolve(&self, path: &FieldPath, at: usize) -> Result<FieldType, FilterError> {
        let name = path.first();
        let Some(ty) = self.fields.get(name) else {
            let known: Vec<&str> = self.names().collect();
            let known = if known.is_empty() {
                "no fields can be filtered on here".to_string()
            } else {
                format!("known: {}", known.join(", "))
            };
            return err(at, format!("unknown field '{name}' ({known})"));
        };
        match (ty, path.0.len()) {
            (FieldType::StringMap, 2) => Ok(FieldType::String),
            (FieldType::StringMap, _) => err(
                at,
                format!(
                    "'{name}' is a map of strings: name exactly one key, as {name}.key or \
                     {name}[\"key\"]"
                ),
            ),
            (_, 1) => Ok(ty.clone()),
            _ => err(
                at,
                format!(
                    "'{name}' is {} and has no sub-fields (in '{}')",
                    type_name(ty),
                    path.to_source()
                ),
            ),
        }
    }

    /// `spans` holds the source positions of the leaves in source order, or is
    /// empty when the caller only has an `Expr`.
    pub(crate) fn check(&self, e: &Expr, spans: &[LeafSpan]) -> Result<(), FilterError> {
        self.check_expr(e, &mut spans.iter())
    }

    fn check_expr<'s>(
        &self,
        e: &Expr,
        spans: &mut impl Iterator<Item = &'s LeafSpan>,
    ) -> Result<(), FilterError> {
        match e {
            Expr::And(a, b) | Expr::Or(a, b) => {
                self.check_expr(a, spans)?;
                self.check_expr(b, spans)
            }
            Expr::Not(a) => self.check_expr(a, spans),
            leaf => self.check_leaf(leaf, &At(spans.next())),
        }
    }

    fn check_leaf(&self, e: &Expr, at: &At<'_>) -> Result<(), FilterError> {
        match e {
            Expr::And(..) | Expr::Or(..) | Expr::Not(..) => Ok(()),
            Expr::Has(p) => {
                if p.0.len() == 1 && self.fields.contains_key(p.first()) {
                    Ok(())
                } else {
                    self.resolve(p, at.field()).map(|_| ())
                }
            }
            Expr::Compare { field, op, value } => {
                let ty = self.resolve(field, at.field())?;
                check_compare(field, &ty, *op, value, at.op(), at.value(0))
            }
            Expr::In { field, values } => {
                let ty = self.resolve(field, at.field())?;
                let name = field.to_source();
                match ty {
                    FieldType::StringList => {
                        return err(
                            at.op(),
                            format!("'{name}' is a list: test membership with \"x\" in {name}"),
                        );
                    }
                    FieldType::Bool => {
                        return err(
                            at.op(),
                            format!("'{name}' is a boolean: use {name} == true or == false"),
                        );
                    }
                    _ => {}
                }
                values.iter().enumerate().try_for_each(|(i, v)| {
                    check_compare(field, &ty, CmpOp::Eq, v, at.op(), at.value(i))
                })
            }
            Expr::Contains { field, value } => {
                let ty = self.resolve(field, at.field())?;
                let name = field.to_source();
                match (ty, value) {
                    (FieldType::StringList, Literal::String(_)) => Ok(()),
                    (FieldType::StringList, v) => err(
                        at.value(0),
                        format!("'{name}' holds strings, so {v} can never be in it"),
                    ),
                    (FieldType::String, _) => err(
                        at.op(),
                        format!(
                            "'x in {name}' needs a list field, and '{name}' is a string; for \
                             a substring use {name}.contains(\"x\")"
                        ),
                    ),
                    (ty, _) => err(
                        at.op(),
                        format!(
                            "'x in {name}' needs a list field, and '{name}' is {}",
                            type_name(&ty)
                        ),
                    ),
                }
            }
            Expr::StringMatch { field, kind, .. } => {
                let ty = self.resolve(field, at.field())?;
                let name = field.to_source();
                match ty {
                    FieldType::String => Ok(()),
                    FieldType::StringList => err(
                        at.op(),
                        format!("'{name}' is a list: test membership with \"x\" in {name}"),
                    ),
                    FieldType::Enum(allowed) => err(
                        at.op(),
                        format!(
                            "'{name}' is an enum: compare with ==, != or in (values: {})",
                            allowed.join(", ")
                        ),
                    ),
                    ty => err(
                        at.op(),
                        format!(
                            "{}() needs a string field, and '{name}' is {}",
                            kind.as_str(),
                            type_name(&ty)
                        ),
                    ),
                }
            }
        }
    }
}

fn check_compare(
    field: &FieldPath,
    ty: &FieldType,
    op: CmpOp,
    v: &Literal,
    op_at: usize,
    value_at: usize,
) -> Result<(), FilterError> {
    let name = field.to_source();
    let equality = matches!(op, CmpOp::Eq | CmpOp::Ne);
    if *v == Literal::Null {
        return if equality {
            Ok(())
        } else {
            err(op_at, "null can only be compared with == or !=")
        };
    }
    match (ty, v) {
        (FieldType::String, Literal::String(_))
        | (FieldType::Int | FieldType::Float, Literal::Int(_) | Literal::Float(_))
        | (FieldType::Timestamp, Literal::Timestamp { .. }) => Ok(()),
        (FieldType::Bool, Literal::Bool(_)) if equality => Ok(()),
        (FieldType::Bool, Literal::Bool(_)) => err(
            op_at,
            format!("'{name}' is a boolean: only == and != apply"),
        ),
        (FieldType::Enum(allowed), _) if !equality => err(
            op_at,
            format!(
                "'{name}' is an enum: compare with ==, != or in (values: {})",
                allowed.join(", ")
            ),
        ),
        (FieldType::Enum(allowed), Literal::String(s)) if allowed.contains(s) => Ok(()),
        (FieldType::Enum(allowed), _) => err(
            value_at,
            format!(
                "{v} is not a value of '{name}' (allowed: {})",
                allowed.join(", ")
            ),
        ),
        (FieldType::StringList, _) => err(
            op_at,
            format!("'{name}' is a list: test membership with \"x\" in {name}"),
        ),
        (FieldType::Timestamp, Literal::String(s)) => err(
            value_at,
            format!(
                "'{name}' is a timestamp: write the value as timestamp({})",
                crate::quote(s)
            ),
        ),
        (ty, v) => {
            let want = match ty {
                FieldType::String | FieldType::StringMap => "a quoted string",
                FieldType::Int | FieldType::Float => "a number",
                FieldType::Bool => "true or false",
                _ => "timestamp(\"...\")",
            };
            let desc = type_name(ty);
            if let Literal::Bool(_) = v {
                // Usually a bare `field` used as a condition.
                err(
                    value_at,
                    format!("'{name}' is {desc}, not a boolean: compare it with {want}"),
                )
            } else {
                err(
                    value_at,
                    format!("'{name}' is {desc}: expected {want}, found {v}"),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{FieldType, Schema, parse, parse_and_check};

    fn schema() -> Schema {
        Schema::new()
            .field(
                "kind",
                FieldType::Enum(vec!["INDIVIDUAL".into(), "BUSINESS".into()]),
            )
            .field("n", FieldType::Int)
            .field("score", FieldType::Float)
            .field("name", FieldType::String)
            .field("t", FieldType::Timestamp)
            .field("tags", FieldType::StringList)
            .field("attributes", FieldType::StringMap)
            .field(String::from("flag"), FieldType::Bool)
    }

    #[test]
    fn builder_and_lookup() {
        let s = schema();
        assert_eq!(s.get("n"), Some(&FieldType::Int));
        assert_eq!(s.get("nope"), None);
        assert_eq!(
            s.names().collect::<Vec<_>>(),
            [
                "attributes",
                "flag",
                "kind",
                "n",
                "name",
                "score",
                "t",
                "tags"
            ]
        );
    }

    #[test]
    fn well_typed_filters_pass() {
        for ok in [
            "kind == \"BUSINESS\" && n > 3 && score <= 1",
            "kind != 'INDIVIDUAL' || kind in ['BUSINESS', 'INDIVIDUAL'] || kind == null",
            "score > 0.5 || n in [1, 2.5] || n >= 1.5 || score == 2",
            "\"vip\" in tags && attributes.tier == \"gold\" && attributes[\"x-y\"] != \"z\"",
            "attributes.tier.startsWith('g') && attributes.tier < 'h' && attributes.k in ['a']",
            "name.startsWith(\"A\") && name.endsWith('z') && name.contains('q') && name >= 'M'",
            "t < timestamp(\"2030-01-01T00:00:00Z\") && t in [timestamp('2020-01-01T00:00:00Z')]",
            "flag && flag != false && !flag == true",
            "has(attributes) && has(attributes.k) && has(tags) && has(n) && name != null",
            "tags == null || t != null || n in [null, 1]",
        ] {
            parse(ok)
                .unwrap()
                .check(&schema())
                .unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert!(parse_and_check(ok, &schema()).unwrap().is_some());
        }
        assert_eq!(parse_and_check("  ", &schema()), Ok(None));
    }

    #[test]
    fn ill_typed_filters_are_explained_with_positions() {
        for (bad, msg, pos) in [
            (
                "n == 1 && nope == 1",
                "unknown field 'nope' (known: attributes, flag, kind, n, name, score, t, tags)",
                10,
            ),
            (
                "kind == \"ALIEN\"",
                "\"ALIEN\" is not a value of 'kind' (allowed: INDIVIDUAL, BUSINESS)",
                8,
            ),
            (
                "kind in ['BUSINESS', 'business']",
                "\"business\" is not a value of 'kind' (allowed: INDIVIDUAL, BUSINESS)",
                21,
            ),
            ("kind == 1", "1 is not a value of 'kind'", 8),
            (
                "kind > \"A\"",
                "'kind' is an enum: compare with ==, != or in",
                5,
            ),
            ("kind.startsWith('B')", "'kind' is an enum", 5),
            (
                "n == \"x\"",
                "'n' is an integer: expected a number, found \"x\"",
                5,
            ),
            (
                "score in [1, 'x']",
                "'score' is a number: expected a number, found \"x\"",
                13,
            ),
            (
                "name == 1",
                "'name' is a string: expected a quoted string, found 1",
                8,
            ),
            (
                "name",
                "'name' is a string, not a boolean: compare it with a quoted string",
                0,
            ),
            (
                "n == false",
                "'n' is an integer, not a boolean: compare it with a number",
                5,
            ),
            (
                "t > \"2020-01-01T00:00:00Z\"",
                "write the value as timestamp(\"2020-01-01T00:00:00Z\")",
                4,
            ),
            (
                "t > 5",
                "'t' is a timestamp: expected timestamp(\"...\"), found 5",
                4,
            ),
            (
                "attributes == \"x\"",
                "'attributes' is a map of strings: name exactly one key",
                0,
            ),
            ("attributes.a.b == \"x\"", "name exactly one key", 0),
            (
                "attributes.k == 1",
                "'attributes.k' is a string: expected a quoted string",
                16,
            ),
            ("has(attributes.a.b)", "name exactly one key", 4),
            (
                "has(n.x)",
                "'n' is an integer and has no sub-fields (in 'n.x')",
                4,
            ),
            ("has(zz)", "unknown field 'zz'", 4),
            (
                "1 in tags",
                "'tags' holds strings, so 1 can never be in it",
                0,
            ),
            (
                "\"x\" in name",
                "for a substring use name.contains(\"x\")",
                4,
            ),
            ("\"x\" in n", "needs a list field, and 'n' is an integer", 4),
            (
                "tags in ['a']",
                "'tags' is a list: test membership with \"x\" in tags",
                5,
            ),
            ("tags == 'a'", "'tags' is a list", 5),
            ("tags.contains('a')", "'tags' is a list", 5),
            (
                "n.startsWith(\"1\")",
                "startsWith() needs a string field, and 'n' is an integer",
                2,
            ),
            (
                "flag > true",
                "'flag' is a boolean: only == and != apply",
                5,
            ),
            (
                "flag == 1",
                "'flag' is a boolean: expected true or false, found 1",
                8,
            ),
            ("flag in [true]", "'flag' is a boolean", 5),
            ("n < null", "null can only be compared with == or !=", 2),
            (
                "!(n == 1 || name.startsWith(\"a\")) && attributes['a-b'] > 3",
                "expected a quoted string, found 3",
                57,
            ),
        ] {
            let e = parse(bad).unwrap().check(&schema()).unwrap_err();
            assert!(e.message.contains(msg), "{bad}: {e}");
            assert_eq!(e.position, 0, "{bad}: {e}");
            let e = parse_and_check(bad, &schema()).unwrap_err();
            assert!(e.message.contains(msg), "{bad}: {e}");
            assert_eq!(e.position, pos, "{bad}: {e}");
        }
        let e = parse("a == 1").unwrap().check(&Schema::new()).unwrap_err();
        assert_eq!(
            e.message,
            "unknown field 'a' (no fields can be filtered on here)"
        );
        // Syntax errors still come first, with their own positions.
        assert_eq!(parse_and_check("n ==", &schema()).unwrap_err().position, 4);
    }
}
