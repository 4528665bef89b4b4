//! The segmentation service: a feature store fed by profile and interactions
//! events, the value and churn models of DOMAIN §2-§6, user-defined segments with
//! materialised memberships, scoring runs and the portfolio report (DESIGN §1, §3).
//!
//! Layers: `domain` (pure: features, models, classifications, scoring, segments),
//! `store` (sea-orm), `app` (use cases, outbox, scoring runs), `grpc` (tonic),
//! `events` (published events, upstream events consumed).

pub mod app;
pub mod domain;
pub mod events;
pub mod grpc;
pub mod store;

use retention_auth::{AuthLayer, ScopePolicy};
use retention_cache::{Cache, CacheConfig};
use retention_config::Settings;
use retention_db::DbOptions;
use retention_events::{ConsumerOptions, EventBus, Relay, RelayOptions};
use retention_proto::segmentation::segmentation_service_server::SegmentationServiceServer;
use retention_server::HealthHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::domain::scoring::ScoringConfig;

pub const SERVICE_NAME: &str = "segmentation";
pub const DEFAULT_PORT: u16 = 50053;
const GRPC_SERVICE: &str = "retention.segmentation.v1.SegmentationService";

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Db(#[from] retention_db::DbError),
    #[error(transparent)]
    Events(#[from] retention_events::EventsError),
    #[error(transparent)]
    Server(#[from] retention_server::ServerError),
    #[error(transparent)]
    App(#[from] app::AppError),
}

pub fn scope_policy() -> ScopePolicy {
    let m = |name: &str| format!("/{GRPC_SERVICE}/{name}");
    let mut p = ScopePolicy::new();
    for method in [
        "GetCustomerInsight",
        "ListCustomerInsights",
        "GetSegment",
        "ListSegments",
        "ListSegmentMembers",
        "GetScoringRun",
        "GetModelParameters",
        "GetPortfolioReport",
        "ProjectRetention",
    ] {
        p = p.require(&m(method), &["segmentation.read"]);
    }
    for method in ["CreateSegment", "UpdateSegment", "DeleteSegment"] {
        p = p.require(&m(method), &["segmentation.write"]);
    }
    // A full recompute loads the whole population: an operator's call.
    p.require(&m("RunScoring"), &["segmentation.admin"])
        .require(&m("GetEventBacklog"), &["segmentation.admin"])
}

/// Runs the service until `shutdown` resolves.
pub async fn run(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let bus = EventBus::from_settings(&settings)?;
    run_with_bus(settings, listener, shutdown, bus).await
}

/// As [`run`] on a given bus: the embedded all-in-one process shares one
/// in-process bus between the services.
pub async fn run_with_bus(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    bus: EventBus,
) -> Result<(), RunError> {
    let health = HealthHandle::new().await;
    let db = retention_db::connect(&DbOptions::from_settings(&settings.database)).await?;
    retention_db::migrate::<store::Migrator>(&db).await?;
    let cache = Cache::connect(CacheConfig::from_settings(&settings)).await;

    let stop = CancellationToken::new();
    let relay = Relay::new(
        db.clone(),
        bus.publisher(),
        RelayOptions::from_settings(&settings.events, SERVICE_NAME),
    );
    let relay_status = relay.status();
    let app = app::SegmentationApp::new(
        db.clone(),
        cache,
        ScoringConfig::from_settings(&settings.scoring),
        relay.notifier(),
    );
    let interrupted = app.recover_runs().await?;
    if interrupted > 0 {
        tracing::warn!(
            runs = interrupted,
            "failed scoring runs a previous process left unfinished"
        );
    }
    let relay_task = relay.spawn(stop.clone());
    let handler = events::UpstreamHandler::new(app.clone());
    // The handler applies a batch in one transaction: larger reads mean fewer
    // transactions per event under load (a quiet stream still gets single events).
    let consumer = |stream: &str| ConsumerOptions {
        batch: 256,
        ..ConsumerOptions::from_settings(&settings, stream, events::CONSUMER)
    };
    let profile_consumer = bus.spawn_consumer(
        consumer(events::PROFILE_STREAM),
        handler.clone(),
        stop.clone(),
    );
    let interactions_consumer =
        bus.spawn_consumer(consumer(events::INTERACTIONS_STREAM), handler, stop.clone());

    let scheduler = spawn_scheduler(app.clone(), settings.scoring.interval_minutes, stop.clone());

    let max_bytes = settings.server.max_message_bytes;
    let backlog = retention_events::BacklogProbe::new(
        db.clone(),
        &bus,
        events::STREAM,
        &settings.events,
        relay_status,
    );
    let svc = SegmentationServiceServer::new(grpc::SegmentationGrpc::new(app, backlog))
        .max_decoding_message_size(max_bytes)
        .max_encoding_message_size(max_bytes);
    let probe_db = db.clone();
    let result = retention_server::serve_ready(
        &settings.server,
        listener,
        tonic::service::Routes::new(svc),
        AuthLayer::from_settings(&settings.auth, scope_policy()),
        health,
        GRPC_SERVICE,
        move || {
            let db = probe_db.clone();
            async move { retention_db::ping(&db).await }
        },
        shutdown,
    )
    .await;
    stop.cancel();
    let _ = tokio::join!(
        relay_task,
        profile_consumer,
        interactions_consumer,
        scheduler
    );
    let _ = db.close().await;
    Ok(result?)
}

/// Full scoring runs every `interval_minutes` (0: only on RunScoring). A run still
/// in progress (here or on another replica) makes the tick a no-op.
fn spawn_scheduler(
    app: app::SegmentationApp,
    interval_minutes: u64,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if interval_minutes == 0 {
            return;
        }
        let every = std::time::Duration::from_secs(interval_minutes * 60);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            match app.start_run("", None).await {
                Ok(run) => tracing::info!(run = %run.id, "scheduled scoring run started"),
                Err(app::AppError::RunInProgress(_)) => {}
                Err(e) => tracing::warn!(error = %e, "scheduled scoring run not started"),
            }
        }
    })
}
