//! Tower layers applied to every call, outermost first: request id, trace span +
//! RED counters, deadline. (The auth layer from `retention-auth` goes innermost.)

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Mutex, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use http_body::{Body, Frame, SizeHint};
use tracing::Instrument;

const REQUEST_ID: &str = "x-request-id";
const GRPC_STATUS: &str = "grpc-status";
const GRPC_TIMEOUT: &str = "grpc-timeout";

/// The grpc-status codes used when a call ends without one.
const CANCELLED: i32 = 1;
const UNKNOWN: i32 = 2;

/// The id of one call, from a sane `x-request-id` or a new UUIDv4; echoed in the
/// response headers and on the call's span, so a client can quote it in a ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// Client ids are kept only if short visible ASCII, so they are safe in logs.
fn sane_request_id(v: &str) -> bool {
    !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic())
}

/// Declares a stateless layer and the service it wraps each inner service in.
macro_rules! unit_layer {
    ($(#[$doc:meta])* $layer:ident => $service:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default)]
        pub struct $layer;

        impl<S> tower::Layer<S> for $layer {
            type Service = $service<S>;
            fn layer(&self, inner: S) -> Self::Service {
                $service { inner }
            }
        }

        #[doc = concat!("The service [`", stringify!($layer), "`] produces.")]
        #[derive(Clone, Debug)]
        pub struct $service<S> {
            inner: S,
        }
    };
}

unit_layer!(
    /// Adds [`RequestId`] to every call (outermost layer, so even refusals carry it).
    RequestIdLayer => RequestIdService
);

impl<S, B, RB> tower::Service<http::Request<B>> for RequestIdService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
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
        // Both forms are visible ASCII, so this conversion cannot fail.
        let value = http::HeaderValue::from_str(&id).ok();
        if let Some(v) = &value {
            // Handlers reading metadata see the id actually used.
            req.headers_mut().insert(REQUEST_ID, v.clone());
        }
        req.extensions_mut().insert(RequestId(id));
        let fut = self.inner.call(req);
        Box::pin(async move {
            let mut resp = fut.await?;
            if let Some(v) = value {
                resp.headers_mut().insert(REQUEST_ID, v);
            }
            Ok(resp)
        })
    }
}

/// Per-method request counts, errors (any non-OK grpc-status) and summed latency,
/// kept in process for tests and tools; the exported RED metrics are
/// `rpc.server.duration` (see `instruments`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MethodStats {
    pub method: String,
    pub requests: u64,
    pub errors: u64,
    pub total_micros: u64,
}

/// Paths are client input: beyond this many distinct ones, calls count as "other"
/// so a scan of random paths cannot grow memory without bound.
const MAX_TRACKED_METHODS: usize = 1024;
const OTHER_METHODS: &str = "<other>";

/// A tracked path's counters and its metric attributes, made once per path.
struct Tracked {
    stats: MethodStats,
    attributes: crate::instruments::MethodAttributes,
}

type Registry = Mutex<HashMap<String, Tracked>>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// Counts one call under `method` (or the catch-all); returns the metric
/// attributes of the name counted.
fn record(method: &str, error: bool, elapsed: Duration) -> crate::instruments::MethodAttributes {
    // A panic elsewhere while holding the lock must not stop the counting.
    let mut map = registry().lock().unwrap_or_else(|e| e.into_inner());
    let key = if map.contains_key(method) || map.len() < MAX_TRACKED_METHODS {
        method
    } else {
        OTHER_METHODS
    };
    let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    let bump = |s: &mut MethodStats| {
        s.requests = s.requests.saturating_add(1);
        s.errors = s.errors.saturating_add(u64::from(error));
        s.total_micros = s.total_micros.saturating_add(micros);
    };
    if let Some(t) = map.get_mut(key) {
        bump(&mut t.stats);
        return t.attributes.clone();
    }
    let mut t = Tracked {
        stats: MethodStats {
            method: key.to_string(),
            ..Default::default()
        },
        attributes: crate::instruments::method_attributes(key),
    };
    bump(&mut t.stats);
    let attributes = t.attributes.clone();
    map.insert(key.to_string(), t);
    attributes
}

/// A copy of this process's per-method counters, sorted by method path.
pub fn metrics() -> Vec<MethodStats> {
    let mut v: Vec<MethodStats> = registry()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .map(|t| t.stats.clone())
        .collect();
    v.sort_by(|a, b| a.method.cmp(&b.method));
    v
}

fn grpc_status_of(headers: &http::HeaderMap) -> Option<i32> {
    headers.get(GRPC_STATUS)?.to_str().ok()?.trim().parse().ok()
}

/// One call being measured. It finishes when the grpc-status is known: in the
/// response headers (trailers-only, i.e. every error from a unary handler), in the
/// trailers (streams), or never — dropped early means the client went away
/// (CANCELLED).
struct CallRecord {
    path: String,
    span: tracing::Span,
    started: Instant,
    done: bool,
}

