//! The token checks, the scope policy and the layer, together.

use std::collections::BTreeSet;
use std::convert::Infallible;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use tower::{Layer, Service, ServiceExt};

use super::*;
use crate::tokens::VERIFIED_CAPACITY;

const SECRET: &[u8] = b"a-test-secret-of-some-length";
const TTL: Duration = Duration::from_secs(60);

fn validator() -> JwtValidator {
    JwtValidator::hs256(SECRET, "iss", "aud")
}

fn minter() -> TokenMinter {
    TokenMinter::hs256(SECRET, "iss", "aud")
}

fn policy() -> ScopePolicy {
    ScopePolicy::new()
        .require("/p.S/Get", &["p.read"])
        .require("/p.S/Merge", &["p.write", "p.admin"])
        .require("/q.T/Do", &[])
}

fn encode(claims: &Claims, secret: &[u8], alg: Algorithm) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, &EncodingKey::from_secret(secret)).unwrap()
}

fn claims(exp_offset: i64) -> Claims {
    let now = chrono::Utc::now().timestamp();
    Claims {
        sub: "u".into(),
        scope: "p.read".into(),
        iss: "iss".into(),
        aud: "aud".into(),
        iat: now,
        exp: now + exp_offset,
    }
}

#[test]
fn valid_tokens_yield_the_caller() {
    let t = minter().mint("u1", &["p.read", "pii.read"], TTL);
    let c = validator().validate(&t).unwrap();
    assert_eq!(c.subject, "u1");
    assert!(c.has("p.read") && c.has("pii.read") && !c.has("p.write"));
    assert_eq!(c.scopes.len(), 2);
}

#[test]
fn wrong_issuer_audience_key_and_garbage_are_invalid() {
    let v = validator();
    let invalid = |r: Result<Caller, AuthError>| matches!(r, Err(AuthError::Invalid(_)));
    assert!(invalid(v.validate(
        &TokenMinter::hs256(SECRET, "other", "aud").mint("u", &[], TTL)
    )));
    assert!(invalid(v.validate(
        &TokenMinter::hs256(SECRET, "iss", "other").mint("u", &[], TTL)
    )));
    assert!(invalid(v.validate(
        &TokenMinter::hs256(b"another-secret-entirely", "iss", "aud").mint("u", &[], TTL)
    )));
    for garbage in [
        "",
        "garbage",
        "a.b.c",
        "...",
        "\u{0}\u{ff}",
        &"x".repeat(10_000),
    ] {
        assert!(invalid(v.validate(garbage)), "{garbage:?}");
    }
    // Another HMAC algorithm with the same key is still refused.
    assert!(invalid(v.validate(&encode(
        &claims(60),
        SECRET,
        Algorithm::HS512
    ))));
    // A tampered payload breaks the signature.
    let good = minter().mint("u", &["p.read"], TTL);
    let mut parts: Vec<&str> = good.split('.').collect();
    let forged = {
        use base64::Engine;
        let mut c = claims(60);
        c.scope = "p.read p.admin".into();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap())
    };
    parts[1] = &forged;
    assert!(invalid(v.validate(&parts.join("."))));
    let mut empty_sub = claims(60);
    empty_sub.sub = " ".into();
    assert!(invalid(v.validate(&encode(
        &empty_sub,
        SECRET,
        Algorithm::HS256
    ))));
}

#[test]
fn expiry_has_a_small_leeway() {
    let v = validator();
    assert_eq!(
        v.validate(&encode(&claims(-3600), SECRET, Algorithm::HS256)),
        Err(AuthError::Expired)
    );
    assert!(
        v.validate(&encode(&claims(-5), SECRET, Algorithm::HS256))
            .is_ok(),
        "a few seconds of clock skew is tolerated"
    );
    // A zero ttl is within the leeway; an enormous one does not overflow.
    assert!(v.validate(&minter().mint("u", &[], Duration::ZERO)).is_ok());
    assert!(v.validate(&minter().mint("u", &[], Duration::MAX)).is_ok());
}

