//! A full scoring run (RunScoring's work) over a synthetic population on
//! PostgreSQL: BG/NBD and Gamma-Gamma fit, scoring, segments, outbox.
//!
//! Customers are simulated from the BG/NBD process with parameters chosen for
//! about ten purchases per customer over 39–78 observed weeks, so a million
//! customers carry about ten million purchases. The ceiling is bulk-writing the
//! same number of feature rows in this process: the least a run that writes one
//! insight per customer can cost. A backtest (RunScoring with an observation
//! end, half a year back) over the same purchases is measured against the run.

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use retention_cache::Cache;
use retention_domain::sim::{BgNbd, Rng, purchase_weeks};
use retention_segmentation::Migrator;
use retention_segmentation::app::{RunOptions, SegmentationApp};
use retention_segmentation::domain::features::Features;
use retention_segmentation::domain::scoring::ScoringConfig;
use retention_segmentation::domain::segments::RunState;
use retention_segmentation::store::entities::{feature, purchase};
use retention_testkit::TestDb;
use sea_orm::ActiveValue::Set;
use sea_orm::EntityTrait;

use super::thousands;
use crate::table::Row;

/// Frequent buyers: mean purchase rate 0.3 a week, mean dropout chance 7.7 %
/// after each purchase.
pub const FREQUENT: BgNbd = BgNbd {
    r: 3.0,
    alpha: 10.0,
    a: 1.0,
    b: 12.0,
};

/// One simulated customer: first purchase at week 0, observed for `t` weeks;
/// the features and each order's time and margin.
fn simulate(
    rng: &mut Rng,
    start: DateTime<Utc>,
    t_weeks: f64,
) -> (Features, Vec<(DateTime<Utc>, i64)>) {
    let week = |w: f64| start + TimeDelta::seconds((w * 7.0 * 86_400.0) as i64);
    let mut f = Features::default();
    let mut orders = Vec::new();
    for w in purchase_weeks(rng, &FREQUENT, t_weeks) {
        let amount = 1_000 + (rng.uniform() * 4_000.0) as i64;
        f.record_purchase(week(w), amount, amount / 4, 0, "tea", &Default::default())
            .expect("a synthetic customer's sums fit");
        orders.push((week(w), amount / 4));
    }
    f.currency = "CNY".into();
    (f, orders)
}

fn peak_rss_kib() -> u64 {
    super::scale::proc_status_kib("self", "VmHWM:").unwrap_or(0)
}

/// Writes `n` simulated customers' features; returns (purchases, write time).
/// With `orders`, also each purchase into segmentation's purchases table (what
/// a backtest reads), outside the timed write.
pub async fn populate(
    db: &sea_orm::DatabaseConnection,
    n: usize,
    orders: bool,
) -> anyhow::Result<(u64, Duration)> {
    let now = retention_domain::now();
    let mut rng = Rng::new(0);
    let mut write_time = Duration::ZERO;
    let mut purchases = 0u64;
    let mut rows = Vec::with_capacity(1000);
    let mut purchase_rows = Vec::with_capacity(10_000);
    for i in 0..n {
        let t_weeks = 39.0 + 39.0 * rng.uniform();
        let start = now - TimeDelta::seconds((t_weeks * 7.0 * 86_400.0) as i64);
        let (f, customer_orders) = simulate(&mut rng, start, t_weeks);
        purchases += u64::from(f.purchases);
        let customer_id = format!("{:08}-0000-7000-8000-{:012}", i / 10_000, i);
        if orders {
            for (k, (at, margin)) in customer_orders.into_iter().enumerate() {
                purchase_rows.push(purchase::ActiveModel {
                    purchase_id: Set(format!("{customer_id}-{k}")),
                    customer_id: Set(customer_id.clone()),
                    occur_time: Set(at),
                    margin_minor: Set(Some(margin)),
                });
            }
        }
        rows.push(feature::ActiveModel {
            customer_id: Set(customer_id),
            data: Set(serde_json::to_string(&f)?),
            update_time: Set(now),
        });
        if rows.len() == 1000 || i + 1 == n {
            let started = Instant::now();
            feature::Entity::insert_many(std::mem::take(&mut rows))
                .exec_without_returning(db)
                .await?;
            write_time += started.elapsed();
            if !purchase_rows.is_empty() {
                purchase::Entity::insert_many(std::mem::take(&mut purchase_rows))
                    .exec_without_returning(db)
                    .await?;
            }
        }
    }
    Ok((purchases, write_time))
}

