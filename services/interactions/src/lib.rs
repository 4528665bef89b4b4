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

use std::sync::Arc;
use std::time::Duration;

use retention_auth::{AuthLayer, JwtValidator, ScopePolicy};
use retention_config::Settings;
use retention_events::{ConsumerOptions, EventBus, Relay, RelayOptions};
use retention_proto::interactions::interaction_service_server::InteractionServiceServer;
use retention_server::{HealthHandle, ServeOptions};
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
    p
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
    let (health, health_service) = HealthHandle::new().await;
    let db = retention_db::connect(&retention_db::DbOptions {
        url: settings.database.url.clone(),
        max_connections: settings.database.max_connections,
        min_connections: settings.database.min_connections,
        connect_timeout: Duration::from_millis(settings.database.connect_timeout_ms),
        acquire_timeout: Duration::from_millis(settings.database.acquire_timeout_ms),
    })
    .await?;
    retention_db::migrate::<store::Migrator>(&db).await?;

    let stop = CancellationToken::new();
    let relay = Relay::new(
        db.clone(),
        bus.publisher(),
        RelayOptions {
            batch_size: settings.events.relay_batch_size as usize,
            interval: Duration::from_millis(settings.events.relay_interval_ms),
            source: SERVICE_NAME.into(),
            ..RelayOptions::default()
        },
    );
    let wakeup = relay.notifier();
    let relay_task = relay.spawn(stop.clone());
    let app = app::InteractionsApp::new(db.clone(), wakeup);

    let mut consumer = ConsumerOptions::new(
        settings.redis.namespace.clone(),
        events::PROFILE_STREAM,
        events::CONSUMER,
        format!("{}-{}", SERVICE_NAME, uuid::Uuid::new_v4().simple()),
    );
    consumer.claim_idle = Duration::from_millis(settings.events.claim_idle_ms);
    consumer.max_deliveries = settings.events.max_deliveries;
    let consumer_task = bus.spawn_consumer(
        consumer,
        events::ProfileEventsHandler::new(db.clone()),
        stop.clone(),
    );
    let sweeper = spawn_sweeper(app.clone(), stop.clone());

    let max_bytes = settings.server.max_message_bytes;
    let svc = InteractionServiceServer::new(grpc::InteractionsService::new(app))
        .max_decoding_message_size(max_bytes)
        .max_encoding_message_size(max_bytes);
    let auth = AuthLayer::new(
        Arc::new(JwtValidator::hs256(
            settings.auth.jwt_secret.as_bytes(),
            &settings.auth.issuer,
            &settings.auth.audience,
        )),
        Arc::new(scope_policy()),
    );
    let probe_db = db.clone();
    retention_server::spawn_readiness_probe(health.clone(), Duration::from_secs(2), move || {
        let db = probe_db.clone();
        async move { retention_db::ping(&db).await }
    });
    health.mark_ready(&[GRPC_SERVICE]).await;
    let result = retention_server::serve(
        ServeOptions::from(&settings.server),
        listener,
        tonic::service::Routes::new(svc),
        auth,
        health,
        health_service,
        shutdown,
    )
    .await;
    stop.cancel();
    let _ = tokio::join!(relay_task, consumer_task, sweeper);
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