#[test]
fn a_remembered_token_still_expires_and_a_tampered_one_is_checked() {
    let v = validator();
    let t = minter().mint("u1", &["p.read"], TTL);
    let first = v.validate(&t).unwrap();
    assert_eq!(
        v.validate(&t).unwrap(),
        first,
        "served from the verified map"
    );
    // One changed character is another key: verified in full, and refused.
    let mut tampered = t.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    assert!(matches!(v.validate(&tampered), Err(AuthError::Invalid(_))));
    // An entry past its expiry (plus leeway) is refused and forgotten.
    let stale = encode(&claims(-5), SECRET, Algorithm::HS256);
    v.verified
        .lock()
        .unwrap()
        .insert(stale.clone(), (first.clone(), 0));
    assert_eq!(v.validate(&stale), Err(AuthError::Expired));
    assert!(!v.verified.lock().unwrap().contains_key(&stale));
    // The map stays bounded.
    for i in 0..VERIFIED_CAPACITY + 10 {
        v.validate(&minter().mint(&format!("u{i}"), &[], TTL))
            .unwrap();
    }
    assert!(v.verified.lock().unwrap().len() <= VERIFIED_CAPACITY);
}

#[test]
fn bearer_header_parsing() {
    assert_eq!(bearer_token(Some("Bearer abc")), Ok("abc"));
    assert_eq!(bearer_token(Some("bearer  abc ")), Ok("abc"));
    assert_eq!(bearer_token(Some("BEARER abc")), Ok("abc"));
    assert_eq!(bearer_token(None), Err(AuthError::Missing));
    for bad in ["", "Bearer", "Bearer ", "Basic abc", "abc"] {
        assert_eq!(
            bearer_token(Some(bad)),
            Err(AuthError::Malformed),
            "{bad:?}"
        );
    }
}

#[test]
fn policy_decisions() {
    let p = policy().open_prefix("/open.Svc/");
    assert_eq!(p.required("/grpc.health.v1.Health/Check"), Decision::Open);
    assert_eq!(
        p.required("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
        Decision::Open
    );
    assert_eq!(
        p.required("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"),
        Decision::Open
    );
    assert_eq!(p.required("/open.Svc/Anything"), Decision::Open);
    assert!(matches!(p.required("/p.S/Get"), Decision::Scopes(s) if s == ["p.read"]));
    assert_eq!(p.required("/p.S/Unlisted"), Decision::Unknown);
    assert_eq!(p.required(""), Decision::Unknown);
    assert_eq!(
        p.required("/grpc.health.v1.HealthX/Check"),
        Decision::Unknown
    );
    let table: Vec<_> = p.methods().collect();
    assert_eq!(table.len(), 3);
    assert_eq!(table[0].0, "/p.S/Get", "sorted by path");
    assert_eq!(p.services().into_iter().collect::<Vec<_>>(), ["p.S", "q.T"]);
}

#[test]
fn authorize_maps_to_grpc_codes() {
    let (p, v) = (policy(), validator());
    let code = |path: &str, header: Option<&str>| {
        p.authorize(&v, path, header)
            .err()
            .map(|s| s.code())
            .unwrap_or(tonic::Code::Ok)
    };
    assert_eq!(code("/p.S/Get", None), tonic::Code::Unauthenticated);
    assert_eq!(
        code("/p.S/Get", Some("Basic x")),
        tonic::Code::Unauthenticated
    );
    assert_eq!(
        code("/p.S/Get", Some("Bearer x")),
        tonic::Code::Unauthenticated
    );
    // Unknown methods: authentication first, then deny by default.
    assert_eq!(code("/p.S/Nope", None), tonic::Code::Unauthenticated);
    let good = format!("Bearer {}", minter().mint("u", &["p.read"], TTL));
    assert_eq!(
        code("/p.S/Nope", Some(&good)),
        tonic::Code::PermissionDenied
    );
    let weak = format!("Bearer {}", minter().mint("u", &["p.write"], TTL));
    let err = p.authorize(&v, "/p.S/Merge", Some(&weak)).unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    assert!(err.message().contains("p.admin"), "{}", err.message());
    assert!(!err.message().contains("p.write"), "{}", err.message());
    let caller = p.authorize(&v, "/p.S/Get", Some(&good)).unwrap().unwrap();
    assert_eq!(caller.subject, "u");
    // A method needing no scope still needs a valid token.
    assert_eq!(code("/q.T/Do", None), tonic::Code::Unauthenticated);
    assert!(p.authorize(&v, "/q.T/Do", Some(&weak)).unwrap().is_some());
    assert!(
        p.authorize(&v, "/grpc.health.v1.Health/Check", None)
            .unwrap()
            .is_none()
    );
}

/// The layer over an inner service that reports the caller it saw.
fn layered()
-> impl Service<http::Request<()>, Response = http::Response<String>, Error = Infallible, Future: Send>
+ Clone {
    let inner = tower::service_fn(|req: http::Request<()>| async move {
        let who = req
            .extensions()
            .get::<Caller>()
            .map(|c| c.subject.clone())
            .unwrap_or_else(|| "<anonymous>".into());
        Ok::<_, Infallible>(http::Response::new(who))
    });
    AuthLayer::new(Arc::new(validator()), Arc::new(policy())).layer(inner)
}

fn request(path: &str, authorization: Option<&[u8]>) -> http::Request<()> {
    let mut req = http::Request::builder().uri(path).body(()).unwrap();
    if let Some(a) = authorization {
        req.headers_mut().insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_bytes(a).unwrap(),
        );
    }
    req
}

