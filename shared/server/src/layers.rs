//! Tower layers applied to every call, outermost first: request id, trace span +
//! RED counters, deadline.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tracing::Instrument;

/// The id of one call, from `x-request-id` or generated; echoed in the response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

const REQUEST_ID: &str = "x-request-id";

fn sane_request_id(v: &str) -> bool {
    !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic())
}

/// Adds a cloned, ready inner service call (tower's contract for boxed futures).
fn take_ready<S: Clone>(inner: &mut S) -> S {
    let clone = inner.clone();
    std::mem::replace(inner, clone)
}

#[derive(Clone, Copy, Debug, Default)]
pub struct RequestIdLayer;

impl<S> tower::Layer<S> for RequestIdLayer {
    type Service = RequestIdService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequestIdService { inner }
    }
}

#[derive(Clone)]
pub struct RequestIdService<S> {
    inner: S,
}

impl<S, B, RB> tower::Service<http::Request<B>> for RequestIdService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let id = req
            .headers()
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .filter(|v| sane_request_id(v))
            .map(String::from)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        if let Ok(v) = http::HeaderValue::from_str(&id) {
            req.headers_mut().insert(REQUEST_ID, v);
        }
        req.extensions_mut().insert(RequestId(id.clone()));
        let mut inner = take_ready(&mut self.inner);
        Box::pin(async move {
            let mut resp = inner.call(req).await?;
            if let Ok(v) = http::HeaderValue::from_str(&id) {
                resp.headers_mut().insert(REQUEST_ID, v);
            }
            Ok(resp)
        })
    }
}

/// Per-method request counts, errors and latency: the RED metrics until a metrics
/// exporter is wired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MethodStats {
    pub method: String,
    pub requests: u64,
    pub errors: u64,
    pub total_micros: u64,
}

fn registry() -> &'static Mutex<HashMap<String, MethodStats>> {
    static REGISTRY: OnceLock<Mutex<HashMap<String, MethodStats>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

fn record(method: &str, error: bool, elapsed: Duration) {
    if let Ok(mut map) = registry().lock() {
        let s = map
            .entry(method.to_string())
            .or_insert_with(|| MethodStats {
                method: method.to_string(),
                ..Default::default()
            });
        s.requests += 1;
        s.errors += u64::from(error);
        s.total_micros += elapsed.as_micros() as u64;
    }
}

/// A copy of the per-method counters of this process.
pub fn metrics_snapshot() -> Vec<MethodStats> {
    let mut v: Vec<MethodStats> = registry()
        .lock()
        .map(|m| m.values().cloned().collect())
        .unwrap_or_default();
    v.sort_by(|a, b| a.method.cmp(&b.method));
    v
}

#[derive(Clone, Copy, Debug, Default)]
pub struct TraceLayer;

impl<S> tower::Layer<S> for TraceLayer {
    type Service = TraceService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        TraceService { inner }
    }
}

#[derive(Clone)]
pub struct TraceService<S> {
    inner: S,
}

impl<S, B, RB> tower::Service<http::Request<B>> for TraceService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: std::fmt::Display,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let path = req.uri().path().to_string();
        let (service, method) = path
            .trim_start_matches('/')
            .split_once('/')
            .map(|(s, m)| (s.to_string(), m.to_string()))
            .unwrap_or_default();
        let request_id = req
            .extensions()
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_default();
        let span = tracing::info_span!(
            "grpc.request",
            otel.name = %path,
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            request_id = %request_id,
            rpc.grpc.status_code = tracing::field::Empty,
        );
        retention_telemetry::set_parent(
            &span,
            retention_telemetry::extract_from_headers(req.headers()),
        );
        let mut inner = take_ready(&mut self.inner);
        let started = Instant::now();
        let fut = async move {
            let result = inner.call(req).await;
            // Trailers-only responses (all errors) carry grpc-status in the headers;
            // a normal response's status is in trailers and means OK here.
            let code = match &result {
                Ok(resp) => resp
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .unwrap_or(0),
                Err(_) => 2,
            };
            tracing::Span::current().record("rpc.grpc.status_code", code);
            let elapsed = started.elapsed();
            record(&path, code != 0, elapsed);
            tracing::debug!(code, micros = elapsed.as_micros() as u64, "call finished");
            result
        };
        Box::pin(fut.instrument(span))
    }
}

/// Bounds each call by min(server budget, the client's `grpc-timeout`) and answers
/// DEADLINE_EXCEEDED when it runs out (tonic's own timeout reports CANCELLED).
#[derive(Clone, Copy, Debug)]
pub struct DeadlineLayer {
    budget: Duration,
}

impl DeadlineLayer {
    pub fn new(budget: Duration) -> Self {
        DeadlineLayer { budget }
    }
}

impl<S> tower::Layer<S> for DeadlineLayer {
    type Service = DeadlineService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        DeadlineService {
            inner,
            budget: self.budget,
        }
    }
}

#[derive(Clone)]
pub struct DeadlineService<S> {
    inner: S,
    budget: Duration,
}

/// Parses the gRPC `grpc-timeout` header ("100m", "2S", ...).
pub(crate) fn parse_grpc_timeout(v: &str) -> Option<Duration> {
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (digits, unit) = v.split_at(v.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

impl<S, B, RB> tower::Service<http::Request<B>> for DeadlineService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    RB: Default + Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let client = req
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout);
        let budget = client.map_or(self.budget, |c| c.min(self.budget));
        let mut inner = take_ready(&mut self.inner);
        Box::pin(async move {
            match tokio::time::timeout(budget, inner.call(req)).await {
                Ok(r) => r,
                Err(_) => Ok(tonic::Status::deadline_exceeded(format!(
                    "call exceeded its {} ms deadline",
                    budget.as_millis()
                ))
                .into_http()),
            }
        })
    }
}
