//! Server bootstrap every service's `main` uses: health (NOT_SERVING until ready,
//! a separate readiness name that follows the database), reflection, explicit
//! limits, request ids, a span per call continuing the caller's trace, deadlines
//! answered with DEADLINE_EXCEEDED, JWT scopes, and a bounded graceful drain
//! (DESIGN §6, §7).

pub mod admin;
pub mod audit;
pub mod backfill;
pub mod dead_letters;
pub mod host;
mod instruments;
mod layers;
pub mod paging;
mod rate_limit;
mod tls;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use retention_auth::AuthLayer;
use tokio::net::TcpListener;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

pub use layers::{
    Deadline, DeadlineLayer, MethodStats, RequestId, RequestIdLayer, TraceLayer, TracedBody,
    metrics, remaining_budget,
};
pub use rate_limit::{RateLimitLayer, RateLimiter};
pub use tls::{TlsError, peer_endpoint, peer_tls, server_tls};
pub use tonic_health::pb::health_server::HealthServer;

/// The health name a probe flips while the database is unreachable; liveness ("")
/// stays SERVING so Kubernetes does not restart a pod for a database outage.
pub const READINESS: &str = "readiness";

/// The overall (liveness) health name of the gRPC health protocol.
pub const OVERALL: &str = "";

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("tls: {0}")]
    Tls(#[from] TlsError),
}

/// What decides each health name's status. Kept together under one lock so a probe
/// result, `mark_ready` and shutdown cannot interleave into a wrong final status.
#[derive(Debug)]
struct HealthState {
    /// Every registered name and whether the service wants it SERVING.
    wanted: BTreeMap<String, bool>,
    /// What the reporter currently says, to notify `Watch` streams only on change.
    reported: BTreeMap<String, ServingStatus>,
    ready: bool,
    database_ok: bool,
    stopping: bool,
}

impl HealthState {
    fn effective(&self, name: &str, wanted: bool) -> ServingStatus {
        let up = wanted && self.ready && !self.stopping && (name != READINESS || self.database_ok);
        if up {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        }
    }
}

/// Health state of one server process (cheap to clone).
///
/// Every name starts NOT_SERVING (tonic's reporter starts "" at SERVING) until
/// [`HealthHandle::mark_ready`], i.e. after migrations ran and pools are warm.
/// [`READINESS`] additionally follows the readiness probe; shutdown turns every
/// name NOT_SERVING for good.
#[derive(Clone, Debug)]
pub struct HealthHandle {
    reporter: HealthReporter,
    state: Arc<Mutex<HealthState>>,
    stopping: CancellationToken,
}

/// The health service to mount; `serve` adds it to the routes.
pub type HealthService = HealthServer<tonic_health::server::HealthService>;

impl HealthHandle {
    /// A handle with "" and [`READINESS`] registered, both NOT_SERVING, and the
    /// `grpc.health.v1.Health` service reading from it.
    pub async fn new() -> (HealthHandle, HealthService) {
        let reporter = HealthReporter::new();
        let service = tonic_health::server::HealthService::from_health_reporter(reporter.clone());
        let handle = HealthHandle {
            reporter,
            state: Arc::new(Mutex::new(HealthState {
                wanted: BTreeMap::from([
                    (OVERALL.to_string(), true),
                    (READINESS.to_string(), true),
                ]),
                // "" is SERVING inside a fresh reporter: the first sync corrects it.
                reported: BTreeMap::from([(OVERALL.to_string(), ServingStatus::Serving)]),
                ready: false,
                database_ok: true,
                stopping: false,
            })),
            stopping: CancellationToken::new(),
        };
        handle.update(|_| {}).await;
        (handle, HealthServer::new(service))
    }

    /// Applies `change` and pushes every resulting status change to the reporter,
    /// all under the state lock.
    async fn update(&self, change: impl FnOnce(&mut HealthState)) {
        let mut state = self.state.lock().await;
        change(&mut state);
        let targets: Vec<(String, ServingStatus)> = state
            .wanted
            .iter()
            .map(|(name, wanted)| (name.clone(), state.effective(name, *wanted)))
            .collect();
        for (name, status) in targets {
            if state.reported.get(&name) != Some(&status) {
                self.reporter.set_service_status(&name, status).await;
                state.reported.insert(name, status);
            }
        }
    }

    /// After migrations ran and pools are warm: "", readiness (unless the probe
    /// last saw the database down) and `services` turn SERVING.
    pub async fn mark_ready(&self, services: &[&str]) {
        self.update(|s| {
            for name in services {
                s.wanted.insert((*name).to_string(), true);
            }
            s.ready = true;
        })
        .await;
        tracing::info!(?services, "health: ready");
    }

    /// Registers `name` (e.g. a gRPC service name) as SERVING once the process is
    /// ready; before `mark_ready` and after shutdown began it reports NOT_SERVING.
    pub async fn set_serving(&self, name: &str) {
        self.update(|s| {
            s.wanted.insert(name.to_string(), true);
        })
        .await;
    }

