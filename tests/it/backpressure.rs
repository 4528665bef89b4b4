//! No event is lost when a consumer falls behind or the process dies (#16):
//! segmentation stopped through a 20,000-purchase ingest on Redis Streams capped
//! at 1,000 entries, and the embedded all-in-one process killed with SIGKILL
//! under concurrent writes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use retention_proto::profile as ppb;
use retention_proto::profile::customer_profile_service_client::CustomerProfileServiceClient;

use crate::process::{
    SERVICES, count, dev_token, free_port, load_purchase, retention_in, serving, with_token,
};
use crate::{Mode, start};

/// Purchase facts folded into segmentation's feature rows, summed.
const FOLDED_PG: &str = "SELECT CAST(COALESCE(SUM(CAST(CAST(data AS jsonb) ->> 'purchases' AS BIGINT)), 0) AS BIGINT) FROM features";
const FOLDED_SQLITE: &str =
    "SELECT CAST(COALESCE(SUM(json_extract(data, '$.purchases')), 0) AS INTEGER) FROM features";

fn purchase(customer: &str, i: i64) -> ppb::Purchase {
    load_purchase(customer, i, 3_600)
}

/// Profile's GetEventBacklog, with its admin scope.
async fn event_backlog(
    profile: &retention_testkit::TestService,
) -> retention_proto::common::EventBacklog {
    CustomerProfileServiceClient::new(profile.channel.clone())
        .get_event_backlog(profile.req(ppb::GetEventBacklogRequest {}, &["profile.admin"]))
        .await
        .expect("GetEventBacklog")
        .into_inner()
}

