//! What observability costs on the hot paths, measured in one process in
//! interleaved rounds (without, with, without, with, ...), so drift of the
//! machine falls on both sides alike: each pair gives a ratio, reported as the
//! median of the pairs with their spread.
//!
//! - Metrics: GetCustomer from the cache and RecordPurchases with the per-call
//!   and per-event recording switched off and on
//!   (`retention_telemetry::metrics::set_recording`).
//! - Audit rows: written with audited changes only (erasure, export, merge,
//!   unmasked PII read, launch, ...), never with a masked read or a purchase,
//!   which this shows by counting the rows; and what one costs where it is
//!   written: an unmasked GetCustomer (one audit row each) against a masked one.

use std::time::Instant;

use retention_proto::profile as ppb;
use retention_proto::profile::customer_profile_service_client::CustomerProfileServiceClient;
use retention_telemetry::metrics::set_recording;
use retention_testkit::{TestService, mint_token, unique_namespace, with_token};

use super::grpc::{CONCURRENCY, CONNECTIONS, check, create_customers};
use super::purchases::{PER_STREAM, STREAMS, orders, stream_purchases};
use super::{Pairs, ROUNDS, spawn, thousands};
use crate::loadgen::{self, LoadSpec};
use crate::table::Row;

pub async fn run(requests: u64, purchases: usize) -> anyhow::Result<Vec<Row>> {
    let profile = spawn::<retention_profile::Profile>(&unique_namespace(), |_| {}).await?;
    let masked = mint_token(&profile.settings, &["profile.read", "profile.write"]);
    let unmasked = mint_token(
        &profile.settings,
        &["profile.read", "profile.write", "pii.read"],
    );
    let hot = std::sync::Arc::new(create_customers(&profile, &masked, 1_000).await?);
    let channels = loadgen::connect(&super::endpoint(&profile)?, CONNECTIONS).await?;
    let spec = LoadSpec::count((requests / ROUNDS as u64).max(500), CONCURRENCY);
    // An unmasked read writes a row: a tenth as many, paired with as many masked.
    let pii_spec = LoadSpec::count((spec.requests / 10).max(200), CONCURRENCY);
    let reads = |token: String| {
        let (hot, channels) = (hot.clone(), channels.clone());
        move |i: u64, w: usize| {
            let mut c = CustomerProfileServiceClient::new(channels[w % channels.len()].clone());
            let req = with_token(
                ppb::GetCustomerRequest {
                    name: hot[i as usize % hot.len()].clone(),
                },
                &token,
            );
            async move { c.get_customer(req).await.map(|_| ()) }
        }
    };
    let warm = loadgen::run(&LoadSpec::count(hot.len() as u64, 8), reads(masked.clone())).await;
    check("cache warm-up", &warm)?;
    let audit_rows = "SELECT count(*) FROM audit_records";
    let audits_before = profile.count(audit_rows).await?;

    // Metrics on a cache hit.
    let mut hit = Pairs::default();
    for _ in 0..ROUNDS {
        set_recording(false);
        let off = loadgen::run(&spec, reads(masked.clone())).await;
        set_recording(true);
        let on = loadgen::run(&spec, reads(masked.clone())).await;
        check("GetCustomer (metrics off)", &off)?;
        check("GetCustomer (metrics on)", &on)?;
        hit.push(off.throughput(), on.throughput());
    }
    let masked_audits = profile.count(audit_rows).await? - audits_before;

    // Metrics on RecordPurchases.
    let mut import = Pairs::default();
    for round in 0..ROUNDS {
        set_recording(false);
        let off = record(&profile, &masked, &hot, purchases, &format!("off{round}")).await?;
        set_recording(true);
        let on = record(&profile, &masked, &hot, purchases, &format!("on{round}")).await?;
        import.push(off, on);
    }
    let import_audits = profile.count(audit_rows).await? - audits_before - masked_audits;

    // Where an audit row is written: unmasked reads against masked ones.
    let mut pii = Pairs::default();
    let before = profile.count(audit_rows).await?;
    let mut unmasked_calls = 0u64;
    for _ in 0..ROUNDS {
        let off = loadgen::run(&pii_spec, reads(masked.clone())).await;
        let on = loadgen::run(&pii_spec, reads(unmasked.clone())).await;
        check("GetCustomer (masked)", &off)?;
        check("GetCustomer (unmasked)", &on)?;
        unmasked_calls += on.ok;
        pii.push(off.throughput(), on.throughput());
    }
    let pii_audits = profile.count(audit_rows).await? - before;
    profile.stop().await?;
    anyhow::ensure!(
        masked_audits == 0 && import_audits == 0,
        "{masked_audits} audit rows for masked reads, {import_audits} for purchases"
    );
    anyhow::ensure!(
        pii_audits as u64 == unmasked_calls,
        "{pii_audits} audit rows for {unmasked_calls} unmasked reads"
    );

    Ok(vec![
        Row::new(
            "metrics: GetCustomer cache hit, recording on vs off",
            hit.figure("on", "off"),
        )
        .target("≥ 0.95 (costs ≤ 5 %)", hit.median() >= 0.95),
        Row::new(
            "metrics: RecordPurchases, recording on vs off",
            import.figure("on", "off"),
        )
        .target("≥ 0.95 (costs ≤ 5 %)", import.median() >= 0.95),
        Row::new(
            "audit rows: masked GetCustomer and RecordPurchases",
            format!(
                "none written ({} reads, {} purchases): no cost",
                thousands((ROUNDS as u64 * 2 * spec.requests) as f64),
                thousands((ROUNDS * 2 * purchases) as f64)
            ),
        )
        .target(
            "≤ 5 % of GetCustomer hit and RecordPurchases",
            masked_audits == 0 && import_audits == 0,
        ),
        Row::new(
            "audit rows: unmasked GetCustomer (one row each) vs masked",
            pii.figure("unmasked", "masked"),
        ),
    ])
}

/// Streams `n` new purchases (order ids tagged `tag`) as the `purchases`
/// benchmark does; returns purchases per second.
async fn record(
    profile: &TestService,
    token: &str,
    customers: &[String],
    n: usize,
    tag: &str,
) -> anyhow::Result<f64> {
    let mut rows = orders(customers, n);
    for p in &mut rows {
        p.order_id = format!("{tag}-{}", p.order_id);
    }
    let started = Instant::now();
    let recorded =
        stream_purchases(profile, token, &rows, n.div_ceil(STREAMS).min(PER_STREAM)).await?;
    anyhow::ensure!(recorded as usize == n, "recorded {recorded} of {n}");
    Ok(n as f64 / started.elapsed().as_secs_f64())
}
