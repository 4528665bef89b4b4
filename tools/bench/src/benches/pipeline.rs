//! The event pipeline under sustained load: PurchaseRecorded committed in
//! profile → relayed to Redis Streams → consumed by segmentation, which updates
//! the features and rescores the customer's insight in one transaction.
//!
//! Latency per event is segmentation's `processed_events.processed_at` (the
//! insight's transaction) minus profile's `outbox_events.created_at` (the
//! purchase's transaction); both clocks are this machine's.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use retention_proto::profile as ppb;
use retention_proto::profile::customer_profile_service_client::CustomerProfileServiceClient;
use retention_proto::segmentation::segmentation_service_client::SegmentationServiceClient;
use retention_testkit::{TestService, mint_token, unique_namespace, with_token};
use sea_orm::{ConnectionTrait, Database, Statement};

use super::grpc::{check, create_customers};
use super::purchases::orders;
use super::{spawn, thousands};
use crate::loadgen::{self, LoadSpec};
use crate::table::Row;

pub const RATE: f64 = 1_000.0;

pub async fn run(seconds: u64) -> anyhow::Result<Vec<Row>> {
    let ns = unique_namespace();
    let profile = spawn::<retention_profile::Profile>(&ns, |_| {}).await?;
    let segmentation = spawn::<retention_segmentation::Segmentation>(&ns, |_| {}).await?;
    let ptoken = mint_token(&profile.settings, &["profile.read", "profile.write"]);
    let stoken = mint_token(
        &segmentation.settings,
        &["segmentation.admin", "segmentation.read"],
    );

    // A calibrated model first, so every purchase event rescores an insight.
    let customers = create_customers(&profile, &ptoken, 1_000).await?;
    let seed = orders(&customers, 3_000);
    let mut client = CustomerProfileServiceClient::new(profile.channel.clone());
    client
        .record_purchases(with_token(
            futures::stream::iter(
                seed.chunks(1_000)
                    .map(|c| ppb::RecordPurchasesRequest {
                        purchases: c.to_vec(),
                    })
                    .collect::<Vec<_>>(),
            ),
            &ptoken,
        ))
        .await?;
    wait_for(
        &segmentation,
        "SELECT count(*) FROM purchases",
        seed.len() as i64,
    )
    .await?;
    let mut seg = SegmentationServiceClient::new(segmentation.channel.clone());
    super::run_scoring(&mut seg, &stoken).await?;

    // Sustained load: one purchase per call, due at a fixed rate.
    let load_start: DateTime<Utc> = Utc::now();
    let total = (RATE * seconds as f64) as u64;
    let channels = loadgen::connect(&super::endpoint(&profile)?, 4).await?;
    let (token, ids) = (ptoken.clone(), std::sync::Arc::new(customers));
    let load = loadgen::run(&LoadSpec::count(total, 64).at_rate(RATE), move |i, w| {
        let mut c = CustomerProfileServiceClient::new(channels[w % channels.len()].clone());
        let mut p = orders(&ids[i as usize % ids.len()..][..1], 1).remove(0);
        p.order_id = format!("load-{i}");
        let req = with_token(ppb::RecordPurchaseRequest { purchase: Some(p) }, &token);
        async move { c.record_purchase(req).await.map(|_| ()) }
    })
    .await;
    check("RecordPurchase under sustained load", &load)?;

    // Every acknowledged purchase's event, and when segmentation applied it.
    let pdb = Database::connect(profile.settings.database.url.as_str()).await?;
    let committed = event_times(
        &pdb,
        "SELECT event_id, created_at FROM outbox_events \
         WHERE event_type = 'retention.profile.v1.PurchaseRecordedEvent' AND created_at >= $1",
        load_start,
    )
    .await?;
    anyhow::ensure!(
        committed.len() as u64 == load.ok,
        "{} events committed for {} purchases",
        committed.len(),
        load.ok
    );
    let sdb = Database::connect(segmentation.settings.database.url.as_str()).await?;
    let mut applied = HashMap::new();
    for _ in 0..600 {
        applied = event_times(
            &sdb,
            "SELECT event_id, processed_at FROM processed_events WHERE processed_at >= $1",
            load_start,
        )
        .await?;
        if committed.keys().all(|k| applied.contains_key(k)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let lost = committed
        .keys()
        .filter(|k| !applied.contains_key(*k))
        .count();
    let mut lat: Vec<i64> = committed
        .iter()
        .filter_map(|(k, c)| {
            applied
                .get(k)
                .map(|a| (*a - *c).num_microseconds().unwrap_or(i64::MAX))
        })
        .collect();
    lat.sort_unstable();
    let q = |q: f64| {
        lat.get(((q * lat.len() as f64).ceil() as usize).clamp(1, lat.len().max(1)) - 1)
            .map(|us| *us as f64 / 1e3)
            .unwrap_or(f64::NAN)
    };
    let (p50, p99, max) = (q(0.5), q(0.99), q(1.0));
    println!(
        "pipeline: {} purchases at {:.0}/s; commit → insight p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms; {lost} not applied",
        load.ok,
        load.throughput()
    );
    pdb.close().await?;
    sdb.close().await?;
    profile.stop().await?;
    segmentation.stop().await?;
    Ok(vec![Row::new(
        format!(
            "event pipeline, PurchaseRecorded → insight rescored, {} purchases/s for {seconds} s",
            thousands(RATE)
        ),
        format!(
            "p99 {p99:.1} ms (p50 {p50:.1} ms, max {max:.1} ms), {} events, {lost} lost; load achieved {}/s",
            thousands(committed.len() as f64),
            thousands(load.throughput())
        ),
    )
    .target("p99 ≤ 1 s, none lost", p99 <= 1_000.0 && lost == 0)])
}

async fn wait_for(s: &TestService, sql: &str, at_least: i64) -> anyhow::Result<()> {
    for _ in 0..600 {
        if s.count(sql).await? >= at_least {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("timed out waiting for {sql} ≥ {at_least}")
}

async fn event_times(
    db: &sea_orm::DatabaseConnection,
    sql: &str,
    since: DateTime<Utc>,
) -> anyhow::Result<HashMap<String, DateTime<Utc>>> {
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            sql,
            [since.into()],
        ))
        .await?;
    rows.into_iter()
        .map(|r| {
            Ok((
                r.try_get_by_index::<String>(0)?,
                r.try_get_by_index::<DateTime<Utc>>(1)?,
            ))
        })
        .collect()
}
