use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tonic::codegen::Bytes;
use tonic::codegen::http::uri::PathAndQuery;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus as Pb;
use tonic_health::pb::health_client::HealthClient;
use tower::{Layer, Service, ServiceExt};

use super::*;

fn status_of<B>(resp: &http::Response<B>) -> Option<i32> {
    resp.headers()
        .get("grpc-status")?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// An inner service that answers an empty OK-less response after `delay` and
/// reports the deadline it saw in `x-remaining-ms`.
fn slow(
    delay: Duration,
) -> impl Service<
    http::Request<()>,
    Response = http::Response<tonic::body::Body>,
    Error = Infallible,
    Future: Send,
> + Clone
+ Send
+ 'static {
    tower::service_fn(move |req: http::Request<()>| async move {
        let remaining = req.extensions().get::<Deadline>().map(Deadline::remaining);
        tokio::time::sleep(delay).await;
        let mut resp = http::Response::new(tonic::body::Body::empty());
        if let Some(r) = remaining {
            resp.headers_mut()
                .insert("x-remaining-ms", r.as_millis().to_string().parse().unwrap());
        }
        Ok::<_, Infallible>(resp)
    })
}

/// One call through a [`DeadlineLayer`] with `budget` to a handler taking
/// `handler`, with the client's `grpc-timeout` header if any; the response and
/// how long the call took.
async fn call_within(
    budget: Duration,
    handler: Duration,
    grpc_timeout: Option<&str>,
) -> (http::Response<tonic::body::Body>, Duration) {
    let mut svc = DeadlineLayer::new(budget).layer(slow(handler));
    let mut req = http::Request::new(());
    if let Some(t) = grpc_timeout {
        req.headers_mut().insert("grpc-timeout", t.parse().unwrap());
    }
    let started = Instant::now();
    let resp = svc.ready().await.unwrap().call(req).await.unwrap();
    (resp, started.elapsed())
}

#[tokio::test]
async fn deadline_exceeded_not_cancelled() {
    let (resp, took) = call_within(Duration::from_millis(50), Duration::from_secs(5), None).await;
    assert_eq!(status_of(&resp), Some(tonic::Code::DeadlineExceeded as i32));
    assert!(took < Duration::from_secs(2));
}

#[tokio::test]
async fn a_shorter_client_deadline_wins() {
    let (resp, took) =
        call_within(Duration::from_secs(30), Duration::from_secs(5), Some("20m")).await;
    assert_eq!(status_of(&resp), Some(tonic::Code::DeadlineExceeded as i32));
    assert!(took < Duration::from_secs(2));
    // A longer client deadline does not extend the server budget.
    let (resp, took) = call_within(
        Duration::from_millis(50),
        Duration::from_secs(5),
        Some("1H"),
    )
    .await;
    assert_eq!(status_of(&resp), Some(tonic::Code::DeadlineExceeded as i32));
    assert!(took < Duration::from_secs(2));
}

#[tokio::test]
async fn calls_within_budget_pass_through_and_see_their_deadline() {
    let (resp, _) = call_within(
        Duration::from_secs(1),
        Duration::from_millis(1),
        Some("500m"),
    )
    .await;
    assert_eq!(status_of(&resp), None, "calls within budget pass through");
    let remaining: u64 = resp.headers()["x-remaining-ms"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (400..=500).contains(&remaining),
        "handler sees the client's shorter budget: {remaining}"
    );
    // A server budget too large for the clock is no deadline rather than a panic.
    let (resp, _) = call_within(Duration::MAX, Duration::from_millis(1), None).await;
    assert_eq!(status_of(&resp), None);
}

#[test]
fn grpc_timeout_header_parsing() {
    use layers::parse_grpc_timeout as p;
    assert_eq!(p("100m"), Some(Duration::from_millis(100)));
    assert_eq!(p("2S"), Some(Duration::from_secs(2)));
    assert_eq!(p("1H"), Some(Duration::from_secs(3600)));
    assert_eq!(p("3M"), Some(Duration::from_secs(180)));
    assert_eq!(p("7u"), Some(Duration::from_micros(7)));
    assert_eq!(p("9n"), Some(Duration::from_nanos(9)));
    assert_eq!(p("99999999H"), Some(Duration::from_secs(99_999_999 * 3600)));
    for bad in [
        "",
        "m",
        "12x",
        "-1S",
        "+1S",
        " 1S",
        "1 S",
        "123456789S",
        "1é",
        "é",
        "1.5S",
    ] {
        assert_eq!(p(bad), None, "{bad:?}");
    }
}