async fn send(req: http::Request<()>) -> http::Response<String> {
    layered().ready().await.unwrap().call(req).await.unwrap()
}

fn grpc_status(resp: &http::Response<String>) -> Option<(i32, String)> {
    let h = resp.headers();
    let code = h.get("grpc-status")?.to_str().ok()?.parse().ok()?;
    let message = h
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .unwrap_or_default()
        .to_string();
    Some((code, message))
}

#[tokio::test]
async fn layer_refuses_without_a_token_as_unauthenticated() {
    for auth in [
        None,
        Some(&b"Bearer nonsense"[..]),
        Some(b"Bearer \xff\xfe"),
    ] {
        let resp = send(request("http://x/p.S/Get", auth)).await;
        assert_eq!(resp.status(), http::StatusCode::OK, "trailers-only gRPC");
        assert_eq!(
            resp.headers().get("content-type").unwrap(),
            "application/grpc"
        );
        assert_eq!(grpc_status(&resp).map(|s| s.0), Some(16), "{auth:?}");
        assert!(resp.body().is_empty(), "inner service not called");
    }
}

#[tokio::test]
async fn layer_names_the_missing_scope() {
    let token = minter().mint("u", &["p.write"], TTL);
    let resp = send(request(
        "http://x/p.S/Get",
        Some(format!("Bearer {token}").as_bytes()),
    ))
    .await;
    let (code, message) = grpc_status(&resp).unwrap();
    assert_eq!(code, 7);
    assert!(message.contains("p.read"), "{message}");
    assert!(resp.body().is_empty());
}

#[tokio::test]
async fn layer_passes_the_caller_to_the_inner_service() {
    let token = minter().mint("alice", &["p.read"], TTL);
    let resp = send(request(
        "http://x/p.S/Get",
        Some(format!("Bearer {token}").as_bytes()),
    ))
    .await;
    assert_eq!(grpc_status(&resp), None);
    assert_eq!(resp.body(), "alice");
    // Open paths reach the inner service without a caller.
    let resp = send(request("http://x/grpc.health.v1.Health/Check", None)).await;
    assert_eq!(resp.body(), "<anonymous>");
    // Unlisted paths are denied even with a valid token.
    let resp = send(request(
        "http://x/p.S/Secret",
        Some(format!("Bearer {token}").as_bytes()),
    ))
    .await;
    assert_eq!(grpc_status(&resp).map(|s| s.0), Some(7));
}

#[test]
fn caller_helper_reads_the_extension() {
    let mut req = tonic::Request::new(());
    assert_eq!(
        caller(&req).unwrap_err().code(),
        tonic::Code::Unauthenticated
    );
    let c = Caller {
        subject: "s".into(),
        scopes: BTreeSet::from(["a".to_string()]),
    };
    req.extensions_mut().insert(c.clone());
    assert_eq!(caller(&req).unwrap(), &c);
}

#[test]
fn debug_output_hides_the_secret() {
    let dbg = format!("{:?} {:?}", validator(), minter());
    assert!(!dbg.contains("a-test-secret"), "{dbg}");
}
