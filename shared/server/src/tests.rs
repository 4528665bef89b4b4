use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    tower::service_fn(move |_req: http::Request<()>| async move {
        tokio::time::sleep(delay).await;
        Ok::<_, Infallible>(http::Response::new(tonic::body::Body::empty()))
    })
}

#[tokio::test]
async fn deadline_exceeded_not_cancelled() {
    let mut svc = DeadlineLayer::new(Duration::from_millis(50)).layer(slow(Duration::from_secs(5)));
    let resp = svc
        .ready()
        .await
        .unwrap()
        .call(http::Request::new(()))
        .await
        .unwrap();
    assert_eq!(status_of(&resp), Some(tonic::Code::DeadlineExceeded as i32));
}

#[tokio::test]
async fn a_shorter_client_deadline_wins() {
    let mut svc = DeadlineLayer::new(Duration::from_secs(30)).layer(slow(Duration::from_secs(5)));
    let mut req = http::Request::new(());
    req.headers_mut()
        .insert("grpc-timeout", "20m".parse().unwrap());
    let started = Instant::now();
    let resp = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(status_of(&resp), Some(tonic::Code::DeadlineExceeded as i32));
    assert!(started.elapsed() < Duration::from_secs(5));
    let mut fast = DeadlineLayer::new(Duration::from_secs(1)).layer(slow(Duration::from_millis(1)));
    let resp = fast
        .ready()
        .await
        .unwrap()
        .call(http::Request::new(()))
        .await
        .unwrap();
    assert_eq!(status_of(&resp), None, "calls within budget pass through");
}

#[test]
fn grpc_timeout_header_parsing() {
    assert_eq!(
        layers::parse_grpc_timeout("100m"),
        Some(Duration::from_millis(100))
    );
    assert_eq!(
        layers::parse_grpc_timeout("2S"),
        Some(Duration::from_secs(2))
    );
    assert_eq!(
        layers::parse_grpc_timeout("1H"),
        Some(Duration::from_secs(3600))
    );
    for bad in ["", "m", "12x", "-1S", "1234567890S"] {
        assert_eq!(layers::parse_grpc_timeout(bad), None, "{bad}");
    }
}

#[tokio::test]
async fn request_ids_are_generated_or_kept_and_echoed() {
    let inner = tower::service_fn(|req: http::Request<()>| async move {
        let id = req.extensions().get::<RequestId>().cloned().unwrap();
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
    let generated = resp
        .headers()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(resp.body(), &generated);
    assert!(uuid::Uuid::parse_str(&generated).is_ok());
    let mut req = http::Request::new(());
    req.headers_mut()
        .insert("x-request-id", "client-abc-1".parse().unwrap());
    let resp = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(resp.headers().get("x-request-id").unwrap(), "client-abc-1");
}

/// A gRPC service that answers OK after a delay, to hold a call in flight.
#[derive(Clone)]
struct Slow(Duration);

impl tonic::server::NamedService for Slow {
    const NAME: &'static str = "test.Slow";
}

impl Service<http::Request<tonic::body::Body>> for Slow {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Infallible>>;
    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let d = self.0;
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::<(), ()>::default());
            Ok(grpc.unary(SlowUnary(d), req).await)
        })
    }
}

struct SlowUnary(Duration);

impl tonic::server::UnaryService<()> for SlowUnary {
    type Response = ();
    type Future = futures::future::BoxFuture<'static, Result<tonic::Response<()>, tonic::Status>>;
    fn call(&mut self, _: tonic::Request<()>) -> Self::Future {
        let d = self.0;
        Box::pin(async move {
            tokio::time::sleep(d).await;
            Ok(tonic::Response::new(()))
        })
    }
}

fn options() -> ServeOptions {
    let mut s = retention_config::Settings::defaults("test", 0).server;
    s.drain_timeout_ms = 3_000;
    ServeOptions::from(&s)
}

fn auth() -> (AuthLayer, String) {
    let secret = b"server-test-secret-0123456789";
    let policy = retention_auth::ScopePolicy::new().require("/test.Slow/Call", &["t.call"]);
    let layer = AuthLayer::new(
        Arc::new(retention_auth::JwtValidator::hs256(secret, "i", "a")),
        Arc::new(policy),
    );
    let token = retention_auth::TokenMinter::hs256(secret, "i", "a").mint(
        "u",
        &["t.call"],
        Duration::from_secs(60),
    );
    (layer, token)
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

async fn call_slow(ch: tonic::transport::Channel, token: &str) -> Result<(), tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(ch);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut req = tonic::Request::new(());
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    grpc.unary::<(), (), _>(
        req,
        PathAndQuery::from_static("/test.Slow/Call"),
        tonic_prost::ProstCodec::default(),
    )
    .await
    .map(|_| ())
}

#[tokio::test]
async fn health_readiness_reflection_auth_and_graceful_drain() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (health, health_service) = HealthHandle::new().await;
    let (auth, token) = auth();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let routes = tonic::service::Routes::new(Slow(Duration::from_millis(400)));
    let server = tokio::spawn(serve(
        options(),
        listener,
        routes,
        auth,
        health.clone(),
        health_service,
        async {
            let _ = stop_rx.await;
        },
    ));
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();

    assert_eq!(
        health_of(ch.clone(), "").await,
        Pb::NotServing as i32,
        "not serving before ready"
    );
    health.mark_ready(&["test.Slow"]).await;
    assert_eq!(health_of(ch.clone(), "").await, Pb::Serving as i32);
    assert_eq!(health_of(ch.clone(), "test.Slow").await, Pb::Serving as i32);

    // Readiness follows the probe; liveness does not.
    let up = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probe_up = up.clone();
    spawn_readiness_probe(health.clone(), Duration::from_millis(20), move || {
        let v = probe_up.load(std::sync::atomic::Ordering::SeqCst);
        async move { v }
    });
    let mut seen = -1;
    for _ in 0..100 {
        seen = health_of(ch.clone(), READINESS).await;
        if seen == Pb::NotServing as i32 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen, Pb::NotServing as i32);
    assert_eq!(health_of(ch.clone(), "").await, Pb::Serving as i32);
    up.store(true, std::sync::atomic::Ordering::SeqCst);

    // Reflection lists the services.
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_request::MessageRequest,
    };
    let mut refl = ServerReflectionClient::new(ch.clone());
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = refl
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let resp = stream.message().await.unwrap().unwrap();
    let listed = format!("{resp:?}");
    assert!(listed.contains("grpc.health.v1.Health"), "{listed}");

    // Auth: protected method refused without a token.
    assert_eq!(
        call_slow(ch.clone(), "nope").await.unwrap_err().code(),
        tonic::Code::Unauthenticated
    );

    // Drain: a call in flight when shutdown starts completes; serve returns Ok.
    let held = token.clone();
    let inflight_ch = ch.clone();
    let inflight = tokio::spawn(async move { call_slow(inflight_ch, &held).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    stop_tx.send(()).unwrap();
    assert!(
        inflight.await.unwrap().is_ok(),
        "in-flight call completed during drain"
    );
    drop(ch);
    let result = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve returned")
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "drain is bounded"
    );
    assert!(health.stopping.is_cancelled());
}
