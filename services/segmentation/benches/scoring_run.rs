//! A full scoring run over synthetic customers on PostgreSQL (`make bench`).
//!
//! Customers are simulated from the BG/NBD process with the CDNOW parameters
//! (r = 0.243, α = 4.414, a = 0.793, b = 2.426; 39 weeks observed), so the fit at
//! this scale should land near them. Reported: run time, peak RSS during the run,
//! and the run time as a ratio of a ceiling measured in the same process: the
//! time to bulk-write the same number of feature rows (the least a run that
//! writes one insight per customer can cost).
//!
//! `BENCH_CUSTOMERS` (default 1,000,000) sets the population.

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use retention_cache::Cache;
use retention_domain::sim::{CDNOW, Rng, purchase_weeks};
use retention_segmentation::app::SegmentationApp;
use retention_segmentation::domain::features::Features;
use retention_segmentation::domain::scoring::ScoringConfig;
use retention_segmentation::domain::segments::RunState;
use retention_segmentation::store::{Migrator, entities::feature};
use retention_testkit::TestDb;
use sea_orm::ActiveValue::Set;
use sea_orm::EntityTrait;

/// One simulated customer: first purchase at week 0, observed for `t` weeks.
fn simulate(rng: &mut Rng, start: DateTime<Utc>, t_weeks: f64) -> Features {
    let week = |w: f64| start + TimeDelta::seconds((w * 7.0 * 86_400.0) as i64);
    let mut f = Features::default();
    for w in purchase_weeks(rng, &CDNOW, t_weeks) {
        let amount = 1_000 + (rng.uniform() * 4_000.0) as i64;
        f.record_purchase(week(w), amount, amount / 4, 0, "tea");
    }
    f.currency = "CNY".into();
    f
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::var("BENCH_CUSTOMERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let db_guard = TestDb::postgres().await?;
    let db = retention_db::connect(&retention_db::DbOptions::new(db_guard.url.clone())).await?;
    retention_db::migrate::<Migrator>(&db).await?;

    // Ceiling: bulk-write n feature rows.
    let now = retention_domain::now();
    let mut rng = Rng::new(0);
    let write_started = Instant::now();
    let mut rows = Vec::with_capacity(1000);
    for i in 0..n {
        let t_weeks = 39.0 + 39.0 * rng.uniform();
        let start = now - TimeDelta::seconds((t_weeks * 7.0 * 86_400.0) as i64);
        let f = simulate(&mut rng, start, t_weeks);
        rows.push(feature::ActiveModel {
            customer_id: Set(format!("{:08}-0000-7000-8000-{:012}", i / 10_000, i)),
            data: Set(serde_json::to_string(&f)?),
            update_time: Set(now),
        });
        if rows.len() == 1000 || i + 1 == n {
            feature::Entity::insert_many(std::mem::take(&mut rows))
                .exec_without_returning(&db)
                .await?;
        }
    }
    let write_time = write_started.elapsed();

    let app = SegmentationApp::new(
        db.clone(),
        Cache::in_process("bench", Duration::from_secs(60)),
        ScoringConfig::default(),
        Default::default(),
    );
    for filter in [
        r#"churn_probability > 0.7 && value_tier in ["PLATINUM", "GOLD"]"#,
        r#"lifecycle_stage == "DECLINE""#,
    ] {
        app.create_segment("bench".into(), String::new(), filter.into(), "")
            .await?;
    }
    // Peak RSS of the run alone: reset the high-water mark first.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let started = Instant::now();
    let run = app.start_run("").await?;
    let run = loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let r = app.get_run(&run.id).await?;
        if matches!(r.state, RunState::Succeeded | RunState::Failed) {
            break r;
        }
    };
    let run_time = started.elapsed();
    let peak = peak_rss_kib();
    let cal = app.latest_calibration().await?;
    println!(
        "| scoring run, {n} customers | {:.1} s | {:.1} s | {:.2} | {} MiB | {:?} |",
        run_time.as_secs_f64(),
        write_time.as_secs_f64(),
        run_time.as_secs_f64() / write_time.as_secs_f64(),
        peak / 1024,
        run.state,
    );
    println!(
        "fit: r {:.3} alpha {:.3} a {:.3} b {:.3} over {} customers in {} ms; {} scored; error {:?}",
        cal.bg_nbd.r,
        cal.bg_nbd.alpha,
        cal.bg_nbd.a,
        cal.bg_nbd.b,
        cal.customers,
        cal.fit_millis,
        run.customers_scored,
        run.error
    );
    db.close().await?;
    Ok(())
}
