//! Bearer-token authentication and per-method scopes for every service.
//!
//! A tower layer (not a tonic interceptor: interceptors do not see the method
//! path, DESIGN §7) validates `authorization: Bearer <JWT>`, checks the scopes the
//! called method requires, and hands the handler a [`Caller`]. Methods missing from
//! the [`ScopePolicy`] are refused, so a new RPC cannot ship unprotected by accident.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tonic::Status;

mod jwks;

pub use jwks::JwksError;

/// JWT claims; `scope` is space-separated as in RFC 8693.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    #[serde(default)]
    pub scope: String,
    pub iss: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
}

/// Who is calling and what they may do; in the request extensions of every
/// authenticated call.
#[derive(Debug, Clone, PartialEq)]
pub struct Caller {
    pub subject: String,
    pub scopes: BTreeSet<String>,
}

impl Caller {
    /// Whether the token granted `scope` (e.g. `pii.read` to see unmasked PII).
    pub fn has(&self, scope: &str) -> bool {
        self.scopes.contains(scope)
    }
}

/// Why a request could not be authenticated; all map to UNAUTHENTICATED.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("authorization header is not 'Bearer <token>'")]
    Malformed,
    #[error("token expired")]
    Expired,
    #[error("invalid token: {0}")]
    Invalid(String),
}

impl From<AuthError> for Status {
    fn from(e: AuthError) -> Self {
        Status::unauthenticated(e.to_string())
    }
}

/// Seconds of clock skew tolerated between the token issuer and this server.
const LEEWAY_SECS: u64 = 30;

/// Validates tokens for one issuer and audience: HS256 with the shared secret,
/// or, for a token naming a key (`kid`), that key of the JWKS set.
pub struct JwtValidator {
    key: DecodingKey,
    validation: Validation,
    jwks: std::sync::RwLock<Option<Arc<jwks::KeySet>>>,
    /// Bumped when the JWKS keys change: a verification that started under the
    /// old keys must not be remembered after the change.
    generation: std::sync::atomic::AtomicU64,
    /// Tokens already verified, with the second after which they are expired
    /// (exp + leeway). A caller sends the same token on every call until it
    /// expires; verifying it per call cost as much CPU as the Redis read of a
    /// cache-hit GetCustomer (profile in BENCHMARKS.md).
    verified: std::sync::Mutex<std::collections::HashMap<String, (Caller, i64)>>,
}

/// Verified tokens remembered at most; the map is emptied when full, which
/// costs one re-verification per live token.
const VERIFIED_CAPACITY: usize = 4_096;

impl fmt::Debug for JwtValidator {
    // The key is a secret: never in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtValidator")
            .field("iss", &self.validation.iss)
            .field("aud", &self.validation.aud)
            .finish_non_exhaustive()
    }
}

impl JwtValidator {
    /// Only HS256 is accepted, so a token cannot pick a weaker algorithm.
    pub fn hs256(secret: &[u8], issuer: &str, audience: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        JwtValidator {
            key: DecodingKey::from_secret(secret),
            validation,
            jwks: Default::default(),
            generation: Default::default(),
            verified: Default::default(),
        }
    }

