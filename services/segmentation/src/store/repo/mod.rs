//! Queries and writes of the segmentation database, one module per table group;
//! callers own transactions.

mod features;
mod insights;
mod purchases;
mod runs;
mod segments;

pub use features::*;
pub use insights::*;
pub use purchases::*;
pub use runs::*;
pub use segments::*;

use sea_orm::sea_query::{IntoIden, OnConflict};
use sea_orm::{ColumnTrait, DbErr, QueryFilter, QueryOrder};

fn json_err(e: serde_json::Error) -> DbErr {
    DbErr::Json(e.to_string())
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String, DbErr> {
    serde_json::to_string(v).map_err(json_err)
}

/// `q` in `key` order, from just after `after` (keyset paging: every page read
/// here has this shape).
fn after_key<Q: QueryFilter + QueryOrder>(q: Q, key: impl ColumnTrait, after: Option<&str>) -> Q {
    let q = match after {
        Some(a) => q.filter(key.gt(a)),
        None => q,
    };
    q.order_by_asc(key)
}

/// ON CONFLICT (`key`) DO NOTHING: a row already there stays as it is.
fn keep_existing(key: impl IntoIden) -> OnConflict {
    OnConflict::column(key).do_nothing().to_owned()
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, DbErr> {
    serde_json::from_str(s).map_err(json_err)
}
