//! Per-service declaration of filterable fields and their types.

use std::collections::BTreeMap;

use crate::{CmpOp, Expr, FieldPath, FilterError, Literal};

#[derive(Debug, Clone, PartialEq)]
pub enum FieldType {
    String,
    Int,
    Float,
    Bool,
    Timestamp,
    /// Allowed values (case-sensitive).
    Enum(Vec<String>),
    StringList,
    /// `attributes.k` / `attributes["k"]` is a string.
    StringMap,
}

#[derive(Debug, Clone, Default)]
pub struct Schema {
    fields: BTreeMap<String, FieldType>,
}

fn err<T>(msg: impl Into<String>) -> Result<T, FilterError> {
    Err(FilterError::new(0, msg))
}

impl Schema {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn field(mut self, name: &str, ty: FieldType) -> Self {
        self.fields.insert(name.to_string(), ty);
        self
    }

    pub fn get(&self, name: &str) -> Option<&FieldType> {
        self.fields.get(name)
    }

    fn resolve(&self, path: &FieldPath) -> Result<FieldType, FilterError> {
        let Some(ty) = self.fields.get(path.first()) else {
            let known: Vec<&str> = self.fields.keys().map(String::as_str).collect();
            return err(format!(
                "unknown field '{}' (known: {})",
                path.first(),
                known.join(", ")
            ));
        };
        match (ty, path.0.len()) {
            (FieldType::StringMap, 2) => Ok(FieldType::String),
            (FieldType::StringMap, _) => err(format!(
                "'{}' is a map: use {0}.key or {0}[\"key\"]",
                path.first()
            )),
            (_, 1) => Ok(ty.clone()),
            _ => err(format!("'{}' has no sub-fields", path.first())),
        }
    }

    pub(crate) fn check(&self, e: &Expr) -> Result<(), FilterError> {
        match e {
            Expr::And(a, b) | Expr::Or(a, b) => {
                self.check(a)?;
                self.check(b)
            }
            Expr::Not(a) => self.check(a),
            Expr::Has(p) => {
                if self.fields.contains_key(p.first()) {
                    Ok(())
                } else {
                    self.resolve(p).map(|_| ())
                }
            }
            Expr::Compare { field, op, value } => {
                let ty = self.resolve(field)?;
                check_compare(field, &ty, *op, value)
            }
            Expr::In { field, values } => {
                let ty = self.resolve(field)?;
                if matches!(ty, FieldType::StringList | FieldType::Bool) {
                    return err(format!("'in [..]' does not apply to '{field}'"));
                }
                values
                    .iter()
                    .try_for_each(|v| check_compare(field, &ty, CmpOp::Eq, v))
            }
            Expr::Contains { field, value } => match (self.resolve(field)?, value) {
                (FieldType::StringList, Literal::String(_)) => Ok(()),
                (FieldType::StringList, _) => err(format!("'{field}' holds strings")),
                _ => err(format!("'x in {field}' needs a list field")),
            },
            Expr::StringMatch { field, .. } => match self.resolve(field)? {
                FieldType::String => Ok(()),
                _ => err(format!(
                    "startsWith/endsWith/contains need a string field, '{field}' is not"
                )),
            },
        }
    }
}

fn check_compare(
    field: &FieldPath,
    ty: &FieldType,
    op: CmpOp,
    v: &Literal,
) -> Result<(), FilterError> {
    let equality = matches!(op, CmpOp::Eq | CmpOp::Ne);
    if *v == Literal::Null {
        return if equality {
            Ok(())
        } else {
            err("null can only be compared with == or !=")
        };
    }
    let ok = match (ty, v) {
        (FieldType::String, Literal::String(_)) => true,
        (FieldType::Int | FieldType::Float, Literal::Int(_) | Literal::Float(_)) => true,
        (FieldType::Bool, Literal::Bool(_)) => equality,
        (FieldType::Timestamp, Literal::Timestamp { .. }) => true,
        (FieldType::Enum(allowed), Literal::String(s)) => {
            if !equality {
                return err(format!("'{field}' is an enum: use ==, != or in"));
            }
            if !allowed.contains(s) {
                return err(format!(
                    "'{s}' is not a value of '{field}' (allowed: {})",
                    allowed.join(", ")
                ));
            }
            true
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        let want = match ty {
            FieldType::String | FieldType::Enum(_) | FieldType::StringMap => "a string",
            FieldType::Int | FieldType::Float => "a number",
            FieldType::Bool => "true or false with == or !=",
            FieldType::Timestamp => "timestamp(\"...\")",
            FieldType::StringList => "use \"x\" in field",
        };
        err(format!("'{field}' {} {v}: expected {want}", op.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use crate::{FieldType, Schema, parse};

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
            .field("flag", FieldType::Bool)
    }

    #[test]
    fn well_typed_filters_pass() {
        for ok in [
            "kind == \"BUSINESS\" && n > 3 && score <= 1",
            "score > 0.5 || n in [1, 2]",
            "\"vip\" in tags && attributes.tier == \"gold\" && attributes[\"x-y\"] != \"z\"",
            "name.startsWith(\"A\") && t < timestamp(\"2030-01-01T00:00:00Z\") && flag",
            "has(attributes) && name != null",
        ] {
            parse(ok)
                .unwrap()
                .check(&schema())
                .unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }

    #[test]
    fn ill_typed_filters_are_explained() {
        for (bad, msg) in [
            ("nope == 1", "unknown field 'nope' (known: attributes, flag"),
            ("kind == \"ALIEN\"", "allowed: INDIVIDUAL, BUSINESS"),
            ("kind > \"A\"", "is an enum"),
            ("n == \"x\"", "expected a number"),
            ("t > \"2020\"", "expected timestamp"),
            ("attributes == \"x\"", "is a map"),
            ("1 in tags", "holds strings"),
            ("\"x\" in name", "needs a list field"),
            ("n.startsWith(\"1\")", "need a string field"),
            ("flag > true", "expected true or false"),
            ("n < null", "null can only"),
        ] {
            let e = parse(bad).unwrap().check(&schema()).unwrap_err();
            assert!(e.message.contains(msg), "{bad}: {e}");
        }
    }
}
