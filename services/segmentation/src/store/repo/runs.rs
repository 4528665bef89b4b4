//! Scoring runs and the calibrations they fit.

use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder};

use super::{from_json, to_json};
use crate::domain::calibration::Calibration;
use crate::domain::segments::{RunState, ScoringRun};
use crate::store::entities::{calibration, scoring_run};

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
    })
}

pub async fn insert_run<C: ConnectionTrait>(db: &C, r: &ScoringRun) -> Result<(), DbErr> {
    scoring_run::Entity::insert(run_active(r)?)
        .exec_without_returning(db)
        .await?;
    Ok(())
}

pub async fn save_run<C: ConnectionTrait>(db: &C, r: &ScoringRun) -> Result<(), DbErr> {
    scoring_run::Entity::update(run_active(r)?).exec(db).await?;
    Ok(())
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
        .filter(
            scoring_run::Column::State
                .is_in([RunState::Pending.as_str(), RunState::Running.as_str()]),
        )
        .one(db)
        .await?
        .map(run_from)
        .transpose()
}

/// Runs a crashed process left unfinished are failed on start (one process runs
/// scoring at a time; see the app).
pub async fn fail_unfinished_runs<C: ConnectionTrait>(
    db: &C,
    now: DateTime<Utc>,
) -> Result<u64, DbErr> {
    let r = scoring_run::Entity::update_many()
        .col_expr(
            scoring_run::Column::State,
            Expr::val(RunState::Failed.as_str()),
        )
        .col_expr(scoring_run::Column::EndTime, Expr::val(now))
        .col_expr(
            scoring_run::Column::Error,
            Expr::val("interrupted: the service stopped during the run"),
        )
        .filter(
            scoring_run::Column::State
                .is_in([RunState::Pending.as_str(), RunState::Running.as_str()]),
        )
        .exec(db)
        .await?;
    Ok(r.rows_affected)
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
