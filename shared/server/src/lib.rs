//! Server bootstrap every service's `main` uses: health (NOT_SERVING until ready,
//! a separate readiness name that follows the database), reflection, explicit
//! limits, request ids, a span per call continuing the caller's trace, deadlines
//! answered with DEADLINE_EXCEEDED, JWT scopes, and a bounded graceful drain
//! (DESIGN §6, §7).

mod layers;
pub mod paging;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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
    DeadlineLayer, MethodStats, RequestId, RequestIdLayer, TraceLayer, metrics_snapshot,
};
pub use tonic_health::pb::health_server::HealthServer;

/// The health name a probe flips while the database is unreachable; liveness ("")
/// stays SERVING so Kubernetes does not restart a pod for a database outage.
pub const READINESS: &str = "readiness";

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// Health state of one server process.
#[derive(Clone)]
pub struct HealthHandle {
    reporter: HealthReporter,
    names: Arc<Mutex<Vec<String>>>,
    ready: Arc<AtomicBool>,
    stopping: CancellationToken,
}

/// The health service to mount; `serve` adds it to the routes.
pub type HealthService = HealthServer<tonic_health::server::HealthService>;

impl HealthHandle {
    /// Everything starts NOT_SERVING (tonic's reporter starts "" at SERVING).
    pub async fn new() -> (HealthHandle, HealthService) {
        let reporter = HealthReporter::new();
        let service = tonic_health::server::HealthService::from_health_reporter(reporter.clone());
        let handle = HealthHandle {
            reporter,
            names: Arc::new(Mutex::new(vec![String::new(), READINESS.to_string()])),
            ready: Arc::new(AtomicBool::new(false)),
            stopping: CancellationToken::new(),
        };
        handle.set_all(ServingStatus::NotServing).await;
        (handle, HealthServer::new(service))
    }

    async fn set_all(&self, status: ServingStatus) {
        for name in self.names.lock().await.iter() {
            self.reporter.set_service_status(name, status).await;
        }
    }

    /// After migrations ran and pools are warm: "", readiness and `services` SERVING.
    pub async fn mark_ready(&self, services: &[&str]) {
        {
            let mut names = self.names.lock().await;
            for s in services {
                if !names.iter().any(|n| n == s) {
                    names.push(s.to_string());
                }
            }
        }
        self.ready.store(true, Ordering::SeqCst);
        self.set_all(ServingStatus::Serving).await;
    }

    pub async fn set_ready(&self, ready: bool) {
        let status = if ready && !self.stopping.is_cancelled() {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        self.reporter.set_service_status(READINESS, status).await;
    }

    /// Shutdown begins: every name NOT_SERVING so load balancers stop routing here.
    pub async fn begin_shutdown(&self) {
        self.stopping.cancel();
        self.set_all(ServingStatus::NotServing).await;
    }
}

/// Flips [`READINESS`] with `check` every `interval` until shutdown begins.
pub fn spawn_readiness_probe<F, Fut>(
    health: HealthHandle,
    interval: Duration,
    check: F,
) -> JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    tokio::spawn(async move {
        let mut last = None;
        loop {
            tokio::select! {
                _ = health.stopping.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            let ok = check().await;
            if last != Some(ok) && health.ready.load(Ordering::SeqCst) {
                if !ok {
                    tracing::warn!("readiness check failed: reporting NOT_SERVING");
                }
                health.set_ready(ok).await;
                last = Some(ok);
            }
        }
    })
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
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

/// Limits and timeouts; mirrors `retention_config::ServerSettings`.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub request_timeout: Duration,
    pub max_message_bytes: usize,
    pub concurrency_per_connection: usize,
    pub max_concurrent_streams: u32,
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    pub drain_timeout: Duration,
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
        }
    }
}

/// Serves `routes` plus health and reflection until `shutdown` resolves, then
/// drains for at most `opts.drain_timeout`.
pub async fn serve(
    opts: ServeOptions,
    listener: TcpListener,
    routes: tonic::service::Routes,
    auth: AuthLayer,
    health: HealthHandle,
    health_service: HealthService,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(retention_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let routes = routes.add_service(health_service).add_service(reflection);
    let stack = tower::ServiceBuilder::new()
        .layer(RequestIdLayer)
        .layer(TraceLayer)
        .layer(DeadlineLayer::new(opts.request_timeout))
        .layer(auth)
        .into_inner();
    let router = tonic::transport::Server::builder()
        .concurrency_limit_per_connection(opts.concurrency_per_connection)
        .max_concurrent_streams(opts.max_concurrent_streams)
        .http2_keepalive_interval(Some(opts.keepalive_interval))
        .http2_keepalive_timeout(Some(opts.keepalive_timeout))
        .layer(stack)
        .add_routes(routes);
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = router.serve_with_incoming_shutdown(incoming, async {
        let _ = stop_rx.await;
    });
    tokio::pin!(serving);
    tokio::select! {
        res = &mut serving => return res.map_err(Into::into),
        _ = shutdown => {}
    }
    // Flip health first so balancers stop sending, then stop accepting and drain.
    health.begin_shutdown().await;
    let _ = stop_tx.send(());
    match tokio::time::timeout(opts.drain_timeout, serving).await {
        Ok(res) => {
            tracing::info!("drained in-flight calls");
            res.map_err(Into::into)
        }
        Err(_) => {
            tracing::warn!(timeout = ?opts.drain_timeout, "drain timed out; closing remaining connections");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests;
