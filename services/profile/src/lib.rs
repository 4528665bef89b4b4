//! The customer profile service: the system of record for customers, their contact
//! permissions, purchases and referrals (DESIGN §1).
//!
//! Layers: `domain` (pure rules), `store` (sea-orm entities, migrations, queries),
//! `app` (use cases: one transaction per change, outbox events, cache invalidation),
//! `grpc` (tonic service, proto <-> domain), `events` (what it publishes).

pub mod app;
pub mod domain;
pub mod events;
pub mod grpc;
pub mod store;

use retention_auth::{AuthLayer, ScopePolicy};
use retention_cache::{Cache, CacheConfig};
use retention_config::Settings;
use retention_db::DbOptions;
use retention_events::{EventBus, Relay, RelayOptions};
use retention_proto::profile::customer_profile_service_server::CustomerProfileServiceServer;
use retention_server::HealthHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const SERVICE_NAME: &str = "profile";
pub const DEFAULT_PORT: u16 = 50051;
const GRPC_SERVICE: &str = "retention.profile.v1.CustomerProfileService";

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Db(#[from] retention_db::DbError),
    #[error(transparent)]
    Events(#[from] retention_events::EventsError),
    #[error(transparent)]
    Server(#[from] retention_server::ServerError),
    #[error(transparent)]
    PiiKeys(#[from] store::PiiKeyError),
}

/// Every method and the scopes it needs (deny by default for anything unlisted).
pub fn scope_policy() -> ScopePolicy {
    let m = |name: &str| format!("/{GRPC_SERVICE}/{name}");
    let mut p = ScopePolicy::new();
    for method in [
        "GetCustomer",
        "BatchGetCustomers",
        "ListCustomers",
        "ListPurchases",
    ] {
        p = p.require(&m(method), &["profile.read"]);
    }
    for method in [
        "CreateCustomer",
        "UpdateCustomer",
        "UpdateConsent",
        "RecordPurchase",
        "RecordPurchases",
        "RecordReferral",
    ] {
        p = p.require(&m(method), &["profile.write"]);
    }
    for method in [
        "MergeCustomers",
        "EraseCustomer",
        "ExportCustomerData",
        "BackfillEvents",
        "GetEventBacklog",
    ] {
        p = p.require(&m(method), &["profile.admin"]);
    }
    p
}

/// Runs the service on `listener` until `shutdown` resolves: migrations first,
/// health NOT_SERVING until ready, relay flushed on the way out.
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
    // Keys first: a service that could not read its PII must not start.
    let pii = std::sync::Arc::new(store::PiiCipher::from_settings(
        &settings.pii,
        settings.auth.allow_dev_secret,
    )?);
    let health = HealthHandle::new().await;
    let db = retention_db::connect(&DbOptions::from_settings(&settings.database)).await?;
    retention_db::migrate::<store::Migrator>(&db).await?;
    let cache = Cache::connect(CacheConfig::from_settings(&settings)).await;

    let relay = Relay::new(
        db.clone(),
        bus.publisher(),
        RelayOptions::from_settings(&settings.events, SERVICE_NAME),
    );
    let relay_status = relay.status();
    let app = app::ProfileApp::new(db.clone(), cache, relay.notifier(), pii);
    let relay_stop = CancellationToken::new();
    let relay_task = relay.spawn(relay_stop.clone());
    let sweeper = app.clone();
    let reseal_task = tokio::spawn(async move {
        match sweeper.reseal_pii().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "PII sealed under the current key"),
            Err(e) => {
                tracing::warn!(error = %e, "PII reseal sweep stopped; it runs again at the next start")
            }
        }
    });

    let max_bytes = settings.server.max_message_bytes;
    let backlog = retention_events::BacklogProbe::new(
        db.clone(),
        &bus,
        events::STREAM,
        &settings.events,
        relay_status,
    );
    let svc = CustomerProfileServiceServer::new(grpc::ProfileService::new(app, backlog))
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
    relay_stop.cancel();
    reseal_task.abort();
    let _ = relay_task.await;
    let _ = db.close().await;
    Ok(result?)
}