    /// Reports `name` NOT_SERVING (e.g. a dependency of that service is gone).
    pub async fn set_not_serving(&self, name: &str) {
        self.update(|s| {
            s.wanted.insert(name.to_string(), false);
        })
        .await;
    }

    /// The readiness probe's verdict: is the database reachable. Only
    /// [`READINESS`] follows it; liveness ("") does not.
    pub async fn set_ready(&self, database_ok: bool) {
        self.update(|s| {
            if s.database_ok != database_ok {
                if database_ok {
                    tracing::info!("readiness check passed again: reporting SERVING");
                } else {
                    tracing::warn!("readiness check failed: reporting NOT_SERVING");
                }
            }
            s.database_ok = database_ok;
        })
        .await;
    }

    /// Shutdown begins: every name NOT_SERVING so balancers stop routing here, and
    /// the readiness probe stops.
    pub async fn begin_shutdown(&self) {
        self.stopping.cancel();
        self.update(|s| s.stopping = true).await;
    }

    /// Whether shutdown began.
    pub fn is_shutting_down(&self) -> bool {
        self.stopping.is_cancelled()
    }

    /// Resolves when shutdown begins (background tasks use it to stop).
    pub async fn shutting_down(&self) {
        self.stopping.cancelled().await;
    }

    /// The status currently reported for `name` (None if never registered).
    pub async fn status(&self, name: &str) -> Option<ServingStatus> {
        self.state.lock().await.reported.get(name).copied()
    }

    /// Ends open `Health/Watch` streams, which otherwise never finish and would hold
    /// every watcher's connection open until the drain timeout. Checks answer
    /// NOT_FOUND afterwards, so call it only once the listener is closing.
    async fn close_watches(&self) {
        let mut state = self.state.lock().await;
        let mut reporter = self.reporter.clone();
        for name in state.reported.keys() {
            reporter.clear_service_status(name).await;
        }
        state.reported.clear();
        state.wanted.clear();
    }
}

/// Runs `check` every `interval` (bounded by `interval` itself, so a hung database
/// call counts as down) and feeds the verdict to [`READINESS`] until shutdown
/// begins.
pub fn spawn_readiness_probe<F, Fut>(
    health: HealthHandle,
    interval: Duration,
    check: F,
) -> JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    // tokio's interval refuses a zero period.
    let interval = interval.max(Duration::from_millis(1));
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let ok = tokio::select! {
                _ = health.shutting_down() => return,
                _ = ticks.tick() => tokio::select! {
                    _ = health.shutting_down() => return,
                    r = tokio::time::timeout(interval, check()) => r.unwrap_or(false),
                },
            };
            health.set_ready(ok).await;
        }
    })
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received");
}

/// Limits and timeouts; mirrors `retention_config::ServerSettings`. Set explicitly
/// because tonic's defaults are "unlimited" (DESIGN §7).
///
/// Message size limits live on each generated server, so every service applies
/// `max_message_bytes` itself:
/// `XxxServer::new(svc).max_decoding_message_size(n).max_encoding_message_size(n)`.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Server-side upper bound of a call; a client's shorter `grpc-timeout` wins.
    pub request_timeout: Duration,
    /// For the services' generated servers (see above); `serve` does not use it.
    pub max_message_bytes: usize,
    /// Concurrent calls per connection (at least 1).
    pub concurrency_per_connection: usize,
    pub max_concurrent_streams: u32,
    /// HTTP/2 PING interval (also the TCP keepalive time); zero disables both.
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    /// Upper bound of the whole shutdown, from the signal to `serve` returning.
    /// Kept below Kubernetes' 30 s termination grace period.
    pub drain_timeout: Duration,
    /// How long to keep accepting calls after health turned NOT_SERVING, so
    /// balancers polling health notice before the listener closes. Counts against
    /// `drain_timeout`. Zero (the default from settings) closes at once.
    pub drain_delay: Duration,
    /// Calls a second per authenticated caller (zero: no limit), and its burst.
    pub rate_limit_per_sec: u32,
    pub rate_limit_burst: u32,
    /// The listener's certificate and, for mutual TLS, the clients' CA.
    pub tls: retention_config::ServerTlsSettings,
}

impl From<&retention_config::ServerSettings> for ServeOptions {
    fn from(s: &retention_config::ServerSettings) -> Self {
        ServeOptions {
            request_timeout: s.request_timeout(),
            max_message_bytes: s.max_message_bytes,
            concurrency_per_connection: s.concurrency_per_connection,
            max_concurrent_streams: s.max_concurrent_streams,
            keepalive_interval: Duration::from_millis(s.keepalive_interval_ms),
            keepalive_timeout: Duration::from_millis(s.keepalive_timeout_ms),
            drain_timeout: s.drain_timeout(),
            drain_delay: Duration::ZERO,
            rate_limit_per_sec: s.rate_limit_per_sec,
            rate_limit_burst: s.rate_limit_burst,
            tls: s.tls.clone(),
        }
    }
}

/// The largest message each generated server should accept and send.
pub fn max_message_bytes(opts: &ServeOptions) -> usize {
    opts.max_message_bytes
}

