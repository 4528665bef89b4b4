//! The interactions service: contact history, complaint handling with SLAs, and
//! satisfaction surveys (DESIGN §1; DOMAIN §6-§7).
//!
//! Layers: `domain` (pure rules: complaint state machine, SLA clock, summary),
//! `store` (sea-orm), `app` (use cases, outbox, SLA sweep), `grpc` (tonic),
//! `events` (published events, profile events consumed).

pub mod app;
pub mod domain;
pub mod events;
pub mod grpc;
pub mod store;

use std::time::Duration;

use retention_auth::{AuthLayer, ScopePolicy};
use retention_config::Settings;
use retention_db::DbOptions;
use retention_events::{ConsumerOptions, EventBus, Relay, RelayOptions};
use retention_proto::interactions::interaction_service_server::InteractionServiceServer;
use retention_server::HealthHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const SERVICE_NAME: &str = "interactions";
pub const DEFAULT_PORT: u16 = 50052;
const GRPC_SERVICE: &str = "retention.interactions.v1.InteractionService";
/// How often the SLA sweep looks for missed targets.
const SWEEP_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Db(#[from] retention_db::DbError),
    #[error(transparent)]
    Events(#[from] retention_events::EventsError),
    #[error(transparent)]
    Server(#[from] retention_server::ServerError),
}

pub fn scope_policy() -> ScopePolicy {
    let m = |name: &str| format!("/{GRPC_SERVICE}/{name}");
    let mut p = ScopePolicy::new();
    for method in [
        "ListInteractions",
        "GetComplaint",
        "ListComplaints",
        "ListSlaPolicies",
        "GetSatisfactionSummary",
    ] {
        p = p.require(&m(method), &["interactions.read"]);
    }
    for method in [
        "LogInteraction",
        "OpenComplaint",
        "AcknowledgeComplaint",
        "AssignComplaint",
        "EscalateComplaint",
        "ResolveComplaint",
        "ReopenComplaint",
        "CloseComplaint",
        "CreateSlaPolicy",
        "RecordSurvey",
    ] {
        p = p.require(&m(method), &["interactions.write"]);
    }
    p.require(&m("BackfillEvents"), &["interactions.admin"])
        .require(&m("GetEventBacklog"), &["interactions.admin"])
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

    let stop = CancellationToken::new();
    let relay = Relay::new(
        db.clone(),
        bus.publisher(),
        RelayOptions::from_settings(&settings.events, SERVICE_NAME),
    );
    let relay_status = relay.status();
    let app = app::InteractionsApp::new(db.clone(), relay.notifier());
    let relay_task = relay.spawn(stop.clone());

    let consumer =
        |stream: &str| ConsumerOptions::from_settings(&settings, stream, events::CONSUMER);
    let consumer_task = bus.spawn_consumer(
        consumer(events::PROFILE_STREAM),
        events::ProfileEventsHandler::new(db.clone()),
        stop.clone(),
    );
    let tiers_task = bus.spawn_consumer(
        consumer(events::SEGMENTATION_STREAM),
        events::SegmentationEventsHandler::new(db.clone()),
        stop.clone(),
    );
    let sweeper = spawn_sweeper(app.clone(), stop.clone());

    let max_bytes = settings.server.max_message_bytes;
    let backlog = retention_events::BacklogProbe::new(
        db.clone(),
        &bus,
        events::STREAM,
        &settings.events,
        relay_status,
    );
    let svc = InteractionServiceServer::new(grpc::InteractionsService::new(app, backlog))
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
    let _ = tokio::join!(relay_task, consumer_task, tiers_task, sweeper);
    let _ = db.close().await;
    Ok(result?)
}

fn spawn_sweeper(
    app: app::InteractionsApp,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(SWEEP_INTERVAL) => {}
            }
            match app.sweep(domain::now()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(breaches = n, "SLA sweep recorded breaches"),
                Err(e) => tracing::warn!(error = %e, "SLA sweep failed; retrying next round"),
            }
        }
    })
}