#[tokio::test]
async fn request_ids_are_generated_or_kept_and_echoed() {
    let inner = tower::service_fn(|req: http::Request<()>| async move {
        let id = req.extensions().get::<RequestId>().cloned().unwrap();
        assert_eq!(
            req.headers()["x-request-id"],
            id.0.as_str(),
            "handlers see the id in metadata too"
        );
        Ok::<_, Infallible>(http::Response::new(id.0))
    });
    let mut svc = RequestIdLayer.layer(inner);
    let resp = svc
        .ready()
        .await
        .unwrap()
        .call(http::Request::new(()))
        .await
        .unwrap();
    let generated = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(resp.body(), &generated);
    assert_eq!(
        uuid::Uuid::parse_str(&generated).unwrap().get_version_num(),
        4
    );

    let mut req = http::Request::new(());
    req.headers_mut()
        .insert("x-request-id", "client-abc-1".parse().unwrap());
    let resp = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(resp.headers()["x-request-id"], "client-abc-1");
    assert_eq!(resp.body(), "client-abc-1");

    let too_long = "a".repeat(129);
    for insane in [&b"has space"[..], b"", too_long.as_bytes(), b"caf\xc3\xa9"] {
        let mut req = http::Request::new(());
        req.headers_mut().insert(
            "x-request-id",
            http::HeaderValue::from_bytes(insane).unwrap(),
        );
        let resp = svc.ready().await.unwrap().call(req).await.unwrap();
        let id = resp.headers()["x-request-id"].to_str().unwrap();
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{insane:?} replaced");
    }
    let max = "b".repeat(128);
    let mut req = http::Request::new(());
    req.headers_mut()
        .insert("x-request-id", max.parse().unwrap());
    let resp = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(resp.headers()["x-request-id"], max.as_str());
}

/// A response body of one data frame and then `grpc-status` trailers.
#[derive(Default)]
struct Streamed {
    data: Option<Bytes>,
    code: Option<&'static str>,
}

impl http_body::Body for Streamed {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        if let Some(d) = self.data.take() {
            return Poll::Ready(Some(Ok(http_body::Frame::data(d))));
        }
        Poll::Ready(self.code.take().map(|c| {
            let mut t = http::HeaderMap::new();
            t.insert("grpc-status", c.parse().unwrap());
            Ok(http_body::Frame::trailers(t))
        }))
    }
}

async fn drain_body<B: http_body::Body + Unpin>(mut body: B) {
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        if frame.is_err() {
            break;
        }
    }
}

fn stats_of(method: &str) -> MethodStats {
    metrics()
        .into_iter()
        .find(|m| m.method == method)
        .unwrap_or_default()
}

