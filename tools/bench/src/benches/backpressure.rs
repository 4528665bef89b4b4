//! Backpressure (#16): what the relay's bound costs RecordPurchases while the
//! consumers keep up, and what happens to an ingest while segmentation is
//! stopped (it goes on into the outbox, and everything arrives afterwards).
//!
//! The cost is measured against the same ingest into a profile whose stream has
//! no declared groups (no room checks, trimming by `MAXLEN` as before #16), in
//! alternating rounds so drift hits both sides alike; segmentation consumes in
//! both.

use std::time::{Duration, Instant};

use futures::StreamExt;
use retention_proto::profile as ppb;
use retention_proto::profile::customer_profile_service_client::CustomerProfileServiceClient;
use retention_testkit::{TestService, mint_token, unique_namespace, with_token};

use super::grpc::create_customers;
use super::purchases::orders;
use super::{spawn, thousands};
use crate::table::Row;

/// Alternating rounds per side of the cost comparison.
const ROUNDS: usize = 3;

/// Streams `rows` into `profile` as a bulk loader would (4 streams of messages
/// of 1,000); returns how long it took.
async fn ingest(
    profile: &TestService,
    token: &str,
    rows: &[ppb::Purchase],
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let calls = rows.chunks(10_000).map(|chunk| {
        let messages: Vec<ppb::RecordPurchasesRequest> = chunk
            .chunks(1_000)
            .map(|c| ppb::RecordPurchasesRequest {
                purchases: c.to_vec(),
            })
            .collect();
        let mut client = CustomerProfileServiceClient::new(profile.channel.clone());
        let req = with_token(futures::stream::iter(messages), token);
        async move { client.record_purchases(req).await.map(|r| r.into_inner()) }
    });
    let results: Vec<_> = futures::stream::iter(calls)
        .buffer_unordered(4)
        .collect()
        .await;
    for r in results {
        let r = r?;
        anyhow::ensure!(r.rejected_count == 0, "rejected: {:?}", r.rejected.first());
    }
    Ok(started.elapsed())
}

/// Profile and segmentation on one namespace; `groups` declares profile's
/// consumer groups ("" for none).
async fn pair(
    groups: &'static str,
    max_len: u64,
) -> anyhow::Result<(TestService, TestService, String)> {
    let ns = unique_namespace();
    let tweak = move |s: &mut retention_config::Settings| {
        s.events
            .consumer_groups
            .insert("profile".into(), groups.into());
        s.events.stream_max_len = max_len;
    };
    let profile = spawn::<retention_profile::Profile>(&ns, tweak).await?;
    let segmentation = spawn::<retention_segmentation::Segmentation>(&ns, tweak).await?;
    Ok((profile, segmentation, ns))
}