const HEALTH_SERVICE: &str = "grpc.health.v1.Health";
const REFLECTION_V1: &str = "grpc.reflection.v1.ServerReflection";
const REFLECTION_V1ALPHA: &str = "grpc.reflection.v1alpha.ServerReflection";

/// A reflection builder listing what this server actually serves (the policy's
/// services, health and reflection), not every service in the suite's descriptors.
fn reflection_builder(auth: &AuthLayer) -> tonic_reflection::server::Builder<'static> {
    let mut builder = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(retention_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
    for name in auth.policy().services() {
        builder = builder.with_service_name(name);
    }
    builder
        .with_service_name(HEALTH_SERVICE)
        .with_service_name(REFLECTION_V1)
        .with_service_name(REFLECTION_V1ALPHA)
}

/// How every service ends its `run`: a readiness probe on `ready_check`, health
/// SERVING for `grpc_service`, then [`serve`] until `shutdown`.
#[allow(clippy::too_many_arguments)]
pub async fn serve_ready<F, Fut>(
    settings: &retention_config::ServerSettings,
    listener: TcpListener,
    routes: tonic::service::Routes,
    auth: AuthLayer,
    (health, health_service): (HealthHandle, HealthService),
    grpc_service: &str,
    ready_check: F,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    spawn_readiness_probe(health.clone(), Duration::from_secs(2), ready_check);
    health.mark_ready(&[grpc_service]).await;
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, service = grpc_service, "ready");
    }
    serve(
        ServeOptions::from(settings),
        listener,
        routes,
        auth,
        health,
        health_service,
        shutdown,
    )
    .await
}

/// Serves `routes` plus health and reflection (v1 and v1alpha) until `shutdown`
/// resolves. Then: every health name NOT_SERVING, keep serving for
/// `opts.drain_delay`, stop accepting, and let in-flight calls finish for at most
/// what is left of `opts.drain_timeout` (tonic alone would wait forever). Returns
/// Ok after a clean or a timed-out drain; calls still running after a timeout are
/// abandoned to the process exit.
///
/// Layers, outermost first: request id, trace span + RED record, deadline, auth,
/// per-caller rate limit. With `opts.tls` set the listener speaks only TLS.
pub async fn serve(
    opts: ServeOptions,
    listener: TcpListener,
    routes: tonic::service::Routes,
    auth: AuthLayer,
    health: HealthHandle,
    health_service: HealthService,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    let reflection_v1 = reflection_builder(&auth).build_v1()?;
    let reflection_v1alpha = reflection_builder(&auth).build_v1alpha()?;
    let routes = routes
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .prepare();
    let stack = tower::ServiceBuilder::new()
        .layer(RequestIdLayer)
        .layer(TraceLayer)
        .layer(DeadlineLayer::new(opts.request_timeout))
        .layer(auth)
        .layer(RateLimitLayer::new(
            opts.rate_limit_per_sec,
            opts.rate_limit_burst,
        ))
        .into_inner();
    let keepalive = (!opts.keepalive_interval.is_zero()).then_some(opts.keepalive_interval);
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = server_tls(&opts.tls)? {
        builder = builder.tls_config(tls)?;
    }
    let router = builder
        .concurrency_limit_per_connection(opts.concurrency_per_connection.max(1))
        .max_concurrent_streams(opts.max_concurrent_streams)
        .http2_keepalive_interval(keepalive)
        // A zero timeout would drop every connection at its first PING: keep tonic's.
        .http2_keepalive_timeout(
            (!opts.keepalive_timeout.is_zero()).then_some(opts.keepalive_timeout),
        )
        .layer(stack)
        .add_routes(routes);
    let incoming = TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(keepalive);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = router.serve_with_incoming_shutdown(incoming, async {
        let _ = stop_rx.await;
    });
    tokio::pin!(serving);
    tokio::select! {
        res = &mut serving => return res.map_err(Into::into),
        _ = shutdown => {}
    }
    let started = tokio::time::Instant::now();
    let deadline = started.checked_add(opts.drain_timeout);
    // Flip health first so balancers stop sending, then stop accepting and drain.
    health.begin_shutdown().await;
    tracing::info!(drain_timeout = ?opts.drain_timeout, "shutting down: health NOT_SERVING");
    if !opts.drain_delay.is_zero() {
        let delay = opts.drain_delay.min(opts.drain_timeout);
        tokio::select! {
            res = &mut serving => return res.map_err(Into::into),
            _ = tokio::time::sleep(delay) => {}
        }
    }
    health.close_watches().await;
    let _ = stop_tx.send(());
    let drained = match deadline {
        Some(d) => tokio::time::timeout_at(d, &mut serving).await.ok(),
        None => Some(serving.await),
    };
    match drained {
        Some(res) => {
            tracing::info!(elapsed = ?started.elapsed(), "drained: every in-flight call finished");
            res.map_err(Into::into)
        }
        None => {
            tracing::warn!(timeout = ?opts.drain_timeout, "drain timed out: abandoning the calls still running");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests;
