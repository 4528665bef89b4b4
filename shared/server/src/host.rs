//! The service host: everything the four services do alike, in one place. A
//! service declares what is its own by implementing [`Service`] (its name, port,
//! scopes, migrations, and in [`Service::build`] its gRPC routes, consumers and
//! background jobs); [`run`] does the rest in this order:
//!
//! 1. the service's preflight checks; health NOT_SERVING; connect to the database
//!    and apply the migrations;
//! 2. the outbox relay, then the service's own parts on an [`Outbox`];
//! 3. its consumers and jobs, all under one cancellation;
//! 4. serve (auth, limits, readiness following the database) until shutdown;
//! 5. drain, cancel, join every task, close the database.
//!
//! `main` of each service is [`main`]; the all-in-one binary calls [`run`] once per
//! service with the embedded bus they share.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use retention_auth::{AuthLayer, ScopePolicy};
use retention_config::Settings;
use retention_db::DbOptions;
use retention_db::sea_orm::DatabaseConnection;
use retention_db::sea_orm_migration::{MigrationTrait, MigratorTrait};
use retention_events::{
    BacklogProbe, ConsumerOptions, DeadLetters, EventBus, EventHandler, Outbox, Relay, RelayOptions,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{HealthHandle, ServerError};

/// What a service is; the host runs any of them the same way.
pub trait Service: Sized + 'static {
    /// Short name: configuration section, relay and consumer group, telemetry.
    const NAME: &'static str;
    const DEFAULT_PORT: u16;
    /// Full gRPC service name, e.g. `retention.profile.v1.CustomerProfileService`.
    const GRPC_SERVICE: &'static str;
    /// The stream it publishes its events on.
    const STREAM: &'static str;

    /// The scopes each method needs (anything unlisted is denied).
    fn scope_policy() -> ScopePolicy;

    /// Its own tables, in order; the shared ones (outbox, consumed events,
    /// request ids) come first on their own, see [`Migrator`].
    fn migrations() -> Vec<Box<dyn MigrationTrait>>;

    /// Checks made before the database is touched: what the service cannot run
    /// without (keys), so a misconfigured replica neither migrates nor starts.
    fn preflight(_settings: &Settings) -> Result<(), HostError> {
        Ok(())
    }

    /// Builds its app on the shared parts and says what to serve and run.
    fn build(parts: Parts) -> impl Future<Output = Result<Wiring, HostError>> + Send;

    /// Printed once listening in development mode (the development JWT secret):
    /// how to try it at once.
    fn dev_banner(_settings: &Settings, _addr: SocketAddr) {}
}