#[tokio::test]
async fn trace_layer_counts_requests_errors_and_latency_at_the_end_of_the_call() {
    let inner = tower::service_fn(|req: http::Request<()>| async move {
        let path = req.uri().path().to_string();
        let resp = match path.as_str() {
            "/metrics.Test/Fail" => tonic::Status::not_found("x").into_http(),
            "/metrics.Test/StreamFail" => http::Response::new(Streamed {
                data: Some("x".into()),
                code: Some("13"),
            }),
            _ => http::Response::new(Streamed {
                data: Some("x".into()),
                code: Some("0"),
            }),
        };
        Ok::<_, Infallible>(resp)
    });
    let mut svc = TraceLayer.layer(inner);
    let call = |path: &'static str| http::Request::builder().uri(path).body(()).unwrap();

    for _ in 0..2 {
        let resp = svc
            .ready()
            .await
            .unwrap()
            .call(call("/metrics.Test/Ok"))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        drain_body(resp.into_body()).await;
    }
    let ok = stats_of("/metrics.Test/Ok");
    assert_eq!((ok.requests, ok.errors), (2, 0));
    assert!(
        ok.total_micros >= 10_000,
        "latency runs to the trailers: {ok:?}"
    );

    let resp = svc
        .ready()
        .await
        .unwrap()
        .call(call("/metrics.Test/Fail"))
        .await
        .unwrap();
    assert_eq!(status_of(&resp), Some(5));
    assert_eq!(
        (
            stats_of("/metrics.Test/Fail").requests,
            stats_of("/metrics.Test/Fail").errors
        ),
        (1, 1),
        "trailers-only errors count without reading the body"
    );

    let resp = svc
        .ready()
        .await
        .unwrap()
        .call(call("/metrics.Test/StreamFail"))
        .await
        .unwrap();
    assert_eq!(
        stats_of("/metrics.Test/StreamFail").requests,
        0,
        "not finished yet"
    );
    drain_body(resp.into_body()).await;
    assert_eq!(
        stats_of("/metrics.Test/StreamFail").errors,
        1,
        "status from trailers"
    );

    // A client that goes away mid-stream: CANCELLED, an error.
    let resp = svc
        .ready()
        .await
        .unwrap()
        .call(call("/metrics.Test/Abandoned"))
        .await
        .unwrap();
    drop(resp);
    let abandoned = stats_of("/metrics.Test/Abandoned");
    assert_eq!((abandoned.requests, abandoned.errors), (1, 1));
}

#[tokio::test]
async fn health_starts_not_serving_and_follows_readiness_and_shutdown() {
    let (health, _svc) = HealthHandle::new().await;
    let not = Some(ServingStatus::NotServing);
    let serving = Some(ServingStatus::Serving);
    assert_eq!(health.status(OVERALL).await, not);
    assert_eq!(health.status(READINESS).await, not);

    // The probe saw the database down before the service was ready.
    health.set_ready(false).await;
    health.mark_ready(&["svc.A"]).await;
    assert_eq!(health.status(OVERALL).await, serving);
    assert_eq!(health.status("svc.A").await, serving);
    assert_eq!(health.status(READINESS).await, not, "database still down");
    health.set_ready(true).await;
    assert_eq!(health.status(READINESS).await, serving);

    health.set_not_serving("svc.A").await;
    assert_eq!(health.status("svc.A").await, not);
    health.set_serving("svc.A").await;
    assert_eq!(health.status("svc.A").await, serving);

    health.begin_shutdown().await;
    assert!(health.is_shutting_down());
    for name in [OVERALL, READINESS, "svc.A"] {
        assert_eq!(health.status(name).await, not, "{name:?}");
    }
    health.set_serving("svc.A").await;
    health.set_ready(true).await;
    assert_eq!(health.status("svc.A").await, not, "shutdown is final");
    assert_eq!(health.status(READINESS).await, not, "shutdown is final");
}

#[tokio::test]
async fn the_probe_stops_at_shutdown_and_survives_a_zero_interval() {
    let (health, _svc) = HealthHandle::new().await;
    health.mark_ready(&[]).await;
    let probe = spawn_readiness_probe(health.clone(), Duration::ZERO, || async { false });
    for _ in 0..100 {
        if health.status(READINESS).await == Some(ServingStatus::NotServing) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        health.status(READINESS).await,
        Some(ServingStatus::NotServing)
    );
    // A check that hangs counts as a failure instead of freezing readiness.
    let hung = spawn_readiness_probe(health.clone(), Duration::from_millis(20), || {
        std::future::pending::<bool>()
    });
    health.begin_shutdown().await;
    tokio::time::timeout(Duration::from_secs(2), probe)
        .await
        .expect("probe stopped")
        .unwrap();
    tokio::time::timeout(Duration::from_secs(2), hung)
        .await
        .expect("hung probe stopped")
        .unwrap();
}

/// A gRPC service that answers OK after the delay in its `x-delay-ms` metadata,
/// to hold calls in flight; it echoes the caller and the deadline it saw.
#[derive(Clone)]
struct Slow;

impl tonic::server::NamedService for Slow {
    const NAME: &'static str = "test.Slow";
}

impl Service<http::Request<tonic::body::Body>> for Slow {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Infallible>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::<(), ()>::default());
            Ok(grpc.unary(SlowUnary, req).await)
        })
    }
}

struct SlowUnary;