    /// Takes the keys of the JWKS document `json`; returns whether they changed.
    /// A change forgets every remembered verification, so a token whose key was
    /// withdrawn is refused from the next call on.
    pub fn set_jwks(&self, json: &str) -> Result<bool, JwksError> {
        let current = self.jwks.read().unwrap_or_else(|e| e.into_inner()).clone();
        if current.is_some_and(|k| k.same_source(json)) {
            return Ok(false);
        }
        let keys = jwks::KeySet::parse(json)?;
        *self.jwks.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(keys));
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        Ok(true)
    }

    /// Reads the JWKS file at `path` now and then every `every`, while a tokio
    /// runtime runs and the validator lives. An unreadable or invalid file keeps
    /// the keys in force (none at first: tokens with a `kid` are refused) and is
    /// logged; fixing the file is picked up at the next read.
    pub fn watch_jwks(self: &Arc<Self>, path: String, every: Duration) {
        match jwks::read(&path).and_then(|j| self.set_jwks(&j)) {
            Ok(_) => tracing::info!(path, "JWKS keys loaded"),
            Err(e) => tracing::error!(error = %e, "JWKS keys not loaded"),
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak = Arc::downgrade(self);
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(v) = weak.upgrade() else { break };
                // A small local file every few seconds: read in place.
                match jwks::read(&path).and_then(|j| v.set_jwks(&j)) {
                    Ok(true) => tracing::info!(path, "JWKS keys rotated"),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "JWKS file not reloaded; keeping the keys in force"),
                }
            }
        });
    }

    /// Checks signature, expiry (with a small leeway), issuer and audience.
    pub fn validate(&self, token: &str) -> Result<Caller, AuthError> {
        let now = jsonwebtoken::get_current_timestamp() as i64;
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        match verified.get(token) {
            Some((caller, until)) if now <= *until => return Ok(caller.clone()),
            Some(_) => {
                verified.remove(token);
                return Err(AuthError::Expired);
            }
            None => {}
        }
        drop(verified);
        let generation = self.generation.load(std::sync::atomic::Ordering::SeqCst);
        let caller = self.verify(token)?;
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if verified.len() >= VERIFIED_CAPACITY {
            verified.clear();
        }
        if self.generation.load(std::sync::atomic::Ordering::SeqCst) == generation {
            verified.insert(token.to_string(), caller.clone());
        }
        Ok(caller.0)
    }

    /// The full check: signature, then the claims.
    fn verify(&self, token: &str) -> Result<(Caller, i64), AuthError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::Invalid(e.to_string()))?;
        let keys = self.jwks.read().unwrap_or_else(|e| e.into_inner()).clone();
        let data = match &header.kid {
            None => jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation),
            Some(kid) => {
                let Some((key, alg)) = keys.as_deref().and_then(|k| k.get(kid)) else {
                    return Err(AuthError::Invalid(format!("unknown key id {kid:?}")));
                };
                // The key decides the algorithm, never the token's header.
                let mut validation = self.validation.clone();
                validation.algorithms = vec![*alg];
                jsonwebtoken::decode::<Claims>(token, key, &validation)
            }
        }
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
            _ => AuthError::Invalid(e.to_string()),
        })?;
        if data.claims.sub.trim().is_empty() {
            return Err(AuthError::Invalid("empty subject".into()));
        }
        let until = data
            .claims
            .exp
            .saturating_add(self.validation.leeway as i64);
        Ok((
            Caller {
                subject: data.claims.sub,
                scopes: data
                    .claims
                    .scope
                    .split_whitespace()
                    .map(String::from)
                    .collect(),
            },
            until,
        ))
    }
}

/// Mints tokens (tests, the CLI and the development banner).
pub struct TokenMinter {
    key: EncodingKey,
    issuer: String,
    audience: String,
}

impl fmt::Debug for TokenMinter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenMinter")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl TokenMinter {
    pub fn hs256(secret: &[u8], issuer: &str, audience: &str) -> Self {
        TokenMinter {
            key: EncodingKey::from_secret(secret),
            issuer: issuer.into(),
            audience: audience.into(),
        }
    }

    /// A token for `subject` with `scopes`, valid for `ttl` from now (saturating,
    /// so a huge ttl cannot overflow).
    pub fn mint(&self, subject: &str, scopes: &[&str], ttl: Duration) -> String {
        let now = chrono::Utc::now().timestamp();
        let ttl = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
        let claims = Claims {
            sub: subject.into(),
            scope: scopes.join(" "),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: now,
            exp: now.saturating_add(ttl),
        };
        // Encoding HS256 with an HMAC key cannot fail; an empty token would be
        // refused downstream anyway.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.key).unwrap_or_default()
    }
}

/// What a method path requires.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision<'a> {
    /// No token needed (health, reflection).
    Open,
    /// A valid token carrying all of these scopes.
    Scopes(&'a [String]),
    /// Not in the policy: refused (deny by default).
    Unknown,
}

/// Method path -> required scopes. Health and reflection (v1 and v1alpha) are open.
#[derive(Debug, Clone)]
pub struct ScopePolicy {
    methods: BTreeMap<String, Vec<String>>,
    open_prefixes: Vec<String>,
}

impl Default for ScopePolicy {
    fn default() -> Self {
        Self::new()
    }
}

impl ScopePolicy {
    pub fn new() -> Self {
        ScopePolicy {
            methods: BTreeMap::new(),
            open_prefixes: vec![
                "/grpc.health.v1.Health/".into(),
                "/grpc.reflection.v1.ServerReflection/".into(),
                "/grpc.reflection.v1alpha.ServerReflection/".into(),
            ],
        }
    }

    /// `path` is `/<package>.<Service>/<Method>`; the caller needs every scope.
    pub fn require(mut self, path: &str, scopes: &[&str]) -> Self {
        self.methods
            .insert(path.into(), scopes.iter().map(|s| s.to_string()).collect());
        self
    }

    /// Paths starting with `prefix` need no token.
    pub fn open_prefix(mut self, prefix: &str) -> Self {
        self.open_prefixes.push(prefix.into());
        self
    }

