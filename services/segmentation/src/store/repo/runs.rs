//! Scoring runs and the calibrations they fit.

use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::Set;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter, QueryOrder,
    Statement, Value,
};

use super::{from_json, to_json};
use crate::domain::calibration::Calibration;
use crate::domain::segments::{RunState, ScoringRun};
use crate::store::entities::{calibration, scoring_run, scoring_run_page};

fn run_from(m: scoring_run::Model) -> Result<ScoringRun, DbErr> {
    let backtest = m.backtest_report.as_deref().map(from_json).transpose()?;
    Ok(ScoringRun {
        observation_end: m.observation_end,
        backtest,
        state: RunState::parse(&m.state)
            .ok_or_else(|| DbErr::Type(format!("unknown run state {:?}", m.state)))?,
        id: m.id,
        percent_complete: m.percent_complete,
        stage: m.stage,
        customers_scored: m.customers_scored,
        create_time: m.create_time,
        end_time: m.end_time,
        error: m.error,
    })
}

fn run_active(r: &ScoringRun) -> Result<scoring_run::ActiveModel, DbErr> {
    // Owner and lease stay NotSet: only the lease functions below write them.
    Ok(scoring_run::ActiveModel {
        id: Set(r.id.clone()),
        state: Set(r.state.as_str().into()),
        percent_complete: Set(r.percent_complete),
        stage: Set(r.stage.clone()),
        customers_scored: Set(r.customers_scored),
        create_time: Set(r.create_time),
        end_time: Set(r.end_time),
        error: Set(r.error.clone()),
        observation_end: Set(r.observation_end),
        backtest_report: Set(r.backtest.as_ref().map(to_json).transpose()?),
        ..Default::default()
    })
}

const ACTIVE: [&str; 2] = ["PENDING", "RUNNING"];

/// The stage in which a run's pages exist and any replica may score them.
pub const SCORING_STAGE: &str = "scoring";