async fn until(
    service: &TestService,
    sql: &str,
    done: impl Fn(i64) -> bool,
    limit: Duration,
) -> anyhow::Result<i64> {
    let deadline = Instant::now() + limit;
    loop {
        let n = service.count(sql).await?;
        if done(n) || Instant::now() > deadline {
            return Ok(n);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn run(purchases: usize) -> anyhow::Result<Vec<Row>> {
    let mut rows = cost(purchases).await?;
    rows.extend(stopped(purchases / 2).await?);
    Ok(rows)
}

/// RecordPurchases with the bound on (segmentation declared) against off.
async fn cost(purchases: usize) -> anyhow::Result<Vec<Row>> {
    let (on, on_seg, _) = pair("segmentation", 1_000_000).await?;
    let (off, off_seg, _) = pair("", 1_000_000).await?;
    let token = mint_token(&on.settings, &["profile.read", "profile.write"]);
    let on_customers = create_customers(&on, &token, 1_000).await?;
    let off_customers = create_customers(&off, &token, 1_000).await?;
    let per_round = (purchases / ROUNDS).max(1_000);
    let (mut t_on, mut t_off) = (Duration::ZERO, Duration::ZERO);
    for round in 0..ROUNDS {
        let batch = |customers: &[String]| {
            let mut rows = orders(customers, per_round);
            for (i, r) in rows.iter_mut().enumerate() {
                r.order_id = format!("bp-{round}-{i}");
            }
            rows
        };
        let (a, b) = (batch(&on_customers), batch(&off_customers));
        // Alternate which side goes first.
        if round % 2 == 0 {
            t_on += ingest(&on, &token, &a).await?;
            t_off += ingest(&off, &token, &b).await?;
        } else {
            t_off += ingest(&off, &token, &b).await?;
            t_on += ingest(&on, &token, &a).await?;
        }
    }
    let total = (per_round * ROUNDS) as f64;
    let (rate_on, rate_off) = (total / t_on.as_secs_f64(), total / t_off.as_secs_f64());
    let ratio = rate_on / rate_off;
    // Both pipelines deliver everything (not timed).
    let expected = (per_round * ROUNDS) as i64;
    let sql = "SELECT count(*) FROM purchases";
    let got_on = until(&on_seg, sql, |n| n >= expected, Duration::from_secs(600)).await?;
    let got_off = until(&off_seg, sql, |n| n >= expected, Duration::from_secs(600)).await?;
    for s in [on_seg, off_seg, on, off] {
        s.stop().await?;
    }
    Ok(vec![
        Row::new(
            "RecordPurchases, no declared groups (stream capped by MAXLEN, as before #16)",
            format!("{}/s", thousands(rate_off)),
        ),
        Row::new(
            format!(
                "backpressure: RecordPurchases with the relay bounded by segmentation's lag ({ROUNDS} alternating rounds of {})",
                thousands(per_round as f64)
            ),
            format!(
                "{}/s = {ratio:.3} × without; segmentation folded {} and {} of {}",
                thousands(rate_on),
                thousands(got_on as f64),
                thousands(got_off as f64),
                thousands(expected as f64)
            ),
        )
        .target("≥ 0.95 × without", ratio >= 0.95),
    ])
}

/// An ingest while segmentation is stopped, then segmentation started.
async fn stopped(purchases: usize) -> anyhow::Result<Vec<Row>> {
    let cap: u64 = if purchases >= 50_000 { 10_000 } else { 1_000 };
    let ns = unique_namespace();
    let tweak = move |s: &mut retention_config::Settings| {
        s.events
            .consumer_groups
            .insert("profile".into(), "segmentation".into());
        s.events.stream_max_len = cap;
    };
    let profile = spawn::<retention_profile::Profile>(&ns, tweak).await?;
    let token = mint_token(&profile.settings, &["profile.read", "profile.write"]);
    let customers = create_customers(&profile, &token, 1_000).await?;
    let rows = orders(&customers, purchases);
    let took = ingest(&profile, &token, &rows).await?;
    let rate = purchases as f64 / took.as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let waiting = profile
        .count("SELECT count(*) FROM outbox_events WHERE published_at IS NULL")
        .await?;
    let key = retention_events::stream_key(&ns, retention_profile::events::STREAM);
    let mut redis = redis::Client::open(retention_testkit::redis_url())?
        .get_multiplexed_async_connection()
        .await?;
    let on_stream: u64 = redis::cmd("XLEN").arg(&key).query_async(&mut redis).await?;

    let started = Instant::now();
    let segmentation = spawn::<retention_segmentation::Segmentation>(&ns, tweak).await?;
    let folded = until(
        &segmentation,
        "SELECT count(*) FROM purchases",
        |n| n >= purchases as i64,
        Duration::from_secs(900),
    )
    .await?;
    let drained = started.elapsed();
    let left = until(
        &profile,
        "SELECT count(*) FROM outbox_events WHERE published_at IS NULL",
        |n| n == 0,
        Duration::from_secs(60),
    )
    .await?;
    let customers_seen = segmentation.count("SELECT count(*) FROM features").await?;
    segmentation.stop().await?;
    profile.stop().await?;
    let lost = purchases as i64 - folded;
    Ok(vec![
        Row::new(
            format!(
                "backpressure: segmentation stopped, {} purchases ingested (stream bound {})",
                thousands(purchases as f64),
                thousands(cap as f64)
            ),
            format!(
                "{}/s into the outbox; {} entries on the stream, {} events waiting in the outbox",
                thousands(rate),
                thousands(on_stream as f64),
                thousands(waiting as f64)
            ),
        )
        .target(
            "ingest goes on, stream within its bound",
            on_stream <= cap && waiting > 0,
        ),
        Row::new(
            "backpressure: segmentation started afterwards, drained",
            format!(
                "{:.1} s: {} of {} purchases and {} customers folded, {lost} lost, {left} left in the outbox",
                drained.as_secs_f64(),
                thousands(folded as f64),
                thousands(purchases as f64),
                thousands(customers_seen as f64),
            ),
        )
        .target("none lost", lost == 0 && left == 0),
    ])
}