impl tonic::server::UnaryService<()> for SlowUnary {
    type Response = ();
    type Future = futures::future::BoxFuture<'static, Result<tonic::Response<()>, tonic::Status>>;
    fn call(&mut self, req: tonic::Request<()>) -> Self::Future {
        let delay = req
            .metadata()
            .get("x-delay-ms")
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(0);
        let subject = retention_auth::caller(&req).map(|c| c.subject.clone());
        let budget = remaining_budget(&req);
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            let mut resp = tonic::Response::new(());
            resp.metadata_mut()
                .insert("x-caller", subject?.parse().unwrap());
            if let Some(b) = budget {
                resp.metadata_mut()
                    .insert("x-budget-ms", b.as_millis().to_string().parse().unwrap());
            }
            Ok(resp)
        })
    }
}

const SECRET: &[u8] = b"server-test-secret-0123456789";

fn options(
    request_timeout: Duration,
    drain_timeout: Duration,
    drain_delay: Duration,
) -> ServeOptions {
    let mut s = retention_config::Settings::defaults("test", 0).server;
    s.request_timeout_ms = request_timeout.as_millis() as u64;
    s.drain_timeout_ms = drain_timeout.as_millis() as u64;
    ServeOptions {
        drain_delay,
        ..ServeOptions::from(&s)
    }
}

fn auth() -> AuthLayer {
    let policy = retention_auth::ScopePolicy::new().require("/test.Slow/Call", &["t.call"]);
    AuthLayer::new(
        Arc::new(retention_auth::JwtValidator::hs256(SECRET, "i", "a")),
        Arc::new(policy),
    )
}

fn token(scopes: &[&str]) -> String {
    retention_auth::TokenMinter::hs256(SECRET, "i", "a").mint(
        "tester",
        scopes,
        Duration::from_secs(60),
    )
}

/// A running `serve` with its handles.
struct Running {
    addr: std::net::SocketAddr,
    health: HealthHandle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: JoinHandle<Result<(), ServerError>>,
}

impl Running {
    async fn start(opts: ServeOptions) -> Running {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (health, health_service) = HealthHandle::new().await;
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            opts,
            listener,
            tonic::service::Routes::new(Slow),
            auth(),
            health.clone(),
            health_service,
            async {
                let _ = stop_rx.await;
            },
        ));
        Running {
            addr,
            health,
            stop: Some(stop),
            server,
        }
    }

    async fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Endpoint::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// Started and marked ready, with a channel to it.
    async fn ready(opts: ServeOptions) -> (Running, tonic::transport::Channel) {
        let srv = Running::start(opts).await;
        srv.health.mark_ready(&[]).await;
        let ch = srv.channel().await;
        (srv, ch)
    }

    fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }

    /// Waits (at most 5 s) for `serve` to return after [`Running::shutdown`].
    async fn stopped(&mut self) -> Result<(), ServerError> {
        tokio::time::timeout(Duration::from_secs(5), &mut self.server)
            .await
            .expect("serve returned")
            .unwrap()
    }
}

async fn health_of(ch: tonic::transport::Channel, name: &str) -> i32 {
    HealthClient::new(ch)
        .check(HealthCheckRequest {
            service: name.into(),
        })
        .await
        .map(|r| r.into_inner().status)
        .unwrap_or(-1)
}

async fn call_slow(
    ch: tonic::transport::Channel,
    token: &str,
    delay_ms: u64,
) -> Result<tonic::Response<()>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(ch);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut req = tonic::Request::new(());
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    req.metadata_mut()
        .insert("x-delay-ms", delay_ms.to_string().parse().unwrap());
    grpc.unary::<(), (), _>(
        req,
        PathAndQuery::from_static("/test.Slow/Call"),
        tonic_prost::ProstCodec::default(),
    )
    .await
}

