//! RecordPurchases (client streaming, one transaction per message, outbox event
//! per purchase) against a raw PostgreSQL COPY of the same rows.

use std::time::Instant;

use chrono::{TimeDelta, Utc};
use futures::StreamExt;
use retention_proto::common::Money;
use retention_proto::profile as ppb;
use retention_proto::profile::customer_profile_service_client::CustomerProfileServiceClient;
use retention_testkit::{mint_token, unique_namespace, with_token};
use sea_orm::{ConnectionTrait, Database};

use super::grpc::create_customers;
use super::{spawn, thousands};
use crate::table::Row;

/// Purchases per stream message (the service's maximum).
pub const MESSAGE: usize = 1_000;
/// Streams sent at once, as a bulk loader would.
pub const STREAMS: usize = 4;
/// Purchases per stream.
pub const PER_STREAM: usize = 10_000;

pub async fn run(purchases: usize) -> anyhow::Result<Vec<Row>> {
    let profile = spawn::<retention_profile::Profile>(&unique_namespace(), |_| {}).await?;
    let token = mint_token(&profile.settings, &["profile.read", "profile.write"]);
    let customers = create_customers(&profile, &token, 1_000).await?;
    let rows = orders(&customers, purchases);

    // Streams of 10,000 (each well inside the server's call deadline), four at
    // a time, as a bulk loader would send them.
    let started = Instant::now();
    let recorded = stream_purchases(&profile, &token, &rows, PER_STREAM).await?;
    let streamed = started.elapsed();
    anyhow::ensure!(
        recorded as usize == rows.len(),
        "recorded {recorded} of {}",
        rows.len()
    );
    let outbox = profile
        .count("SELECT count(*) FROM outbox_events WHERE event_type = 'retention.profile.v1.PurchaseRecordedEvent'")
        .await?;
    anyhow::ensure!(
        outbox as usize >= rows.len(),
        "{outbox} outbox events for {recorded}"
    );

    // The ceiling: the same rows into an identical table by COPY, one stream.
    let db = Database::connect(profile.settings.database.url.as_str()).await?;
    db.execute_unprepared("CREATE TABLE purchases_copy (LIKE purchases INCLUDING ALL)")
        .await?;
    let mut text = String::with_capacity(rows.len() * 160);
    let now = Utc::now().to_rfc3339();
    for (i, p) in rows.iter().enumerate() {
        let customer = p.customer.trim_start_matches("customers/");
        let occur = p.occur_time.as_ref().map(|t| t.seconds).unwrap_or(0);
        let amount = p.amount.as_ref().map(|m| m.minor_units).unwrap_or(0);
        let margin = p.gross_margin.as_ref().map(|m| m.minor_units).unwrap_or(0);
        text.push_str(&format!(
            "{}\t{customer}\t{customer}\t{}\t{}\tCNY\t{amount}\t{margin}\t0\t{}\t{}\t{now}\n",
            uuid::Uuid::now_v7(),
            p.order_id,
            chrono::DateTime::from_timestamp(occur, 0)
                .unwrap_or_default()
                .to_rfc3339(),
            p.product_category,
            p.channel,
        ));
        let _ = i;
    }
    let pool = db.get_postgres_connection_pool();
    let started = Instant::now();
    let mut conn = pool.acquire().await?;
    let mut copy = conn
        .copy_in_raw(
            "COPY purchases_copy (id, customer_id, origin_customer_id, order_id, occur_time, \
             currency, amount_minor, margin_minor, discount_minor, product_category, channel, \
             create_time) FROM STDIN",
        )
        .await?;
    copy.send(text.as_bytes()).await?;
    let copied = copy.finish().await?;
    let copy_time = started.elapsed();
    drop(conn);
    anyhow::ensure!(copied as usize == rows.len(), "copied {copied}");
    db.close().await?;
    profile.stop().await?;

    let rate = rows.len() as f64 / streamed.as_secs_f64();
    let copy_rate = rows.len() as f64 / copy_time.as_secs_f64();
    let ratio = rate / copy_rate;
    Ok(vec![
        Row::new(
            format!("raw COPY of {} purchase rows", thousands(rows.len() as f64)),
            format!(
                "{}/s ({:.2} s)",
                thousands(copy_rate),
                copy_time.as_secs_f64()
            ),
        ),
        Row::new(
            format!("RecordPurchases, {STREAMS} streams × messages of {MESSAGE}, with outbox"),
            format!(
                "{}/s = {ratio:.2} × COPY ({:.2} s)",
                thousands(rate),
                streamed.as_secs_f64()
            ),
        )
        .target(
            "≥ 0.3 × COPY and ≥ 20,000/s",
            ratio >= 0.3 && rate >= 20_000.0,
        ),
    ])
}

/// Streams `rows` to RecordPurchases, `per_stream` in each call and
/// [`STREAMS`] calls at once, in messages of [`MESSAGE`]; fails on any rejected
/// purchase; returns how many were recorded.
pub async fn stream_purchases(
    profile: &retention_testkit::TestService,
    token: &str,
    rows: &[ppb::Purchase],
    per_stream: usize,
) -> anyhow::Result<u64> {
    let calls = rows.chunks(per_stream.max(1)).map(|chunk| {
        let messages: Vec<ppb::RecordPurchasesRequest> = chunk
            .chunks(MESSAGE)
            .map(|c| ppb::RecordPurchasesRequest {
                purchases: c.to_vec(),
            })
            .collect();
        let mut client = CustomerProfileServiceClient::new(profile.channel.clone());
        let req = with_token(futures::stream::iter(messages), token);
        async move { client.record_purchases(req).await.map(|r| r.into_inner()) }
    });
    let results: Vec<_> = futures::stream::iter(calls)
        .buffer_unordered(STREAMS)
        .collect()
        .await;
    let mut recorded = 0;
    for r in results {
        let r = r?;
        anyhow::ensure!(r.rejected_count == 0, "rejected: {:?}", r.rejected.first());
        recorded += r.recorded_count as u64;
    }
    Ok(recorded)
}

/// `n` orders spread over `customers`, dated over the last year (a customer's
/// orders fall weeks apart, as the models expect of real buying).
pub fn orders(customers: &[String], n: usize) -> Vec<ppb::Purchase> {
    let now = Utc::now();
    (0..n)
        .map(|i| {
            let at = now - TimeDelta::minutes((i as i64 * 7_919) % 525_600 + 1);
            let amount = 1_000 + (i as i64 * 7919) % 4_000;
            ppb::Purchase {
                customer: customers[i % customers.len()].clone(),
                order_id: format!("bench-{i}"),
                occur_time: Some(prost_types::Timestamp {
                    seconds: at.timestamp(),
                    nanos: 0,
                }),
                amount: Some(money(amount)),
                gross_margin: Some(money(amount / 4)),
                product_category: "tea".into(),
                channel: "web".into(),
                ..Default::default()
            }
        })
        .collect()
}

fn money(minor_units: i64) -> Money {
    Money {
        currency_code: "CNY".into(),
        minor_units,
    }
}
