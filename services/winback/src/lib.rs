//! The win-back service (DESIGN §1, §3; DOMAIN §8-§9): why customers left, campaigns
//! that win them back or keep them, with a holdout control group, and measured
//! outcomes per campaign and per strategy.
//!
//! Layers: `domain` (pure: churn taxonomy, campaign state machine, targeting,
//! attribution, statistics, playbook), `store` (sea-orm), `app` (use cases, outbox),
//! `clients` (segmentation, with deadlines and trace context), `grpc` (tonic),
//! `events` (published events, upstream events consumed).

pub mod app;
pub mod clients;
pub mod domain;
pub mod events;
pub mod grpc;
pub mod store;

use retention_auth::{AuthLayer, ScopePolicy};
use retention_config::Settings;
use retention_db::DbOptions;
use retention_events::{ConsumerOptions, EventBus, Relay, RelayOptions};
use retention_proto::winback::winback_service_server::WinbackServiceServer;
use retention_server::HealthHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const SERVICE_NAME: &str = "winback";
pub const DEFAULT_PORT: u16 = 50054;
const GRPC_SERVICE: &str = "retention.winback.v1.WinbackService";

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Db(#[from] retention_db::DbError),
    #[error(transparent)]
    Events(#[from] retention_events::EventsError),
    #[error(transparent)]
    Server(#[from] retention_server::ServerError),
    #[error(transparent)]
    Peer(#[from] clients::PeerError),
}

pub fn scope_policy() -> ScopePolicy {
    let m = |name: &str| format!("/{GRPC_SERVICE}/{name}");
    let mut p = ScopePolicy::new();
    for method in [
        "GetChurnRecord",
        "ListChurnRecords",
        "ClassifyChurn",
        "GetCampaign",
        "ListCampaigns",
        "ListCampaignTargets",
        "GetCampaignResults",
        "CompareStrategies",
        "RecommendRetentionActions",
    ] {
        p = p.require(&m(method), &["winback.read"]);
    }
    for method in ["RecordChurn", "CreateCampaign", "RecordContactOutcome"] {
        p = p.require(&m(method), &["winback.write"]);
    }
    // Launching spends money and contacts customers; pausing, completing and
    // cancelling change what a running campaign does: an administrator's calls.
    for method in [
        "LaunchCampaign",
        "PauseCampaign",
        "CompleteCampaign",
        "CancelCampaign",
        "GetEventBacklog",
    ] {
        p = p.require(&m(method), &["winback.admin"]);
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
    let health = HealthHandle::new().await;
    let db = retention_db::connect(&DbOptions::from_settings(&settings.database)).await?;
    retention_db::migrate::<store::Migrator>(&db).await?;
    let segmentation = clients::SegmentationClient::from_settings(&settings)?;

    let stop = CancellationToken::new();
    let relay = Relay::new(
        db.clone(),
        bus.publisher(),
        RelayOptions::from_settings(&settings.events, SERVICE_NAME),
    );
    let relay_status = relay.status();
    let app = app::WinbackApp::new(db.clone(), segmentation, relay.notifier());
    let relay_task = relay.spawn(stop.clone());
    let consumers = [
        (
            events::PROFILE_STREAM,
            events::ProfileEventsHandler::new(app.clone())
                as std::sync::Arc<dyn retention_events::EventHandler>,
        ),
        (
            events::INTERACTIONS_STREAM,
            events::InteractionsEventsHandler::new(app.clone()),
        ),
        (
            events::SEGMENTATION_STREAM,
            events::SegmentationEventsHandler::new(app.clone()),
        ),
    ]
    .map(|(stream, handler)| {
        bus.spawn_consumer(
            ConsumerOptions::from_settings(&settings, stream, events::CONSUMER),
            handler,
            stop.clone(),
        )
    });
    let scheduler = spawn_scheduler(
        app.clone(),
        settings.winback.schedule_check_secs,
        stop.clone(),
    );

    let max_bytes = settings.server.max_message_bytes;
    let backlog = retention_events::BacklogProbe::new(
        db.clone(),
        &bus,
        events::STREAM,
        &settings.events,
        relay_status,
    );
    let svc = WinbackServiceServer::new(grpc::WinbackGrpc::new(app, backlog))
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
    let [a, b, c] = consumers;
    let _ = tokio::join!(relay_task, a, b, c, scheduler);
    let _ = db.close().await;
    Ok(result?)
}

/// Launches scheduled campaigns when due, checking every `every_secs` (0: never).
fn spawn_scheduler(
    app: app::WinbackApp,
    every_secs: u64,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if every_secs == 0 {
            return;
        }
        let every = std::time::Duration::from_secs(every_secs);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            match app.launch_due(retention_domain::now()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(campaigns = n, "scheduled campaigns launched"),
                Err(e) => tracing::warn!(error = %e, "scheduled launches not checked"),
            }
        }
    })
}