async fn wait_for_health(ch: &tonic::transport::Channel, name: &str, want: Pb) -> i32 {
    let mut seen = -1;
    for _ in 0..200 {
        seen = health_of(ch.clone(), name).await;
        if seen == want as i32 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    seen
}

/// The service names reflection lists, asked in protocol version `$v` (the two
/// versions have the same messages in different packages).
macro_rules! list_services {
    ($name:ident, $v:ident) => {
        async fn $name(ch: tonic::transport::Channel) -> Vec<String> {
            use tonic_reflection::pb::$v::server_reflection_client::ServerReflectionClient;
            use tonic_reflection::pb::$v::server_reflection_response::MessageResponse;
            use tonic_reflection::pb::$v::{
                ServerReflectionRequest, server_reflection_request::MessageRequest,
            };
            let req = ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            };
            let mut stream = ServerReflectionClient::new(ch)
                .server_reflection_info(tokio_stream::iter(vec![req]))
                .await
                .unwrap()
                .into_inner();
            match stream.message().await.unwrap().unwrap().message_response {
                Some(MessageResponse::ListServicesResponse(l)) => {
                    l.service.into_iter().map(|s| s.name).collect()
                }
                other => panic!("unexpected reflection answer {other:?}"),
            }
        }
    };
}

list_services!(list_services_v1, v1);
list_services!(list_services_v1alpha, v1alpha);