/// Why a service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(transparent)]
    Config(#[from] retention_config::ConfigError),
    #[error(transparent)]
    Telemetry(#[from] retention_telemetry::TelemetryError),
    #[error("binding {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Db(#[from] retention_db::DbError),
    #[error(transparent)]
    Events(#[from] retention_events::EventsError),
    #[error(transparent)]
    Server(#[from] ServerError),
    /// A failure of the service's own start-up (keys, peers, recovery).
    #[error(transparent)]
    Service(Box<dyn std::error::Error + Send + Sync>),
}

impl HostError {
    pub fn service(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        HostError::Service(Box::new(e))
    }
}

/// What the host has ready when a service builds itself.
pub struct Parts {
    name: &'static str,
    pub settings: Settings,
    pub db: DatabaseConnection,
    /// Writes changes with their events and wakes the relay.
    pub outbox: Outbox,
    /// What `GetEventBacklog` reports for the stream the service publishes.
    pub backlog: BacklogProbe,
    bus: EventBus,
}

impl Parts {
    /// Options of a consumer of `stream` in the service's own group.
    pub fn consumer(&self, stream: &str) -> ConsumerOptions {
        ConsumerOptions::from_settings(&self.settings, stream, self.name)
    }

    /// The dead letters of the service's own consumer group, on every stream
    /// `events.consumer_groups` says it consumes (the dead-letter admin methods).
    pub fn dead_letters(&self) -> DeadLetters {
        DeadLetters::for_group(&self.bus, &self.settings.events, self.name)
    }

    /// The dead-letter admin methods of the service (ListDeadLetters, ...).
    pub fn dead_letter_admin(&self) -> crate::dead_letters::DeadLetterAdmin {
        crate::dead_letters::DeadLetterAdmin::new(self.dead_letters(), self.db.clone())
    }

    /// `ListAuditRecords` of the service (scope [`crate::audit::SCOPE`]).
    pub fn audit_admin(&self) -> crate::audit::AuditAdmin {
        crate::audit::AuditAdmin::new(self.db.clone())
    }

    /// The largest gRPC message either way, for the service's generated server.
    pub fn max_message_bytes(&self) -> usize {
        self.settings.server.max_message_bytes
    }
}

type Job = Box<dyn FnOnce(CancellationToken) -> BoxFuture<'static, ()> + Send>;

/// What a service serves and runs beside serving.
pub struct Wiring {
    routes: tonic::service::Routes,
    consumers: Vec<(ConsumerOptions, Arc<dyn EventHandler>)>,
    jobs: Vec<Job>,
}

impl Wiring {
    /// Serves `routes` (the tonic server of the service's API).
    pub fn serve(routes: tonic::service::Routes) -> Self {
        Wiring {
            routes,
            consumers: Vec::new(),
            jobs: Vec::new(),
        }
    }

    /// Applies the events of `opts.stream` with `handler` while the service runs.
    pub fn consume(mut self, opts: ConsumerOptions, handler: Arc<dyn EventHandler>) -> Self {
        self.consumers.push((opts, handler));
        self
    }

    /// Runs `job` once at start; it is dropped if still running at shutdown.
    pub fn once(mut self, job: impl Future<Output = ()> + Send + 'static) -> Self {
        self.jobs.push(Box::new(move |stop: CancellationToken| {
            Box::pin(async move {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = job => {}
                }
            })
        }));
        self
    }

    /// Runs `tick` every `period` (never when `period` is zero) until shutdown; a
    /// tick in progress at shutdown is dropped, as a failed one would be.
    pub fn every<F, Fut>(mut self, period: Duration, mut tick: F) -> Self
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        if period.is_zero() {
            return self;
        }
        self.jobs.push(Box::new(move |stop: CancellationToken| {
            Box::pin(async move {
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(period) => {}
                    }
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tick() => {}
                    }
                }
            })
        }));
        self
    }
}

/// Applies a service's migrations: the shared tables, then its own.
pub struct Migrator<S>(std::marker::PhantomData<fn() -> S>);

impl<S: Service> MigratorTrait for Migrator<S> {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut all = retention_events::shared_migrations();
        all.extend(S::migrations());
        all
    }
}

/// Runs service `S` on `listener` until `shutdown` resolves. `bus` is the
/// embedded bus the all-in-one process shares between its services; `None`
/// takes the bus the settings name (Redis, or an in-process one of its own).
pub async fn run<S: Service>(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    bus: Option<EventBus>,
) -> Result<(), HostError> {
    S::preflight(&settings)?;
    // Before any instrument is made: one made earlier would record nothing.
    retention_telemetry::metrics::install(
        &format!("retention-{}", S::NAME),
        Some(settings.telemetry.otlp_endpoint.as_str()),
        Duration::from_secs(settings.admin.sample_secs.max(1)),
    )?;
    let bus = match bus {
        Some(bus) => bus,
        None => EventBus::from_settings(&settings)?,
    };
    let health = HealthHandle::new().await;
    let db = retention_db::connect(&DbOptions::from_settings(&settings.database)).await?;
    retention_db::migrate::<Migrator<S>>(&db).await?;

    let stop = CancellationToken::new();
    let relay = Relay::new(
        db.clone(),
        bus.publisher(),
        RelayOptions::from_settings(&settings.events, S::NAME),
    );
    let backlog = BacklogProbe::new(
        db.clone(),
        &bus,
        S::STREAM,
        &settings.events,
        relay.status(),
    );
    let outbox = Outbox::new(db.clone(), S::NAME, relay.notifier());
    let sampler = crate::instruments::pipeline_sampler(
        S::NAME,
        backlog.clone(),
        DeadLetters::for_group(&bus, &settings.events, S::NAME),
    );
    let sample_every = Duration::from_secs(settings.admin.sample_secs);
    let server = settings.server.clone();
    let settings_audit = settings.audit;
    let auth = AuthLayer::from_settings(&settings.auth, S::scope_policy());
    let wiring = match S::build(Parts {
        name: S::NAME,
        settings,
        db: db.clone(),
        outbox,
        backlog,
        bus: bus.clone(),
    })
    .await
    {
        Ok(wiring) => wiring,
        Err(e) => {
            let _ = db.close().await;
            return Err(e);
        }
    };
    let _sampled_on_scrape = crate::admin::add_sampler(sampler.clone());
    // The OTLP push reads the gauges as last sampled; a scrape samples itself.
    let wiring = wiring.every(sample_every, move || sampler());
    // Every service keeps its audit trail within `audit.retention_days`.
    let (period, sweep) = crate::audit::sweeper(db.clone(), &settings_audit);
    let wiring = wiring.every(period, sweep);
    let mut tasks = vec![relay.spawn(stop.clone())];
    for (opts, handler) in wiring.consumers {
        tasks.push(bus.spawn_consumer(opts, handler, stop.clone()));
    }
    for job in wiring.jobs {
        tasks.push(tokio::spawn(job(stop.clone())));
    }

    let probe_db = db.clone();
    let result = crate::serve_ready(
        &server,
        listener,
        wiring.routes,
        auth,
        health,
        S::GRPC_SERVICE,
        move || {
            let db = probe_db.clone();
            async move { retention_db::ping(&db).await }
        },
        shutdown,
    )
    .await;
    stop.cancel();
    futures::future::join_all(tasks).await;
    let _ = db.close().await;
    Ok(result?)
}

