//! PostgreSQL restarted under load: calls fail with UNAVAILABLE while it is down
//! (never hang), the service recovers without a restart of its own, and every
//! write it acknowledged is there afterwards.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use retention_proto::profile as pb;
use retention_testkit::{Backend, PrivatePostgres, mint_token};
use tokio_util::sync::CancellationToken;

use crate::harness::*;

#[derive(Default)]
struct Seen {
    sent: u64,
    acked: u64,
    failures: BTreeMap<String, u64>,
}

#[tokio::test]
async fn a_database_restart_under_load_fails_calls_cleanly_and_loses_no_acknowledged_write() {
    let pg = PrivatePostgres::start().unwrap();
    let url = pg.url();
    let app = TestApp::spawn_with(Backend::Postgres, false, move |s| {
        s.database.url = url;
        s.database.connect_timeout_ms = 1_000;
        s.database.acquire_timeout_ms = 1_000;
    })
    .await;

    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = CancellationToken::new();
    let mut writers = Vec::new();
    for w in 0..4 {
        let mut client = app.client.clone();
        let (seen, stop, token) = (
            seen.clone(),
            stop.clone(),
            mint_token(&app.settings, ALL_SCOPES),
        );
        writers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.is_cancelled() {
                i += 1;
                let mut req = tonic::Request::new(pb::CreateCustomerRequest {
                    customer: Some(customer(&format!("Writer {w} #{i}"))),
                    request_id: String::new(),
                });
                req.set_timeout(Duration::from_secs(10));
                req.metadata_mut()
                    .insert("authorization", format!("Bearer {token}").parse().unwrap());
                let r = client.create_customer(req).await;
                {
                    let mut s = seen.lock().unwrap();
                    s.sent += 1;
                    match r {
                        Ok(_) => s.acked += 1,
                        Err(e) => *s.failures.entry(format!("{:?}", e.code())).or_default() += 1,
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    let wait_for = |what: &'static str, done: Box<dyn Fn(&Seen) -> bool + Send>| {
        let seen = seen.clone();
        async move {
            for _ in 0..400 {
                if done(&seen.lock().unwrap()) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("timed out waiting for {what}");
        }
    };
    wait_for("writes before the outage", Box::new(|s| s.acked >= 20)).await;
    pg.stop().unwrap();
    let acked_before = seen.lock().unwrap().acked;
    wait_for(
        "calls failing during the outage",
        Box::new(|s| s.failures.values().sum::<u64>() >= 8),
    )
    .await;
    pg.restart().unwrap();
    wait_for(
        "writes succeeding again",
        Box::new(move |s| s.acked >= acked_before + 20),
    )
    .await;
    stop.cancel();
    for w in writers {
        w.await.unwrap();
    }

    let stored = app.count("SELECT COUNT(*) FROM customers").await as u64;
    let s = std::mem::take(&mut *seen.lock().unwrap());
    println!(
        "PostgreSQL restart under load: {} creates sent, {} acknowledged, {} stored, failures {:?}",
        s.sent, s.acked, stored, s.failures
    );
    assert_eq!(
        s.failures.keys().collect::<Vec<_>>(),
        vec!["Unavailable"],
        "an outage answers UNAVAILABLE, not an internal error or a hang"
    );
    assert!(stored >= s.acked, "an acknowledged create was lost");
    assert!(stored <= s.sent);
    app.stop().await;
}
