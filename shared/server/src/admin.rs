//! The admin port: a plain HTTP/1.1 listener beside the gRPC one, for what
//! operators' tools scrape rather than call. `GET /metrics` answers the
//! process's metrics in the Prometheus text format (see
//! `retention_telemetry::metrics`).
//!
//! Some figures are states read from elsewhere (the outbox backlog is rows in
//! the database, lag is in Redis): services register a [`Sampler`] that reads
//! them into gauges, and every scrape runs the samplers first, so a scrape
//! shows the state at the time it was taken. The host also samples on a timer
//! for the OTLP push.
//!
//! The port has no authentication, like the gRPC health service: what it shows
//! are counts and durations, never customer data. Keep it off the public
//! network (the Kubernetes manifests expose it to the cluster only).

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use http_body_util::Full;
use hyper::body::Bytes;
use tokio::net::TcpListener;

/// Reads some state into gauges; must finish within [`SAMPLE_TIMEOUT`].
pub type Sampler = Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

/// A sampler slower than this is left behind (its gauges keep their last values)
/// so a scrape answers within Prometheus' default 10 s scrape timeout.
pub const SAMPLE_TIMEOUT: Duration = Duration::from_secs(3);

static SAMPLERS: Mutex<Vec<(u64, Sampler)>> = Mutex::new(Vec::new());
static NEXT_SAMPLER: AtomicU64 = AtomicU64::new(0);

/// Keeps a sampler registered; dropping it (when its service stops) removes it.
#[must_use = "the sampler is removed when the guard is dropped"]
pub struct SamplerGuard(u64);

impl Drop for SamplerGuard {
    fn drop(&mut self) {
        samplers().retain(|(id, _)| *id != self.0);
    }
}

fn samplers() -> std::sync::MutexGuard<'static, Vec<(u64, Sampler)>> {
    // A sampler list is still usable after a panic elsewhere.
    SAMPLERS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Registers `sampler` until the guard is dropped.
pub fn add_sampler(sampler: Sampler) -> SamplerGuard {
    let id = NEXT_SAMPLER.fetch_add(1, Ordering::Relaxed);
    samplers().push((id, sampler));
    SamplerGuard(id)
}

/// Runs every registered sampler (concurrently, each bounded by
/// [`SAMPLE_TIMEOUT`]).
pub async fn sample() {
    let all: Vec<Sampler> = samplers().iter().map(|(_, s)| s.clone()).collect();
    futures::future::join_all(all.into_iter().map(|s| async move {
        if tokio::time::timeout(SAMPLE_TIMEOUT, s()).await.is_err() {
            tracing::warn!("metrics sampler timed out; its gauges keep their last values");
        }
    }))
    .await;
}

/// The exposition after a fresh sample: what `GET /metrics` answers.
pub async fn scrape() -> String {
    sample().await;
    retention_telemetry::metrics::render()
}

/// Serves the admin endpoints on `listener` until `shutdown` resolves.
pub async fn serve(listener: TcpListener, shutdown: impl Future<Output = ()> + Send) {
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "admin port accept failed");
                    // Out of file descriptors, say: do not spin.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        tokio::spawn(async move {
            let io = hyper_util::rt::TokioIo::new(stream);
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, hyper::service::service_fn(handle));
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "admin connection ended with an error");
            }
        });
    }
}

async fn handle<B>(req: http::Request<B>) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&http::Method::GET, "/metrics") => (
            http::StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            scrape().await,
        ),
        (&http::Method::GET, "/") => (
            http::StatusCode::OK,
            "text/plain; charset=utf-8",
            "retention admin port: GET /metrics (Prometheus text format)\n".to_string(),
        ),
        (&http::Method::GET, _) => (
            http::StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found\n".to_string(),
        ),
        _ => (
            http::StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "only GET\n".to_string(),
        ),
    };
    let mut resp = http::Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    Ok(resp)
}
