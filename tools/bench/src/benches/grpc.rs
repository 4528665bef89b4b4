//! Unary reads: the echo ceiling, GetCustomer from the Redis cache, and
//! GetCustomer on a cache miss against a raw point-select loop.

use std::time::Duration;

use prost::Message;
use retention_proto::profile as ppb;
use retention_proto::profile::customer_profile_service_client::CustomerProfileServiceClient;
use retention_testkit::{SpawnedService, TestService, mint_token, unique_namespace, with_token};
use sea_orm::{ConnectionTrait, Statement};

use super::{Pairs, ROUNDS, spawn, thousands};
use crate::echo::{self, EchoServiceClient, pb::EchoRequest};
use crate::loadgen::{self, LoadSpec, Report, ms};
use crate::table::Row;

/// Closed-loop shape for peak throughput: enough in flight to keep both cores
/// busy, spread over a few connections as a real client pool would.
pub const CONCURRENCY: usize = 64;
pub const CONNECTIONS: usize = 4;

pub struct Options {
    pub requests: u64,
    /// Customers created for the cache-miss run (each is read once).
    pub miss_customers: u64,
}

pub async fn run(o: &Options) -> anyhow::Result<Vec<Row>> {
    let profile = spawn::<retention_profile::Profile>(&unique_namespace(), |_| {}).await?;
    let token = mint_token(&profile.settings, &["profile.read", "profile.write"]);
    let hot = create_customers(&profile, &token, 1_000).await?;

    // The echo reply is as large as the GetCustomer reply it stands in for.
    let sample = CustomerProfileServiceClient::new(profile.channel.clone())
        .get_customer(with_token(
            ppb::GetCustomerRequest {
                name: hot[0].clone(),
            },
            &token,
        ))
        .await?
        .into_inner();
    let reply_bytes = sample.encoded_len() as u32;
    let request_payload = hot[0].len();

    let echo_srv = SpawnedService::spawn(|l, stop| async move {
        echo::serve(l, async move {
            let _ = stop.await;
        })
        .await
        .map_err(Into::into)
    })
    .await?;
    let echo_channels = loadgen::connect(&echo_srv.endpoint(), CONNECTIONS).await?;
    let echo_call = |channels: Vec<tonic::transport::Channel>| {
        move |_: u64, w: usize| {
            let mut c = EchoServiceClient::new(channels[w % channels.len()].clone());
            async move {
                c.echo(EchoRequest {
                    reply_bytes,
                    payload: vec![b'n'; request_payload],
                })
                .await
                .map(|_| ())
            }
        }
    };
    let channels = loadgen::connect(&super::endpoint(&profile)?, CONNECTIONS).await?;
    let get = |ids: std::sync::Arc<Vec<String>>, channels: Vec<tonic::transport::Channel>| {
        let token = token.clone();
        move |i: u64, w: usize| {
            let mut c = CustomerProfileServiceClient::new(channels[w % channels.len()].clone());
            let req = with_token(
                ppb::GetCustomerRequest {
                    name: ids[i as usize % ids.len()].clone(),
                },
                &token,
            );
            async move { c.get_customer(req).await.map(|_| ()) }
        }
    };
    // Cache hit: every customer read once first, then reads cycle over them,
    // in rounds alternating with the echo ceiling.
    let hot = std::sync::Arc::new(hot);
    let warm = loadgen::run(
        &LoadSpec::count(hot.len() as u64, 8),
        get(hot.clone(), channels.clone()),
    )
    .await;
    check("cache warm-up", &warm)?;
    let spec = LoadSpec::count((o.requests / ROUNDS as u64).max(500), CONCURRENCY);
    let mut hits = Pairs::default();
    let (mut echo_p99, mut hit_p99) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let echo = loadgen::run(&spec, echo_call(echo_channels.clone())).await;
        check("echo", &echo)?;
        let hit = loadgen::run(&spec, get(hot.clone(), channels.clone())).await;
        check("GetCustomer (hit)", &hit)?;
        println!(
            "round {round}: echo {}; GetCustomer hit {}",
            echo.summary(),
            hit.summary()
        );
        hits.push(echo.throughput(), hit.throughput());
        echo_p99.push(echo.p99());
        hit_p99.push(hit.p99());
    }
    let half_rate = hits.mean(true) / 2.0;
    let half_spec = LoadSpec {
        requests: 0,
        duration: Some(Duration::from_secs(10)),
        concurrency: CONCURRENCY,
        rate: Some(half_rate),
    };
    let half = loadgen::run(&half_spec, get(hot.clone(), channels.clone())).await;
    check("GetCustomer (half load)", &half)?;
    println!("GetCustomer at half of peak: {}", half.summary());
    // The same open loop against the bare echo server: the tail that the
    // generator, the runtime and the shared machine add before any service work.
    let echo_half = loadgen::run(&half_spec, echo_call(echo_channels)).await;
    echo_srv.stop().await?;
    check("echo (half load)", &echo_half)?;
    println!("echo at the same rate: {}", echo_half.summary());

    // Cache miss: customers never read before, each read once in shuffled
    // order, a share per round, alternating with the raw loop over the same rows.
    let cold = create_customers(&profile, &token, o.miss_customers).await?;
    // The relay publishes the creations in the background; reads measured while
    // it drains would pay for its work, which the raw loop does not.
    super::outbox_drained(&profile).await?;
    let mut shuffled = cold.clone();
    shuffle(&mut shuffled);
    let db = retention_db::connect(&retention_db::DbOptions::from_settings(
        &profile.settings.database,
    ))
    .await?;
    let mut misses = Pairs::default();
    let (mut raw_p99, mut miss_p99) = (Vec::new(), Vec::new());
    for (round, share) in shuffled
        .chunks(shuffled.len().div_ceil(ROUNDS).max(1))
        .enumerate()
    {
        let share = std::sync::Arc::new(share.to_vec());
        let spec = LoadSpec::count(share.len() as u64, CONCURRENCY);
        // The raw loop: the same rows by primary key, same pool size, no service.
        let ids: std::sync::Arc<Vec<String>> = std::sync::Arc::new(
            share
                .iter()
                .map(|n| n.trim_start_matches("customers/").to_string())
                .collect(),
        );
        let db = db.clone();
        let raw = loadgen::run(&spec, move |i, _| {
            let (db, id) = (db.clone(), ids[i as usize % ids.len()].clone());
            async move {
                let row = db
                    .query_one_raw(Statement::from_sql_and_values(
                        db.get_database_backend(),
                        "SELECT * FROM customers WHERE id = $1",
                        [id.into()],
                    ))
                    .await
                    .map_err(|e| tonic::Status::internal(e.to_string()))?;
                row.map(|_| ())
                    .ok_or_else(|| tonic::Status::not_found("customer"))
            }
        })
        .await;
        check("raw point-select", &raw)?;
        let miss = loadgen::run(&spec, get(share, channels.clone())).await;
        check("GetCustomer (miss)", &miss)?;
        println!(
            "round {round}: raw {}; GetCustomer miss {}",
            raw.summary(),
            miss.summary()
        );
        misses.push(raw.throughput(), miss.throughput());
        raw_p99.push(raw.p99());
        miss_p99.push(miss.p99());
    }
    profile.stop().await?;

    let half_met = half.kept_schedule() && half.p99() <= Duration::from_millis(2);
    Ok(vec![
        Row::new(
            "echo ceiling (unary gRPC, same message size)",
            format!(
                "{}/s (mean of {ROUNDS} rounds), p99 {} (median)",
                thousands(hits.mean(false)),
                ms(median(&mut echo_p99))
            ),
        ),
        Row::new(
            "GetCustomer, Redis cache hit: throughput",
            format!(
                "{}, p99 {} (median)",
                hits.figure("hit", "echo"),
                ms(median(&mut hit_p99))
            ),
        )
        .target("≥ 0.8 × echo", hits.median() >= 0.8),
        Row::new("GetCustomer, cache hit at half of peak: p99", half.tail())
            .target("≤ 2 ms", half_met),
        Row::new(
            "echo at the same rate (the floor of that p99)",
            echo_half.tail(),
        ),
        Row::new(
            "raw point-select loop (same table, 8 connections)",
            format!(
                "{}/s (mean of {} rounds), p99 {} (median)",
                thousands(misses.mean(false)),
                misses.ratios().len(),
                ms(median(&mut raw_p99))
            ),
        ),
        Row::new(
            "GetCustomer, cache miss (PostgreSQL)",
            format!(
                "{}, p99 {} (median)",
                misses.figure("miss", "raw"),
                ms(median(&mut miss_p99))
            ),
        )
        .target("≥ 0.5 × raw point-select", misses.median() >= 0.5),
    ])
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// Fails the benchmark when any call failed: a figure over errors means nothing.
pub fn check(what: &str, r: &Report) -> anyhow::Result<()> {
    if r.errors > 0 {
        anyhow::bail!(
            "{what}: {} of {} calls failed, first: {}",
            r.errors,
            r.errors + r.ok,
            r.first_error.as_deref().unwrap_or("?")
        );
    }
    Ok(())
}

