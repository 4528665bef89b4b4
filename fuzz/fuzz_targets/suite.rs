//! The four services of the suite running in the fuzz process (embedded mode:
//! SQLite, in-process cache, one in-process bus they all share), for the targets
//! that drive them: each includes this file with `#[path = "suite.rs"] mod suite;`.

// Each target uses part of it.
#![allow(dead_code)]

use std::time::Duration;

use retention_config::Settings;
use retention_events::EventBus;
use retention_server::host::{self, Service};
use tokio::net::TcpListener;
use tonic::transport::Channel;

/// The four services, in the order of [`Suite::channels`].
pub const SERVICES: [&str; 4] = ["profile", "interactions", "segmentation", "winback"];

/// The running suite: the runtime the services run on, the bus they share and a
/// channel to each (in the order of [`SERVICES`]), each serving once it returns.
pub struct Suite {
    pub runtime: tokio::runtime::Runtime,
    pub bus: EventBus,
    pub channels: Vec<Channel>,
}

type Serving =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), host::HostError>> + Send>>;

/// Serves `S` on the suite's shared bus for the rest of the process.
fn serve<S: Service>(settings: Settings, listener: TcpListener, bus: EventBus) -> Serving {
    Box::pin(host::run::<S>(
        settings,
        listener,
        std::future::pending(),
        Some(bus),
    ))
}

/// Starts the four services with fresh databases in `target/<db_dir>` (under the
/// fuzz build's directory), each with the fuzzing settings (no rate limit, no
/// scoring schedule) changed by `tune`, and waits until each reports SERVING.
pub fn start(db_dir: &str, tune: fn(&mut Settings)) -> Suite {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::current_dir().unwrap().join("target").join(db_dir);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let bus = EventBus::in_process_for_suite();
    let channels = runtime.block_on(serve_all(&dir, tune, &bus));
    Suite {
        runtime,
        bus,
        channels,
    }
}

async fn serve_all(dir: &std::path::Path, tune: fn(&mut Settings), bus: &EventBus) -> Vec<Channel> {
    let mut addresses = Vec::new();
    let mut listeners = Vec::new();
    for _ in SERVICES {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        addresses.push(l.local_addr().unwrap());
        listeners.push(l);
    }
    let settings = |name: &str| {
        let mut s = Settings::defaults(name, 0);
        s.database.url = format!("sqlite://{}/{name}.sqlite?mode=rwc", dir.display());
        s.server.rate_limit_per_sec = 0;
        s.scoring.interval_minutes = 0;
        s.winback.segmentation_endpoint = format!("http://{}", addresses[2]);
        s.winback.call_timeout_ms = 1_000;
        tune(&mut s);
        s
    };
    let mut listeners = listeners.into_iter();
    let mut spawn = |run: fn(Settings, TcpListener, EventBus) -> Serving, name: &str| {
        tokio::spawn(run(settings(name), listeners.next().unwrap(), bus.clone()));
    };
    spawn(serve::<retention_profile::Profile>, "profile");
    spawn(
        serve::<retention_interactions::Interactions>,
        "interactions",
    );
    spawn(
        serve::<retention_segmentation::Segmentation>,
        "segmentation",
    );
    spawn(serve::<retention_winback::Winback>, "winback");
    let mut channels = Vec::new();
    for addr in addresses {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap();
        let channel = loop {
            if let Ok(ch) = endpoint.connect().await {
                let mut health = tonic_health::pb::health_client::HealthClient::new(ch.clone());
                let up = health
                    .check(tonic_health::pb::HealthCheckRequest::default())
                    .await
                    .is_ok_and(|r| r.into_inner().status == 1);
                if up {
                    break ch;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        channels.push(channel);
    }
    channels
}
