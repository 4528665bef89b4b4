//! The sweep that seals PII stored in the clear (rows from before encryption) or
//! under a retired key with the current key, and fills their e-mail lookup
//! hashes. Once it has run, a retired key can be removed from the settings.

use sea_orm::sea_query::{Expr, ExprTrait, LikeExpr};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::convert::{open_pii, seal_pii};
use super::entities::customer;
use super::pii::PiiCipher;
use super::repo::StoreError;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ResealPage {
    /// Rows written again under the current key.
    pub resealed: u64,
    /// Where the next page starts; None when the sweep is done.
    pub next_after: Option<String>,
}

type PiiRow = (String, i64, Option<String>, Option<String>, Option<String>);

/// Reseals up to `limit` rows after `after` that need it. A row changed since it
/// was read is left alone: the write that changed it sealed it already.
pub async fn reseal_page<C: ConnectionTrait>(
    db: &C,
    pii: &PiiCipher,
    after: Option<&str>,
    limit: u64,
) -> Result<ResealPage, StoreError> {
    // `_` and `%` are LIKE wildcards; key ids may hold `_`.
    let current = format!("{}%", pii.current_prefix().replace('_', "\\_"));
    let stale = |c: customer::Column| {
        Expr::col(c)
            .is_not_null()
            .and(Expr::col(c).not_like(LikeExpr::new(current.clone()).escape('\\')))
    };
    let mut q = customer::Entity::find()
        .select_only()
        .columns([
            customer::Column::Id,
            customer::Column::Version,
            customer::Column::DisplayName,
            customer::Column::Email,
            customer::Column::Phone,
        ])
        .filter(
            stale(customer::Column::DisplayName)
                .or(stale(customer::Column::Email))
                .or(stale(customer::Column::Phone)),
        );
    if let Some(after) = after {
        q = q.filter(customer::Column::Id.gt(after));
    }
    let rows: Vec<PiiRow> = q
        .order_by_asc(customer::Column::Id)
        .limit(limit)
        .into_tuple()
        .all(db)
        .await?;
    let mut page = ResealPage {
        resealed: 0,
        next_after: (rows.len() as u64 == limit)
            .then(|| rows.last().map(|r| r.0.clone()))
            .flatten(),
    };
    for (id, version, display_name, email, phone) in rows {
        let opened = open_pii(pii, &id, [display_name, email, phone])?;
        let ([display_name, email, phone], email_hash) = seal_pii(pii, &id, opened.each_ref());
        let res = customer::Entity::update_many()
            .col_expr(customer::Column::DisplayName, Expr::val(display_name))
            .col_expr(customer::Column::Email, Expr::val(email))
            .col_expr(customer::Column::Phone, Expr::val(phone))
            .col_expr(customer::Column::EmailHash, Expr::val(email_hash))
            .filter(customer::Column::Id.eq(id.as_str()))
            .filter(customer::Column::Version.eq(version))
            .exec(db)
            .await?;
        page.resealed += res.rows_affected;
    }
    Ok(page)
}
