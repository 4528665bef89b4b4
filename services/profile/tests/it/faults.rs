//! Faults under load. PostgreSQL restarted: calls fail with UNAVAILABLE while it
//! is down (never hang), the service recovers without a restart of its own, and
//! every write it acknowledged is there afterwards. Redis stopped: reads and
//! writes keep succeeding from the database, and every event waits in the outbox
//! until Redis is back.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use retention_proto::profile as pb;
use retention_testkit::{Backend, PrivatePostgres, PrivateRedis, mint_token};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::harness::*;

#[derive(Debug, Default)]
struct Seen {
    sent: u64,
    acked: u64,
    /// Acknowledged creates.
    created: u64,
    failures: BTreeMap<String, u64>,
}

/// Callers creating customers and reading one back, until stopped.
struct Load {
    seen: Arc<Mutex<Seen>>,
    stop: CancellationToken,
    callers: Vec<JoinHandle<()>>,
}

impl Load {
    async fn start(app: &mut TestApp, callers: usize) -> Load {
        let known = app.create("Read Under Load").await.name;
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = CancellationToken::new();
        let token = mint_token(&app.settings, ALL_SCOPES);
        let callers = (0..callers)
            .map(|w| {
                let (mut client, seen, stop) = (app.client.clone(), seen.clone(), stop.clone());
                let (token, known) = (token.clone(), known.clone());
                tokio::spawn(async move {
                    for i in 0.. {
                        if stop.is_cancelled() {
                            return;
                        }
                        let bearer = format!("Bearer {token}").parse().unwrap();
                        // Writers and readers alike: odd callers read.
                        let writes = w % 2 == 0;
                        let r = if writes {
                            let mut req = tonic::Request::new(pb::CreateCustomerRequest {
                                customer: Some(customer(&format!("Caller {w} #{i}"))),
                                request_id: String::new(),
                            });
                            req.set_timeout(Duration::from_secs(10));
                            req.metadata_mut().insert("authorization", bearer);
                            client.create_customer(req).await.map(|_| ())
                        } else {
                            let mut req = tonic::Request::new(pb::GetCustomerRequest {
                                name: known.clone(),
                            });
                            req.set_timeout(Duration::from_secs(10));
                            req.metadata_mut().insert("authorization", bearer);
                            client.get_customer(req).await.map(|_| ())
                        };
                        {
                            let mut s = seen.lock().unwrap();
                            s.sent += 1;
                            match r {
                                Ok(()) => {
                                    s.acked += 1;
                                    s.created += u64::from(writes);
                                }
                                Err(e) => {
                                    *s.failures.entry(format!("{:?}", e.code())).or_default() += 1
                                }
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                })
            })
            .collect();
        Load {
            seen,
            stop,
            callers,
        }
    }

    /// Waits (up to 20 s) until `done` holds for what the callers saw.
    async fn until(&self, what: &str, done: impl Fn(&Seen) -> bool) {
        for _ in 0..400 {
            if done(&self.seen.lock().unwrap()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "timed out waiting for {what}: {:?}",
            self.seen.lock().unwrap()
        );
    }

    fn acked(&self) -> u64 {
        self.seen.lock().unwrap().acked
    }

    async fn finish(self) -> Seen {
        self.stop.cancel();
        for c in self.callers {
            c.await.unwrap();
        }
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

#[tokio::test]
async fn a_database_restart_under_load_fails_calls_cleanly_and_loses_no_acknowledged_write() {
    let pg = PrivatePostgres::start().unwrap();
    let url = pg.url();
    let mut app = TestApp::spawn_with(Backend::Postgres, false, move |s| {
        s.database.url = url;
        s.database.connect_timeout_ms = 1_000;
        s.database.acquire_timeout_ms = 1_000;
    })
    .await;
    let load = Load::start(&mut app, 4).await;
    load.until("calls before the outage", |s| s.acked >= 20)
        .await;
    pg.stop().unwrap();
    let before = load.acked();
    load.until("calls failing during the outage", |s| {
        s.failures.values().sum::<u64>() >= 8
    })
    .await;
    pg.restart().unwrap();
    load.until("calls succeeding again", |s| s.acked >= before + 20)
        .await;
    let seen = load.finish().await;

    let created = app.count("SELECT COUNT(*) FROM customers").await as u64 - 1;
    println!("PostgreSQL restart under load: {seen:?}, {created} customers created");
    assert_eq!(
        seen.failures.keys().collect::<Vec<_>>(),
        vec!["Unavailable"],
        "an outage answers UNAVAILABLE, not an internal error or a hang"
    );
    assert!(
        created >= seen.created,
        "acknowledged creates lost: {created} stored, {seen:?}"
    );
    assert!(created <= seen.sent);
    app.stop().await;
}

#[tokio::test]
async fn with_redis_stopped_under_load_calls_succeed_and_events_wait_in_the_outbox() {
    let mut redis = PrivateRedis::start().unwrap();
    let url = redis.url();
    let mut app = TestApp::spawn_with(Backend::Postgres, true, move |s| s.redis.url = url).await;
    let load = Load::start(&mut app, 4).await;
    load.until("calls before the outage", |s| s.acked >= 20)
        .await;
    redis.stop();
    let before = load.acked();
    load.until("calls during the outage", |s| s.acked >= before + 40)
        .await;
    redis.restart().unwrap();
    let seen = load.finish().await;
    println!("Redis outage under load: {seen:?}");
    assert!(
        seen.failures.is_empty(),
        "reads and writes go on from the database: {seen:?}"
    );
    // Every event (one per create) reaches Redis once it is back.
    assert_eq!(
        app.unpublished_after_relay().await,
        0,
        "the outbox drained after the outage"
    );
    let created = app.count("SELECT COUNT(*) FROM customers").await;
    let events = app
        .count("SELECT COUNT(*) FROM outbox_events WHERE event_type LIKE '%CustomerCreated%'")
        .await;
    assert_eq!(events, created, "one event per created customer");
    app.stop().await;
}