/// Polls `probe` every 200 ms until it is true, failing after `limit`.
async fn until<F, Fut>(limit: Duration, what: &str, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !probe().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn segmentation_stopped_through_an_ingest_past_the_stream_cap_gets_every_purchase() {
    const CAP: u64 = 1_000;
    const CUSTOMERS: usize = 500;
    const PURCHASES: usize = 20_000;
    let mode = Mode::production();
    let Mode::Production { namespace } = mode.clone() else {
        unreachable!()
    };
    let capped = |s: &mut retention_config::Settings| s.events.stream_max_len = CAP;
    let profile = start::<retention_profile::Profile>(mode.clone(), capped)
        .await
        .unwrap();
    let interactions = start::<retention_interactions::Interactions>(mode.clone(), capped)
        .await
        .unwrap();
    let winback = start::<retention_winback::Winback>(mode.clone(), |s| {
        capped(s);
        // Segmentation is down; win-back's consumers do not call it.
        s.winback.segmentation_endpoint = "http://127.0.0.1:1".into();
    })
    .await
    .unwrap();

    let mut client = CustomerProfileServiceClient::new(profile.channel.clone());
    let mut names = Vec::with_capacity(CUSTOMERS);
    for i in 0..CUSTOMERS {
        let req = profile.req(
            ppb::CreateCustomerRequest {
                customer: Some(ppb::Customer {
                    kind: ppb::CustomerKind::Individual as i32,
                    display_name: format!("Backpressure {i}"),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &["profile.write"],
        );
        names.push(client.create_customer(req).await.unwrap().into_inner().name);
    }
    let per = PURCHASES / CUSTOMERS;
    let orders: Vec<ppb::Purchase> = names
        .iter()
        .flat_map(|n| (0..per as i64).map(move |i| purchase(n, i)))
        .collect();
    let started = Instant::now();
    for chunk in orders.chunks(5_000) {
        let messages: Vec<_> = chunk
            .chunks(1_000)
            .map(|c| ppb::RecordPurchasesRequest {
                purchases: c.to_vec(),
            })
            .collect();
        let r = client
            .record_purchases(profile.req(futures::stream::iter(messages), &["profile.write"]))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.rejected_count, 0);
    }
    let ingest = started.elapsed();

    // The stream never held more than the cap; the rest waits in the outbox.
    let mut redis = redis::Client::open(retention_testkit::redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let key = retention_events::stream_key(&namespace, retention_profile::events::STREAM);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let len: u64 = redis::cmd("XLEN")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    let waiting = crate::process::unpublished(&profile.settings.database.url).await;
    println!(
        "segmentation stopped: {PURCHASES} purchases ingested in {ingest:?}; \
         {len} entries on the stream, {waiting} events waiting in profile's outbox"
    );
    assert!(len <= CAP, "{len} entries on a stream capped at {CAP}");
    assert!(
        waiting as usize >= CUSTOMERS + PURCHASES - CAP as usize,
        "only {waiting} events held back in the outbox"
    );
    // An operator sees why: segmentation is the group at the bound.
    let backlog = event_backlog(&profile).await;
    assert!(backlog.held_back, "{backlog:?}");
    assert_eq!(backlog.outbox_rows, waiting as i64);
    assert_eq!(backlog.bound, CAP as i64);
    assert_eq!(backlog.groups[0].group, "segmentation", "{backlog:?}");
    assert_eq!(backlog.groups[0].lag, len as i64);
    assert!(backlog.groups[1..].iter().all(|g| g.lag < CAP as i64));

    // Segmentation starts for the first time: its group was created by the
    // producer, so it receives every event, and the outbox drains.
    let segmentation = start::<retention_segmentation::Segmentation>(mode.clone(), capped)
        .await
        .unwrap();
    let started = Instant::now();
    until(
        Duration::from_secs(300),
        "segmentation to fold every purchase",
        || async { segmentation.count(FOLDED_PG).await.ok() == Some(PURCHASES as i64) },
    )
    .await;
    let drained = started.elapsed();
    let customers = segmentation
        .count("SELECT COUNT(*) FROM features")
        .await
        .unwrap();
    let rows = segmentation
        .count("SELECT COUNT(*) FROM purchases")
        .await
        .unwrap();
    until(
        Duration::from_secs(30),
        "profile's outbox to drain",
        || async { crate::process::unpublished(&profile.settings.database.url).await == 0 },
    )
    .await;
    println!("segmentation caught up in {drained:?}: {customers} customers, {rows} purchases");
    let backlog = event_backlog(&profile).await;
    assert!(!backlog.held_back);
    assert_eq!(backlog.outbox_rows, 0);
    assert_eq!(rows, PURCHASES as i64);
    assert_eq!(customers, CUSTOMERS as i64);
    for s in [segmentation, winback, interactions, profile] {
        s.stop().await.unwrap();
    }
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{namespace}:*"))
        .query_async(&mut redis)
        .await
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: Result<(), _> = redis::cmd("DEL").arg(keys).query_async(&mut redis).await;
    }
}

/// The all-in-one process in embedded mode (a SQLite file per service under
/// `dir/data`, the in-process bus), on free ports.
struct Embedded {
    dir: std::path::PathBuf,
    ports: Vec<u16>,
}

impl Embedded {
    fn new() -> Embedded {
        let dir = std::env::temp_dir().join(format!("retention-kill9-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(dir.join("config")).unwrap();
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let ports: Vec<u16> = SERVICES.iter().map(|_| free_port()).collect();
        for (service, port) in SERVICES.iter().zip(&ports) {
            std::fs::write(
                dir.join("config").join(format!("{service}.toml")),
                format!("[service]\nport = {port}\n[events]\nrelay_interval_ms = 20\n"),
            )
            .unwrap();
        }
        Embedded { dir, ports }
    }

    fn db(&self, service: &str) -> String {
        format!(
            "sqlite://{}?mode=ro",
            self.dir
                .join("data")
                .join(format!("{service}.sqlite"))
                .display()
        )
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_kill_9_under_concurrent_writes_loses_no_acknowledged_purchase() {
    let suite = Embedded::new();
    let mut first = retention_in(&suite.dir).spawn().expect("the binary starts");
    let channel = serving(suite.ports[0]).await;
    let token = dev_token(&["profile.write"]);

    // Four callers: a customer, then purchases, until the process dies.
    let acked = Arc::new(AtomicU64::new(0));
    let mut callers = Vec::new();
    for w in 0..4 {
        let (channel, token, acked) = (channel.clone(), token.clone(), acked.clone());
        callers.push(tokio::spawn(async move {
            let mut client = CustomerProfileServiceClient::new(channel);
            for i in 0.. {
                let req = with_token(crate::process::load_customer(w, i), &token);
                let Ok(c) = client.create_customer(req).await else {
                    return;
                };
                for order in 0..5 {
                    let req = ppb::RecordPurchaseRequest {
                        purchase: Some(purchase(&c.get_ref().name, order)),
                    };
                    if client
                        .record_purchase(with_token(req, &token))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    acked.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(8)).await;
    first.kill().expect("SIGKILL");
    first.wait().unwrap();
    for c in callers {
        c.await.unwrap();
    }
    let acked = acked.load(Ordering::SeqCst);
    let committed = count(&suite.db("profile"), "SELECT COUNT(*) FROM purchases").await;
    let folded_at_kill = count(&suite.db("segmentation"), FOLDED_SQLITE).await;
    let waiting = crate::process::unpublished(&suite.db("profile")).await;
    assert!(acked > 0, "no purchase was acknowledged before the kill");
    assert!(
        committed as u64 >= acked,
        "{committed} purchases stored, {acked} acknowledged"
    );

    // After a restart every committed purchase reaches segmentation, once.
    let mut second = retention_in(&suite.dir)
        .spawn()
        .expect("the binary restarts");
    serving(suite.ports[0]).await;
    let mut folded = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        folded = count(&suite.db("segmentation"), FOLDED_SQLITE).await;
        if folded >= committed && crate::process::unpublished(&suite.db("profile")).await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rows = count(&suite.db("segmentation"), "SELECT COUNT(*) FROM purchases").await;
    let left = crate::process::unpublished(&suite.db("profile")).await;
    let _ = second.kill();
    let _ = second.wait();
    println!(
        "embedded kill -9: {acked} purchases acknowledged, {committed} committed, \
         {folded_at_kill} folded at the kill with {waiting} events unsettled in profile's \
         outbox; after the restart {folded} folded, {rows} purchase rows, {left} unpublished"
    );
    assert_eq!(folded, committed, "every committed purchase folded, once");
    assert_eq!(rows, committed);
    assert_eq!(left, 0);
}