/// The whole `main` of a service binary: configuration, telemetry, then either
/// `migrate` (apply the migrations and exit; a Kubernetes init container runs it)
/// or serve until SIGTERM.
pub async fn main<S: Service>() -> Result<(), HostError> {
    let settings = Settings::load(S::NAME, S::DEFAULT_PORT)?;
    let _telemetry = retention_telemetry::init(&retention_telemetry::TelemetryOptions {
        service_name: format!("retention-{}", S::NAME),
        otlp_endpoint: Some(settings.telemetry.otlp_endpoint.clone()),
        log_filter: settings.telemetry.log_filter.clone(),
        log_format: settings.telemetry.log_format.clone(),
    })?;
    if std::env::args().nth(1).as_deref() == Some("migrate") {
        retention_db::migrate_only::<Migrator<S>>(&settings.database).await?;
        tracing::info!("migrations applied");
        return Ok(());
    }
    let listener = bind(&settings).await?;
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "retention-{} listening", S::NAME);
    }
    if settings.auth.allow_dev_secret
        && settings.auth.jwt_secret == retention_config::DEV_JWT_SECRET
        && let Ok(addr) = listener.local_addr()
    {
        S::dev_banner(&settings, addr);
    }
    let stop = CancellationToken::new();
    let admin = spawn_admin(&settings, &stop).await?;
    let signal = stop.clone();
    let result = run::<S>(
        settings,
        listener,
        async move {
            crate::shutdown_signal().await;
            signal.cancel();
        },
        None,
    )
    .await;
    stop.cancel();
    if let Some(admin) = admin {
        let _ = admin.await;
    }
    result
}

/// Binds the admin port the settings name (if enabled) and serves it until
/// `stop`. One per process: the all-in-one binary calls it once.
pub async fn spawn_admin(
    settings: &Settings,
    stop: &CancellationToken,
) -> Result<Option<tokio::task::JoinHandle<()>>, HostError> {
    let Some(addr) = settings.admin_addr() else {
        return Ok(None);
    };
    let listener = TcpListener::bind(&addr)
        .await
        .map_err(|source| HostError::Bind { addr, source })?;
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "admin port listening (GET /metrics)");
    }
    let stop = stop.clone();
    Ok(Some(tokio::spawn(crate::admin::serve(
        listener,
        async move { stop.cancelled().await },
    ))))
}

/// Binds the service's configured address.
pub async fn bind(settings: &Settings) -> Result<TcpListener, HostError> {
    let addr = settings.listen_addr();
    TcpListener::bind(&addr)
        .await
        .map_err(|source| HostError::Bind { addr, source })
}