impl CallRecord {
    fn finish(&mut self, code: i32) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let elapsed = self.started.elapsed();
        let attributes = record(&self.path, code != 0, elapsed);
        crate::instruments::record_call(attributes, code, elapsed);
        self.span.record("rpc.grpc.status_code", code);
        let latency_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        // This line is the per-call RED record (rate, errors, duration).
        tracing::info!(
            parent: &self.span,
            grpc.code = code,
            grpc.status = ?tonic::Code::from(code),
            latency_us,
            "rpc finished"
        );
    }
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        self.finish(CANCELLED);
    }
}

/// The response body of a traced call: watches for the trailers to finish the
/// call's record, so streaming calls are measured to their end, not to the headers.
pub struct TracedBody<B> {
    inner: B,
    call: Option<CallRecord>,
}

impl<B: Body + Unpin> Body for TracedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        let code = match &frame {
            Some(Ok(f)) => f
                .trailers_ref()
                .map(|t| grpc_status_of(t).unwrap_or(UNKNOWN)),
            // The stream breaks off: hyper resets it, the client sees an error.
            Some(Err(_)) => Some(UNKNOWN),
            // Ended without trailers: a gRPC protocol violation.
            None => Some(UNKNOWN),
        };
        if let Some(code) = code
            && let Some(mut call) = this.call.take()
        {
            call.finish(code);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

unit_layer!(
    /// A span per call (continuing the caller's W3C trace), the RED log line and the
    /// in-process counters of [`metrics`].
    TraceLayer => TraceService
);

impl<S, B, RB> tower::Service<http::Request<B>> for TraceService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    S::Error: std::fmt::Display,
    RB: Body + Unpin + Send + 'static,
{
    type Response = http::Response<TracedBody<RB>>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let path = req.uri().path().to_string();
        let (service, method) = path
            .strip_prefix('/')
            .and_then(|p| p.split_once('/'))
            .unwrap_or(("", ""));
        let request_id = req
            .extensions()
            .get::<RequestId>()
            .map(|r| r.0.as_str())
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
        let mut call = CallRecord {
            path,
            span: span.clone(),
            started: Instant::now(),
            done: false,
        };
        let fut = {
            let _entered = span.enter();
            self.inner.call(req)
        };
        Box::pin(
            async move {
                match fut.await {
                    Ok(resp) => {
                        let call = match grpc_status_of(resp.headers()) {
                            Some(code) => {
                                call.finish(code);
                                None
                            }
                            None => Some(call),
                        };
                        Ok(resp.map(|inner| TracedBody { inner, call }))
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "call failed in the transport stack");
                        call.finish(UNKNOWN);
                        Err(e)
                    }
                }
            }
            .instrument(span),
        )
    }
}

/// When the current call must be answered by (min of the server budget and the
/// client's `grpc-timeout`). Handlers pass [`Deadline::remaining`] on to outgoing
/// calls with `Request::set_timeout`, since tonic does not propagate deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(pub tokio::time::Instant);

impl Deadline {
    /// Time left; zero once passed.
    pub fn remaining(&self) -> Duration {
        self.0
            .saturating_duration_since(tokio::time::Instant::now())
    }
}

/// The remaining budget of a handler's call, if the deadline layer ran.
pub fn remaining_budget<T>(req: &tonic::Request<T>) -> Option<Duration> {
    req.extensions().get::<Deadline>().map(Deadline::remaining)
}

/// Bounds each call by min(server budget, the client's `grpc-timeout`) and answers
/// DEADLINE_EXCEEDED when it runs out (tonic's own timeout reports CANCELLED).
///
/// The budget covers the call future: for unary calls the whole call; for
/// client-streaming ingest the whole upload plus the handler (the handler reads the
/// request stream inside that future); for server-streaming calls only the time to
/// the response headers — the stream itself is bounded by the client's deadline.
/// A call cut off is dropped, which cancels the handler at its next `.await`
/// (an open database transaction rolls back).
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

/// The service [`DeadlineLayer`] produces.
#[derive(Clone, Debug)]
pub struct DeadlineService<S> {
    inner: S,
    budget: Duration,
}

/// Parses the gRPC `grpc-timeout` header: 1-8 ASCII digits and a unit
/// (H, M, S, m, u, n), per the gRPC HTTP/2 protocol.
pub(crate) fn parse_grpc_timeout(v: &str) -> Option<Duration> {
    let (digits, unit) = v.split_at_checked(v.len().checked_sub(1)?)?;
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
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
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    RB: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let client = req
            .headers()
            .get(GRPC_TIMEOUT)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout);
        let budget = client.map_or(self.budget, |c| c.min(self.budget));
        // Fixed now, before tonic's own grpc-timeout timer (which wraps this stack)
        // starts: ours fires first, so the client gets DEADLINE_EXCEEDED.
        let deadline = tokio::time::Instant::now().checked_add(budget);
        if let Some(d) = deadline {
            req.extensions_mut().insert(Deadline(d));
        }
        let fut = self.inner.call(req);
        let Some(deadline) = deadline else {
            return Box::pin(fut);
        };
        Box::pin(async move {
            match tokio::time::timeout_at(deadline, fut).await {
                Ok(r) => r,
                Err(_) => Ok(tonic::Status::deadline_exceeded(format!(
                    "deadline of {} ms exceeded",
                    budget.as_millis()
                ))
                .into_http()),
            }
        })
    }
}