#[tokio::test]
async fn serve_health_readiness_reflection_auth_deadline_and_graceful_drain() {
    let mut srv = Running::start(options(
        Duration::from_millis(1_000),
        Duration::from_secs(3),
        Duration::from_millis(300),
    ))
    .await;
    let ch = srv.channel().await;

    // Health: nothing SERVING before the service is ready.
    assert_eq!(health_of(ch.clone(), "").await, Pb::NotServing as i32);
    assert_eq!(
        health_of(ch.clone(), READINESS).await,
        Pb::NotServing as i32
    );
    srv.health.mark_ready(&["test.Slow"]).await;
    assert_eq!(health_of(ch.clone(), "").await, Pb::Serving as i32);
    assert_eq!(health_of(ch.clone(), READINESS).await, Pb::Serving as i32);
    assert_eq!(health_of(ch.clone(), "test.Slow").await, Pb::Serving as i32);

    // Readiness follows the probe both ways; liveness does not.
    let up = Arc::new(AtomicBool::new(false));
    let probe_up = up.clone();
    let probe = spawn_readiness_probe(srv.health.clone(), Duration::from_millis(20), move || {
        let v = probe_up.load(Ordering::SeqCst);
        async move { v }
    });
    assert_eq!(
        wait_for_health(&ch, READINESS, Pb::NotServing).await,
        Pb::NotServing as i32
    );
    assert_eq!(health_of(ch.clone(), "").await, Pb::Serving as i32);
    up.store(true, Ordering::SeqCst);
    assert_eq!(
        wait_for_health(&ch, READINESS, Pb::Serving).await,
        Pb::Serving as i32
    );

    // Reflection (v1 and v1alpha) lists what this server serves, and only that.
    for listed in [
        list_services_v1(ch.clone()).await,
        list_services_v1alpha(ch.clone()).await,
    ] {
        for want in [
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "test.Slow",
        ] {
            assert!(listed.iter().any(|s| s == want), "{want} in {listed:?}");
        }
        assert!(
            !listed.iter().any(|s| s.contains("retention.interactions")),
            "{listed:?}"
        );
    }

    // Auth: no/bad token, missing scope, then success with the caller visible.
    let err = call_slow(ch.clone(), "nope", 0).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    assert!(
        err.metadata().get("x-request-id").is_some(),
        "refusals carry a request id"
    );
    let err = call_slow(ch.clone(), &token(&["other"]), 0)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    assert!(err.message().contains("t.call"), "{}", err.message());
    let good = token(&["t.call"]);
    let ok = call_slow(ch.clone(), &good, 0).await.unwrap();
    assert_eq!(ok.metadata().get("x-caller").unwrap(), "tester");
    assert!(ok.metadata().get("x-request-id").is_some());
    let budget: u64 = ok
        .metadata()
        .get("x-budget-ms")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(budget <= 1_000 && budget > 100, "{budget}");

    // The server budget answers DEADLINE_EXCEEDED, not CANCELLED.
    let started = Instant::now();
    let err = call_slow(ch.clone(), &good, 5_000).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::DeadlineExceeded, "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3));

    let stats = stats_of("/test.Slow/Call");
    assert!(stats.requests >= 4 && stats.errors >= 3, "{stats:?}");

    // Drain: a call in flight when shutdown starts completes; health turns
    // NOT_SERVING while the listener still accepts; serve returns Ok in time.
    let held = good.clone();
    let inflight_ch = ch.clone();
    let inflight = tokio::spawn(async move { call_slow(inflight_ch, &held, 500).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    srv.shutdown();
    assert_eq!(
        wait_for_health(&ch, "", Pb::NotServing).await,
        Pb::NotServing as i32,
        "health flips first, while the listener still accepts (drain delay)"
    );
    assert_eq!(
        health_of(ch.clone(), READINESS).await,
        Pb::NotServing as i32
    );
    assert!(started.elapsed() < Duration::from_millis(300));
    let done = inflight.await.unwrap();
    assert!(
        done.is_ok(),
        "in-flight call completed during drain: {done:?}"
    );
    drop(ch);
    let result = srv.stopped().await;
    assert!(result.is_ok(), "{result:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "drain is bounded"
    );
    assert!(srv.health.is_shutting_down());
    tokio::time::timeout(Duration::from_secs(1), probe)
        .await
        .expect("probe stopped with the server")
        .unwrap();
}

#[tokio::test]
async fn drain_gives_up_after_the_drain_timeout() {
    let (mut srv, ch) = Running::ready(options(
        Duration::from_secs(30),
        Duration::from_millis(300),
        Duration::ZERO,
    ))
    .await;
    let held = token(&["t.call"]);
    let stuck = tokio::spawn(async move { call_slow(ch, &held, 20_000).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    srv.shutdown();
    let result = srv.stopped().await;
    assert!(
        result.is_ok(),
        "serve returned despite a stuck call: {result:?}"
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(2),
        "{took:?}"
    );
    stuck.abort();
}

#[tokio::test]
async fn an_open_health_watch_does_not_hold_the_drain() {
    let (mut srv, ch) = Running::ready(options(
        Duration::from_secs(30),
        Duration::from_secs(10),
        Duration::ZERO,
    ))
    .await;
    let mut watch = HealthClient::new(ch.clone())
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        watch.message().await.unwrap().unwrap().status,
        Pb::Serving as i32
    );
    let started = Instant::now();
    srv.shutdown();
    assert_eq!(
        watch.message().await.unwrap().unwrap().status,
        Pb::NotServing as i32,
        "watchers hear NOT_SERVING first"
    );
    let result = srv.stopped().await;
    assert!(result.is_ok(), "{result:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "did not wait for the 10 s drain timeout: {:?}",
        started.elapsed()
    );
    let end = tokio::time::timeout(Duration::from_secs(2), watch.message())
        .await
        .expect("watch stream ended");
    assert!(!matches!(end, Ok(Some(_))), "{end:?}");
}

#[tokio::test]
async fn a_caller_past_its_rate_is_refused_with_a_retry_hint_and_others_are_not() {
    let mut opts = options(
        Duration::from_secs(5),
        Duration::from_secs(1),
        Duration::ZERO,
    );
    opts.rate_limit_per_sec = 1;
    opts.rate_limit_burst = 2;
    let (mut srv, ch) = Running::ready(opts).await;
    let tester = token(&["t.call"]);
    for _ in 0..2 {
        call_slow(ch.clone(), &tester, 0)
            .await
            .expect("within the burst");
    }
    let refused = call_slow(ch.clone(), &tester, 0).await.unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    assert!(
        refused.message().contains("tester"),
        "{}",
        refused.message()
    );
    let retry = tonic_types::StatusExt::get_details_retry_info(&refused)
        .and_then(|r| r.retry_delay)
        .expect("a retry hint");
    assert!(
        retry > Duration::ZERO && retry <= Duration::from_secs(1),
        "{retry:?}"
    );
    // Another caller has its own budget; health is not limited at all.
    let other = retention_auth::TokenMinter::hs256(SECRET, "i", "a").mint(
        "someone-else",
        &["t.call"],
        Duration::from_secs(60),
    );
    call_slow(ch.clone(), &other, 0)
        .await
        .expect("another caller");
    for _ in 0..5 {
        assert_eq!(health_of(ch.clone(), "").await, Pb::Serving as i32);
    }
    srv.shutdown();
    srv.server.await.unwrap().unwrap();
}

mod tls;
