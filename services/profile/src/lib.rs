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

use std::sync::Arc;
use std::time::Duration;

use retention_auth::{AuthLayer, JwtValidator, ScopePolicy};
use retention_cache::{Cache, CacheConfig};
use retention_config::Settings;
use retention_events::{EventBus, Relay, RelayOptions};
use retention_proto::profile::customer_profile_service_server::CustomerProfileServiceServer;
use retention_server::{HealthHandle, ServeOptions};
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
    for method in ["MergeCustomers", "EraseCustomer", "ExportCustomerData"] {
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

    let cache_config = CacheConfig {
        redis_url: settings.redis_url().map(String::from),
        namespace: if settings.redis.namespace.is_empty() {
            "retention".into()
        } else {
            settings.redis.namespace.clone()
        },
        default_ttl: Duration::from_secs(settings.cache.ttl_secs),
        connect_timeout: Duration::from_millis(settings.redis.connect_timeout_ms),
        response_timeout: Duration::from_millis(settings.redis.response_timeout_ms),
        local_capacity: settings.cache.local_capacity,
    };
    let cache = Cache::connect(cache_config).await;

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
    let relay_stop = CancellationToken::new();
    let relay_task = relay.spawn(relay_stop.clone());

    let app = app::ProfileApp::new(db.clone(), cache, wakeup);
    let max_bytes = settings.server.max_message_bytes;
    let svc = CustomerProfileServiceServer::new(grpc::ProfileService::new(app))
        .max_decoding_message_size(max_bytes)
        .max_encoding_message_size(max_bytes);
    let routes = tonic::service::Routes::new(svc);

    let validator = JwtValidator::hs256(
        settings.auth.jwt_secret.as_bytes(),
        &settings.auth.issuer,
        &settings.auth.audience,
    );
    let auth = AuthLayer::new(Arc::new(validator), Arc::new(scope_policy()));

    let probe_db = db.clone();
    retention_server::spawn_readiness_probe(health.clone(), Duration::from_secs(2), move || {
        let db = probe_db.clone();
        async move { retention_db::ping(&db).await }
    });
    health.mark_ready(&[GRPC_SERVICE]).await;
    tracing::info!(addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "profile service ready");

    let result = retention_server::serve(
        ServeOptions::from(&settings.server),
        listener,
        routes,
        auth,
        health,
        health_service,
        shutdown,
    )
    .await;
    relay_stop.cancel();
    let _ = relay_task.await;
    let _ = db.close().await;
    Ok(result?)
}