/// Inserts a new run held by `owner` until `lease_until`. A second active run
/// anywhere in the deployment violates the unique index `scoring_runs_one_active`
/// (see [`retention_db::is_unique_violation`]).
pub async fn insert_run<C: ConnectionTrait>(
    db: &C,
    r: &ScoringRun,
    owner: &str,
    lease_until: DateTime<Utc>,
) -> Result<(), DbErr> {
    let mut row = run_active(r)?;
    row.owner = Set(owner.into());
    row.lease_until = Set(Some(lease_until));
    scoring_run::Entity::insert(row)
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Writes the whole run while it is still active; false when it no longer is
/// (failed by a sweep, or finished): the caller's view of it is stale.
pub async fn save_run<C: ConnectionTrait>(db: &C, r: &ScoringRun) -> Result<bool, DbErr> {
    let done = scoring_run::Entity::update_many()
        .set(run_active(r)?)
        .filter(scoring_run::Column::Id.eq(r.id.as_str()))
        .filter(scoring_run::Column::State.is_in(ACTIVE))
        .exec(db)
        .await?;
    Ok(done.rows_affected == 1)
}

pub async fn load_run<C: ConnectionTrait>(db: &C, id: &str) -> Result<Option<ScoringRun>, DbErr> {
    scoring_run::Entity::find_by_id(id.to_string())
        .one(db)
        .await?
        .map(run_from)
        .transpose()
}

/// The run in progress, if any.
pub async fn active_run<C: ConnectionTrait>(db: &C) -> Result<Option<ScoringRun>, DbErr> {
    scoring_run::Entity::find()
        .filter(scoring_run::Column::State.is_in(ACTIVE))
        .one(db)
        .await?
        .map(run_from)
        .transpose()
}

/// `sql` with `?` placeholders, numbered for PostgreSQL. The statements here
/// hold no `?` inside a literal.
fn placeholders(backend: DbBackend, sql: &str) -> String {
    if backend != DbBackend::Postgres {
        return sql.to_string();
    }
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    out
}

fn stmt<C: ConnectionTrait>(db: &C, sql: &str, values: Vec<Value>) -> Statement {
    let backend = db.get_database_backend();
    Statement::from_sql_and_values(backend, placeholders(backend, sql), values)
}

async fn exec<C: ConnectionTrait>(db: &C, sql: &str, values: Vec<Value>) -> Result<u64, DbErr> {
    Ok(db.execute_raw(stmt(db, sql, values)).await?.rows_affected())
}

/// Extends `owner`'s lease on the active run `id`; false when the run is no
/// longer active or no longer `owner`'s.
pub async fn renew_run<C: ConnectionTrait>(
    db: &C,
    id: &str,
    owner: &str,
    until: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let n = exec(
        db,
        "UPDATE scoring_runs SET lease_until = ? \
         WHERE id = ? AND owner = ? AND state IN ('PENDING', 'RUNNING')",
        vec![until.into(), id.into(), owner.into()],
    )
    .await?;
    Ok(n == 1)
}

/// Fails the run if it is still active; false when it had already ended.
pub async fn fail_run<C: ConnectionTrait>(
    db: &C,
    id: &str,
    error: &str,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let n = exec(
        db,
        "UPDATE scoring_runs SET state = 'FAILED', end_time = ?, error = ? \
         WHERE id = ? AND state IN ('PENDING', 'RUNNING')",
        vec![now.into(), error.into(), id.into()],
    )
    .await?;
    Ok(n == 1)
}

/// Fails the active runs whose coordinator stopped renewing its lease before
/// the run's pages were written (fitting, or a backtest: work only that replica
/// had); a live run's lease is renewed, so it is never touched. Runs in the
/// scoring stage are left to the replicas scoring their pages, except one
/// without pages (an older version's), which is failed too. Returns how many.
pub async fn sweep_runs<C: ConnectionTrait>(db: &C, now: DateTime<Utc>) -> Result<u64, DbErr> {
    exec(
        db,
        "UPDATE scoring_runs SET state = 'FAILED', end_time = ?, \
         error = 'interrupted: the replica running it stopped' \
         WHERE state IN ('PENDING', 'RUNNING') AND (lease_until IS NULL OR lease_until < ?) \
         AND (stage <> 'scoring' OR NOT EXISTS \
           (SELECT 1 FROM scoring_run_pages p WHERE p.run_id = scoring_runs.id))",
        vec![now.into(), now.into()],
    )
    .await
}

/// The active run in the scoring stage, if any.
pub async fn scoring_run_id<C: ConnectionTrait>(db: &C) -> Result<Option<String>, DbErr> {
    Ok(scoring_run::Entity::find()
        .filter(scoring_run::Column::State.eq(RunState::Running.as_str()))
        .filter(scoring_run::Column::Stage.eq(SCORING_STAGE))
        .one(db)
        .await?
        .map(|m| m.id))
}

/// Moves `owner`'s run into the scoring stage with its pages, the (after, upto]
/// id ranges, as work items; false (nothing written) when the run is no longer
/// active or no longer `owner`'s.
pub async fn write_pages<C: ConnectionTrait>(
    txn: &C,
    run_id: &str,
    owner: &str,
    percent: i32,
    ranges: &[(Option<String>, Option<String>)],
) -> Result<bool, DbErr> {
    let n = exec(
        txn,
        "UPDATE scoring_runs SET state = 'RUNNING', stage = ?, percent_complete = ? \
         WHERE id = ? AND owner = ? AND state IN ('PENDING', 'RUNNING')",
        vec![
            SCORING_STAGE.into(),
            percent.into(),
            run_id.into(),
            owner.into(),
        ],
    )
    .await?;
    if n != 1 {
        return Ok(false);
    }
    let rows: Vec<scoring_run_page::ActiveModel> = ranges
        .iter()
        .enumerate()
        .map(|(i, (after, upto))| scoring_run_page::ActiveModel {
            run_id: Set(run_id.into()),
            page: Set(i as i32),
            after_id: Set(after.clone()),
            upto_id: Set(upto.clone()),
            state: Set(PAGE_PENDING.into()),
            owner: Set(String::new()),
            lease_until: Set(None),
            attempts: Set(0),
            customers_scored: Set(0),
        })
        .collect();
    // Bounded statements: a page row binds nine values.
    for chunk in rows.chunks(500) {
        scoring_run_page::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(txn)
            .await?;
    }
    Ok(true)
}

const PAGE_PENDING: &str = "pending";

/// A page claimed by one replica until its lease ends.
#[derive(Debug, Clone)]
pub struct PageClaim {
    pub run_id: String,
    pub page: i32,
    pub after: Option<String>,
    pub upto: Option<String>,
    pub attempts: i32,
}

/// Claims the first page of the running run that is pending and unclaimed or
/// whose claim lapsed, for `owner` until `until`. On PostgreSQL the candidate is
/// locked with SKIP LOCKED so that replicas claiming at once take different
/// pages; SQLite serialises its writers (one process), so it needs no lock.
pub async fn claim_page<C: ConnectionTrait>(
    db: &C,
    owner: &str,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Option<PageClaim>, DbErr> {
    let lock = if db.get_database_backend() == DbBackend::Postgres {
        " FOR UPDATE OF p SKIP LOCKED"
    } else {
        ""
    };
    let sql = format!(
        "UPDATE scoring_run_pages SET owner = ?, lease_until = ?, attempts = attempts + 1 \
         WHERE (run_id, page) = (SELECT p.run_id, p.page FROM scoring_run_pages p \
           JOIN scoring_runs r ON r.id = p.run_id \
           WHERE p.state = 'pending' AND r.state = 'RUNNING' AND r.stage = 'scoring' \
           AND (p.lease_until IS NULL OR p.lease_until < ?) \
           ORDER BY p.run_id, p.page LIMIT 1{lock}) \
         RETURNING run_id, page, after_id, upto_id, attempts"
    );
    let row = db
        .query_one_raw(stmt(db, &sql, vec![owner.into(), until.into(), now.into()]))
        .await?;
    row.map(|r| {
        Ok(PageClaim {
            run_id: r.try_get("", "run_id")?,
            page: r.try_get("", "page")?,
            after: r.try_get("", "after_id")?,
            upto: r.try_get("", "upto_id")?,
            attempts: r.try_get("", "attempts")?,
        })
    })
    .transpose()
}

/// Marks the claimed page done with `scored` customers and adds them to the
/// run's count, in the caller's transaction (the one writing the page's
/// insights and events), only while the claim is still `owner`'s: false when
/// the lease lapsed and another replica claimed the page, and the caller must
/// roll back. The page row stays locked until the commit, so no one can claim
/// it in between.
pub async fn complete_page<C: ConnectionTrait>(
    txn: &C,
    claim: &PageClaim,
    owner: &str,
    scored: u64,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let n = exec(
        txn,
        "UPDATE scoring_run_pages SET state = 'done', customers_scored = ?, lease_until = NULL \
         WHERE run_id = ? AND page = ? AND owner = ? AND state = 'pending' AND lease_until > ?",
        vec![
            (scored as i64).into(),
            claim.run_id.as_str().into(),
            claim.page.into(),
            owner.into(),
            now.into(),
        ],
    )
    .await?;
    if n != 1 {
        return Ok(false);
    }
    exec(
        txn,
        "UPDATE scoring_runs SET customers_scored = customers_scored + ? WHERE id = ?",
        vec![(scored as i64).into(), claim.run_id.as_str().into()],
    )
    .await?;
    Ok(true)
}

/// Pages of the run done, and all of them.
pub async fn page_counts<C: ConnectionTrait>(db: &C, run_id: &str) -> Result<(i64, i64), DbErr> {
    let row = db
        .query_one_raw(stmt(
            db,
            "SELECT COALESCE(SUM(CASE WHEN state = 'done' THEN 1 ELSE 0 END), 0) AS done, \
             COUNT(*) AS total FROM scoring_run_pages WHERE run_id = ?",
            vec![run_id.into()],
        ))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(format!("pages of {run_id}")))?;
    Ok((row.try_get("", "done")?, row.try_get("", "total")?))
}

/// Raises the running run's percentage (never lowers it: replicas report out of order).
pub async fn raise_percent<C: ConnectionTrait>(
    db: &C,
    run_id: &str,
    percent: i32,
) -> Result<(), DbErr> {
    exec(
        db,
        "UPDATE scoring_runs SET percent_complete = ? \
         WHERE id = ? AND state = 'RUNNING' AND percent_complete < ?",
        vec![percent.into(), run_id.into(), percent.into()],
    )
    .await?;
    Ok(())
}

/// Ends the run SUCCEEDED once every page is done, whichever replica notices
/// first; true for the one call that ended it.
pub async fn finish_if_done<C: ConnectionTrait>(
    db: &C,
    run_id: &str,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let n = exec(
        db,
        "UPDATE scoring_runs SET state = 'SUCCEEDED', stage = 'done', percent_complete = 100, \
         end_time = ? WHERE id = ? AND state = 'RUNNING' AND stage = 'scoring' \
         AND EXISTS (SELECT 1 FROM scoring_run_pages p WHERE p.run_id = ?) \
         AND NOT EXISTS (SELECT 1 FROM scoring_run_pages p WHERE p.run_id = ? AND p.state <> 'done')",
        vec![now.into(), run_id.into(), run_id.into(), run_id.into()],
    )
    .await?;
    Ok(n == 1)
}

/// The calibration a run fitted.
pub async fn load_calibration<C: ConnectionTrait>(
    db: &C,
    run_id: &str,
) -> Result<Option<Calibration>, DbErr> {
    calibration::Entity::find_by_id(run_id.to_string())
        .one(db)
        .await?
        .map(|m| from_json(&m.data))
        .transpose()
}

pub async fn save_calibration<C: ConnectionTrait>(db: &C, c: &Calibration) -> Result<(), DbErr> {
    calibration::Entity::insert(calibration::ActiveModel {
        scoring_run: Set(c.scoring_run.clone()),
        fit_time: Set(c.fit_time),
        data: Set(to_json(c)?),
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

pub async fn latest_calibration<C: ConnectionTrait>(db: &C) -> Result<Option<Calibration>, DbErr> {
    calibration::Entity::find()
        .order_by_desc(calibration::Column::FitTime)
        .order_by_desc(calibration::Column::ScoringRun)
        .one(db)
        .await?
        .map(|m| from_json(&m.data))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_for_postgres_only() {
        let sql = "UPDATE t SET a = ? WHERE b = ? AND c = ?";
        assert_eq!(
            placeholders(DbBackend::Postgres, sql),
            "UPDATE t SET a = $1 WHERE b = $2 AND c = $3"
        );
        assert_eq!(placeholders(DbBackend::Sqlite, sql), sql);
    }
}
