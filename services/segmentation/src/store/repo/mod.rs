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

use sea_orm::DbErr;

fn json_err(e: serde_json::Error) -> DbErr {
    DbErr::Json(e.to_string())
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String, DbErr> {
    serde_json::to_string(v).map_err(json_err)
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, DbErr> {
    serde_json::from_str(s).map_err(json_err)
}
