//! Queries and writes of the win-back database, one module per table group;
//! callers own transactions.

mod campaigns;
mod churn;
mod customers;
mod targets;

pub use campaigns::*;
pub use churn::*;
pub use customers::*;
pub use targets::*;

use chrono::{DateTime, Utc};
use retention_db::filter_sql::{FilterColumns, to_condition};
use retention_filter::FieldPath;
use sea_orm::sea_query::{Expr, ExprTrait, SimpleExpr};
use sea_orm::{
    ColumnTrait, Condition, DbBackend, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    Select,
};

/// Rows per statement when a list of customers goes into `IN (...)` or a bulk
/// insert: well under SQLite's bound-parameter limit.
const CHUNK: usize = 500;

fn parse<T>(s: &str, f: fn(&str) -> Option<T>) -> Result<T, DbErr> {
    f(s).ok_or_else(|| DbErr::Type(format!("unknown stored value {s:?}")))
}

/// A newest-first keyset page of `E` matching `filter`: the rows after the cursor
/// `before` (the last `(time, id)` returned), ordered by `time` then `id`.
fn newest_first<E: EntityTrait>(
    filter: Option<SimpleExpr>,
    before: Option<(DateTime<Utc>, String)>,
    time: E::Column,
    id: E::Column,
    limit: u64,
) -> Select<E> {
    let mut q = E::find();
    if let Some(f) = filter {
        q = q.filter(f);
    }
    if let Some((t, last)) = before {
        q = q.filter(
            Condition::any()
                .add(time.lt(t))
                .add(time.eq(t).and(id.lt(last))),
        );
    }
    q.order_by_desc(time).order_by_desc(id).limit(limit)
}

/// Filter fields map one-to-one onto columns of the listed table.
pub struct Columns(pub &'static [&'static str]);

impl FilterColumns for Columns {
    fn target(&self, path: &FieldPath, _backend: DbBackend) -> Option<SimpleExpr> {
        match path.0.as_slice() {
            [field] if self.0.contains(&field.as_str()) => Some(Expr::col(field.clone())),
            _ => None,
        }
    }
}

pub fn condition(
    f: &retention_filter::Expr,
    backend: DbBackend,
    cols: &'static [&'static str],
) -> SimpleExpr {
    to_condition(f, backend, &Columns(cols))
}
