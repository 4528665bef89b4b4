//! The `retention` binary as a separate process, for the tests that signal or
//! kill it: free ports, the command, waiting for it to serve, and counting rows
//! in the databases it leaves behind.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use retention_proto::profile as ppb;
use sea_orm::Database;

pub use retention_testkit::{free_port, with_token};

pub const SERVICES: [&str; 4] = ["profile", "interactions", "segmentation", "winback"];

/// `retention` run in `dir` (where it finds `config/<service>.toml`), its output
/// discarded and no `RETENTION_*` variable of the test's environment passed on.
pub fn retention_in(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_retention"));
    cmd.current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("RETENTION_")) {
        cmd.env_remove(k);
    }
    // Processes of parallel tests must not race for the default admin port.
    cmd.env("RETENTION_ADMIN__PORT", "0");
    cmd
}

/// A channel to the service on `port` once its health says SERVING (60 s at most).
pub async fn serving(port: u16) -> tonic::transport::Channel {
    let endpoint = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    loop {
        if let Ok(ch) = tonic::transport::Endpoint::from_shared(endpoint.clone())
            .unwrap()
            .connect()
            .await
        {
            let mut health = tonic_health::pb::health_client::HealthClient::new(ch.clone());
            let up = health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .is_ok_and(|r| r.into_inner().status == 1);
            if up {
                return ch;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the process did not come up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The first column of the first row of `sql` on the database at `url`.
pub async fn count(url: &str, sql: &str) -> i64 {
    retention_testkit::count_at(url, sql)
        .await
        .expect("the database answers")
}

/// Outbox rows the process left unpublished in the database at `url`.
pub async fn unpublished(url: &str) -> u64 {
    let db = Database::connect(url).await.expect("the database opens");
    let n = retention_events::pending_count(&db).await.unwrap();
    db.close().await.unwrap();
    n
}

/// A bearer token of the development secret the processes run with.
pub fn dev_token(scopes: &[&str]) -> String {
    retention_testkit::mint_token(&retention_config::Settings::defaults("profile", 0), scopes)
}

/// Load order `order-{i}` of `customer`, 100.00 CNY, `spacing` seconds after the
/// one before it.
pub fn load_purchase(customer: &str, i: i64, spacing: i64) -> ppb::Purchase {
    ppb::Purchase {
        customer: customer.to_string(),
        order_id: format!("order-{i}"),
        occur_time: Some(prost_types::Timestamp {
            seconds: 1_780_000_000 + i * spacing,
            nanos: 0,
        }),
        amount: Some(retention_proto::common::Money {
            currency_code: "CNY".into(),
            minor_units: 10_000,
        }),
        ..Default::default()
    }
}

/// The create of load caller `caller`'s `i`-th customer.
pub fn load_customer(caller: usize, i: usize) -> ppb::CreateCustomerRequest {
    ppb::CreateCustomerRequest {
        customer: Some(ppb::Customer {
            kind: ppb::CustomerKind::Individual as i32,
            display_name: format!("Caller {caller} customer {i}"),
            ..Default::default()
        }),
        request_id: String::new(),
    }
}