    pub fn required(&self, path: &str) -> Decision<'_> {
        if self
            .open_prefixes
            .iter()
            .any(|p| path.starts_with(p.as_str()))
        {
            return Decision::Open;
        }
        match self.methods.get(path) {
            Some(s) => Decision::Scopes(s),
            None => Decision::Unknown,
        }
    }

    /// Every protected method and its scopes, sorted by path (for docs and scope tests).
    pub fn methods(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.methods.iter().map(|(k, s)| (k.as_str(), s.as_slice()))
    }

    /// Fully qualified names of the services the policy protects, e.g.
    /// `retention.profile.v1.CustomerProfileService` (what reflection should list).
    pub fn services(&self) -> BTreeSet<&str> {
        self.methods
            .keys()
            .filter_map(|p| p.strip_prefix('/')?.split_once('/').map(|(s, _)| s))
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// The whole check, separate from transport so it is unit-testable. The token is
    /// checked before the method, so anonymous callers learn nothing about the policy:
    /// no/invalid token -> UNAUTHENTICATED; unlisted method or missing scope ->
    /// PERMISSION_DENIED naming what is missing. `Ok(None)` for open methods.
    pub fn authorize(
        &self,
        validator: &JwtValidator,
        path: &str,
        authorization: Option<&str>,
    ) -> Result<Option<Caller>, Status> {
        if self.required(path) == Decision::Open {
            return Ok(None);
        }
        let caller = validator.validate(bearer_token(authorization)?)?;
        match self.required(path) {
            Decision::Open => Ok(None),
            Decision::Unknown => Err(Status::permission_denied(format!(
                "method {path} is not in the scope policy"
            ))),
            Decision::Scopes(required) => {
                let missing: Vec<&str> = required
                    .iter()
                    .filter(|s| !caller.has(s))
                    .map(String::as_str)
                    .collect();
                if missing.is_empty() {
                    Ok(Some(caller))
                } else {
                    Err(Status::permission_denied(format!(
                        "{path} requires scope {}",
                        missing.join(" ")
                    )))
                }
            }
        }
    }
}

/// The token of an `authorization` header value; the scheme is case-insensitive
/// (RFC 7235).
pub fn bearer_token(authorization: Option<&str>) -> Result<&str, AuthError> {
    let header = authorization.ok_or(AuthError::Missing)?;
    let (scheme, token) = header.trim().split_once(' ').ok_or(AuthError::Malformed)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(AuthError::Malformed);
    }
    Ok(token)
}

/// Tower layer enforcing a [`ScopePolicy`] on `http::Request`s, in front of tonic's
/// routes. Refusals are trailers-only gRPC responses (HTTP 200 + `grpc-status`).
#[derive(Clone, Debug)]
pub struct AuthLayer {
    validator: Arc<JwtValidator>,
    policy: Arc<ScopePolicy>,
}

impl AuthLayer {
    /// HS256 validation with the configured secret, issuer and audience, and the
    /// JWKS file's keys when one is configured (read again while running).
    pub fn from_settings(s: &retention_config::AuthSettings, policy: ScopePolicy) -> Self {
        let validator = Arc::new(JwtValidator::hs256(
            s.jwt_secret.as_bytes(),
            &s.issuer,
            &s.audience,
        ));
        if !s.jwks_path.is_empty() {
            validator.watch_jwks(
                s.jwks_path.clone(),
                Duration::from_secs(s.jwks_reload_secs.max(1)),
            );
        }
        AuthLayer::new(validator, Arc::new(policy))
    }

    pub fn new(validator: Arc<JwtValidator>, policy: Arc<ScopePolicy>) -> Self {
        AuthLayer { validator, policy }
    }

    /// The policy in force (the server lists its services in reflection).
    pub fn policy(&self) -> &ScopePolicy {
        &self.policy
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`AuthLayer`] produces.
#[derive(Clone, Debug)]
pub struct AuthService<S> {
    inner: S,
    layer: AuthLayer,
}

impl<S, B, RB> tower::Service<http::Request<B>> for AuthService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    RB: Default + Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        // A header that is not visible ASCII is present but unusable: Malformed.
        let auth = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or(""));
        let decision = self
            .layer
            .policy
            .authorize(&self.layer.validator, req.uri().path(), auth);
        match decision {
            Ok(caller) => {
                if let Some(c) = caller {
                    req.extensions_mut().insert(c);
                }
                // `self.inner` was made ready by poll_ready; call that one and keep
                // a fresh clone for the next request (tower's contract).
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                Box::pin(async move { inner.call(req).await })
            }
            Err(status) => {
                tracing::debug!(path = req.uri().path(), code = ?status.code(), message = status.message(), "call refused");
                let response = status.into_http::<RB>();
                Box::pin(async move { Ok(response) })
            }
        }
    }
}

/// The authenticated caller of a handler's request (UNAUTHENTICATED if the auth
/// layer did not run, which means a wiring bug rather than a bad client).
pub fn caller<T>(req: &tonic::Request<T>) -> Result<&Caller, Status> {
    req.extensions()
        .get::<Caller>()
        .ok_or_else(|| Status::unauthenticated("no authenticated caller"))
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tower::{Layer, Service, ServiceExt};

    use super::*;

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
    fn layered() -> impl Service<
        http::Request<()>,
        Response = http::Response<String>,
        Error = Infallible,
        Future: Send,
    > + Clone {
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
}
