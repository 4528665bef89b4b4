//! Where the customer filter's fields live in the profile database; the generic
//! translation is `retention_db::filter_sql`.

use retention_db::filter_sql::FilterColumns;
use retention_filter::{FieldPath, Literal};
use sea_orm::DbBackend;
use sea_orm::sea_query::{Expr, ExprTrait, SimpleExpr};

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

/// The SQL for `attributes.<key>` on each backend (text stored as JSON).
fn attribute(key: &str, backend: DbBackend) -> SimpleExpr {
    match backend {
        DbBackend::Postgres => Expr::cust_with_values("(CAST(attributes AS jsonb) ->> $1)", [key]),
        _ => Expr::cust_with_values("json_extract(attributes, ?)", [format!("$.\"{key}\"")]),
    }
}

pub struct CustomerColumns;

impl FilterColumns for CustomerColumns {
    fn target(&self, path: &FieldPath, backend: DbBackend) -> Option<SimpleExpr> {
        match path.0.as_slice() {
            [map, key] if map == "attributes" => {
                is_attribute_key(key).then(|| attribute(key, backend))
            }
            [field] => column(field).map(Expr::col),
            _ => None,
        }
    }

    /// Tags are stored as `|a|b|`, so membership is a delimited LIKE.
    fn contains(&self, field: &FieldPath, value: &Literal) -> Option<SimpleExpr> {
        match (field.0.as_slice(), value) {
            ([f], Literal::String(tag)) if f == "tags" && is_tag(tag) => {
                Some(Expr::col("tags").like(format!("%|{tag}|%")))
            }
            _ => None,
        }
    }

    fn has(&self, field: &FieldPath, backend: DbBackend) -> Option<SimpleExpr> {
        match field.0.as_slice() {
            [f] if f == "tags" => Some(Expr::col("tags").ne("|")),
            _ => self.target(field, backend).map(|t| t.is_not_null()),
        }
    }
}