/// Creates `n` customers over gRPC; returns their names.
pub async fn create_customers(
    profile: &TestService,
    token: &str,
    n: u64,
) -> anyhow::Result<Vec<String>> {
    let names = std::sync::Arc::new(std::sync::Mutex::new(Vec::with_capacity(n as usize)));
    let (sink, channel, token) = (names.clone(), profile.channel.clone(), token.to_string());
    let r = loadgen::run(&LoadSpec::count(n, 32), move |i, _| {
        let mut c = CustomerProfileServiceClient::new(channel.clone());
        let req = with_token(
            ppb::CreateCustomerRequest {
                customer: Some(ppb::Customer {
                    kind: ppb::CustomerKind::Individual as i32,
                    display_name: format!("Bench Customer {i}"),
                    email: format!("bench{i}@example.com"),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &token,
        );
        let sink = sink.clone();
        async move {
            let c = c.create_customer(req).await?.into_inner();
            sink.lock()
                .map_err(|_| tonic::Status::internal("poisoned"))?
                .push(c.name);
            Ok(())
        }
    })
    .await;
    check("CreateCustomer", &r)?;
    let out = std::mem::take(&mut *names.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
    Ok(out)
}

/// A fixed shuffle (xorshift), so runs read in the same order.
fn shuffle<T>(v: &mut [T]) {
    let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in (1..v.len()).rev() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        v.swap(i, (s % (i as u64 + 1)) as usize);
    }
}