/// Runs a scoring run to the end; returns it with its duration.
pub async fn score_all(
    app: &SegmentationApp,
) -> anyhow::Result<(
    retention_segmentation::domain::segments::ScoringRun,
    Duration,
)> {
    follow(app, None).await
}

/// Starts a run (a backtest with an observation end) and waits for its end.
async fn follow(
    app: &SegmentationApp,
    observation_end: Option<DateTime<Utc>>,
) -> anyhow::Result<(
    retention_segmentation::domain::segments::ScoringRun,
    Duration,
)> {
    let started = Instant::now();
    let run = app.start_run("", observation_end).await?;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let r = app.get_run(&run.id).await?;
        if matches!(r.state, RunState::Succeeded | RunState::Failed) {
            anyhow::ensure!(r.state == RunState::Succeeded, "run failed: {:?}", r.error);
            return Ok((r, started.elapsed()));
        }
    }
}

pub async fn run(n: usize, scorers: usize) -> anyhow::Result<Vec<Row>> {
    let db_guard = TestDb::postgres().await?;
    let db = retention_db::connect(&retention_db::DbOptions::new(db_guard.url.clone())).await?;
    retention_db::migrate::<Migrator>(&db).await?;
    let (purchases, write_time) = populate(&db, n, true).await?;

    let app = SegmentationApp::new(
        retention_events::Outbox::new(db.clone(), "segmentation", Default::default()),
        Cache::in_process("bench", Duration::from_secs(60)),
        ScoringConfig::default(),
    )
    .with_runs(RunOptions {
        workers: scorers.max(1),
        ..RunOptions::default()
    });
    for filter in [
        r#"churn_probability > 0.7 && value_tier in ["PLATINUM", "GOLD"]"#,
        r#"lifecycle_stage == "DECLINE""#,
    ] {
        app.create_segment("bench".into(), String::new(), filter.into(), "")
            .await?;
    }
    // Peak RSS of the run alone: reset the high-water mark first.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let (run, run_time) = score_all(&app).await?;
    let peak_mib = peak_rss_kib() / 1024;
    let cal = app.latest_calibration().await?;
    println!(
        "scoring run: {n} customers, {purchases} purchases in {:.1} s (ceiling {:.1} s), peak RSS {peak_mib} MiB; \
         fit r {:.3} alpha {:.3} a {:.3} b {:.3} over {} customers in {} ms; {} scored",
        run_time.as_secs_f64(),
        write_time.as_secs_f64(),
        cal.bg_nbd.r,
        cal.bg_nbd.alpha,
        cal.bg_nbd.a,
        cal.bg_nbd.b,
        cal.customers,
        cal.fit_millis,
        run.customers_scored,
    );
    anyhow::ensure!(
        run.customers_scored as usize == n,
        "scored {}",
        run.customers_scored
    );
    let (backtest, backtest_time) =
        follow(&app, Some(retention_domain::now() - TimeDelta::weeks(26))).await?;
    let report = backtest
        .backtest
        .ok_or_else(|| anyhow::anyhow!("the backtest has no report"))?;
    println!(
        "backtest: {} customers in {:.1} s; holdout predicted {:.0}, actual {}",
        report.customers,
        backtest_time.as_secs_f64(),
        report.predicted_total,
        report.actual_total
    );
    db.close().await?;
    let secs = run_time.as_secs_f64();
    let ratio = backtest_time.as_secs_f64() / secs;
    Ok(vec![
        Row::new(
            format!(
                "bulk write of {} feature rows (ceiling)",
                thousands(n as f64)
            ),
            format!("{:.1} s", write_time.as_secs_f64()),
        ),
        Row::new(
            format!(
                "RunScoring, {} customers / {} purchases, {scorers} scorers: time",
                thousands(n as f64),
                thousands(purchases as f64)
            ),
            format!(
                "{secs:.1} s = {:.2} × bulk write (fit {} ms)",
                secs / write_time.as_secs_f64(),
                cal.fit_millis
            ),
        )
        .target("≤ 45 s", secs <= 45.0),
        Row::new(
            "RunScoring: peak memory (RSS) during the run",
            format!("{peak_mib} MiB"),
        )
        .target("≤ 1 GiB", peak_mib <= 1024),
        Row::new(
            format!(
                "Backtest (observation end 26 weeks back), {} customers: time",
                thousands(report.customers as f64)
            ),
            format!(
                "{:.1} s = {ratio:.2} × the scoring run",
                backtest_time.as_secs_f64()
            ),
        )
        .target("≤ 1.5 × the run", ratio <= 1.5),
    ])
}
