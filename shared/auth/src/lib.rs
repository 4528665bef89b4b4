//! Bearer-token authentication and per-method scopes for every service.
//!
//! A tower layer (not a tonic interceptor: interceptors do not see the method
//! path, DESIGN §7) validates `authorization: Bearer <JWT>`, checks the scopes the
//! called method requires, and hands the handler a [`Caller`].

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tonic::Status;

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
    pub fn has(&self, scope: &str) -> bool {
        self.scopes.contains(scope)
    }
}

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

/// Validates HS256 tokens for one issuer and audience.
pub struct JwtValidator {
    key: DecodingKey,
    validation: Validation,
}

impl JwtValidator {
    pub fn hs256(secret: &[u8], issuer: &str, audience: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.leeway = 30;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        JwtValidator {
            key: DecodingKey::from_secret(secret),
            validation,
        }
    }

    pub fn validate(&self, token: &str) -> Result<Caller, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(
            |e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
                _ => AuthError::Invalid(e.to_string()),
            },
        )?;
        Ok(Caller {
            subject: data.claims.sub,
            scopes: data
                .claims
                .scope
                .split_whitespace()
                .map(String::from)
                .collect(),
        })
    }
}

/// Mints tokens (tests, the CLI and the development banner).
pub struct TokenMinter {
    key: EncodingKey,
    issuer: String,
    audience: String,
}

impl TokenMinter {
    pub fn hs256(secret: &[u8], issuer: &str, audience: &str) -> Self {
        TokenMinter {
            key: EncodingKey::from_secret(secret),
            issuer: issuer.into(),
            audience: audience.into(),
        }
    }

    pub fn mint(&self, subject: &str, scopes: &[&str], ttl: Duration) -> String {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: subject.into(),
            scope: scopes.join(" "),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: now,
            exp: now + ttl.as_secs() as i64,
        };
        // Encoding HS256 with a valid key cannot fail; an empty token is refused
        // downstream anyway.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.key).unwrap_or_default()
    }
}

/// What a method path requires.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision<'a> {
    Open,
    Scopes(&'a [String]),
    /// Not in the policy: refused (deny by default).
    Unknown,
}

/// Method path -> required scopes. Health and reflection are open.
#[derive(Debug, Clone)]
pub struct ScopePolicy {
    methods: HashMap<String, Vec<String>>,
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
            methods: HashMap::new(),
            open_prefixes: vec![
                "/grpc.health.v1.Health/".into(),
                "/grpc.reflection.v1.ServerReflection/".into(),
                "/grpc.reflection.v1alpha.ServerReflection/".into(),
            ],
        }
    }

    pub fn require(mut self, path: &str, scopes: &[&str]) -> Self {
        self.methods
            .insert(path.into(), scopes.iter().map(|s| s.to_string()).collect());
        self
    }

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

    /// Every protected method and its scopes, sorted (for docs and scope tests).
    pub fn methods(&self) -> impl Iterator<Item = (&str, &[String])> {
        let mut v: Vec<_> = self
            .methods
            .iter()
            .map(|(k, s)| (k.as_str(), s.as_slice()))
            .collect();
        v.sort();
        v.into_iter()
    }

    /// The check itself, separate from transport so it is unit-testable.
    pub fn authorize(
        &self,
        validator: &JwtValidator,
        path: &str,
        authorization: Option<&str>,
    ) -> Result<Option<Caller>, Status> {
        let required = match self.required(path) {
            Decision::Open => return Ok(None),
            Decision::Unknown => {
                return Err(Status::permission_denied(format!(
                    "method {path} is not allowed"
                )));
            }
            Decision::Scopes(s) => s,
        };
        let header =
            authorization.ok_or_else(|| Status::unauthenticated(AuthError::Missing.to_string()))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Status::unauthenticated(AuthError::Malformed.to_string()))?;
        let caller = validator
            .validate(token)
            .map_err(|e| Status::unauthenticated(e.to_string()))?;
        let missing: Vec<&str> = required
            .iter()
            .filter(|s| !caller.has(s))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(Status::permission_denied(format!(
                "{path} requires scope {}",
                missing.join(" ")
            )));
        }
        Ok(Some(caller))
    }
}

/// Tower layer enforcing a [`ScopePolicy`].
#[derive(Clone)]
pub struct AuthLayer {
    validator: Arc<JwtValidator>,
    policy: Arc<ScopePolicy>,
}

impl AuthLayer {
    pub fn new(validator: Arc<JwtValidator>, policy: Arc<ScopePolicy>) -> Self {
        AuthLayer { validator, policy }
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

#[derive(Clone)]
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
        let auth = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let decision = self
            .layer
            .policy
            .authorize(&self.layer.validator, req.uri().path(), auth);
        match decision {
            Ok(caller) => {
                if let Some(c) = caller {
                    req.extensions_mut().insert(c);
                }
                // The clone is ready-polled per tower's contract: swap it in.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                Box::pin(async move { inner.call(req).await })
            }
            Err(status) => {
                let response = status.into_http::<RB>();
                Box::pin(async move { Ok(response) })
            }
        }
    }
}

/// The authenticated caller of a handler's request.
pub fn caller<T>(req: &tonic::Request<T>) -> Result<&Caller, Status> {
    req.extensions()
        .get::<Caller>()
        .ok_or_else(|| Status::unauthenticated("no authenticated caller"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"a-test-secret-of-some-length";

    fn validator() -> JwtValidator {
        JwtValidator::hs256(SECRET, "iss", "aud")
    }

    fn policy() -> ScopePolicy {
        ScopePolicy::new().require("/p.S/Get", &["p.read"])
    }

    #[test]
    fn valid_tokens_yield_the_caller() {
        let t = TokenMinter::hs256(SECRET, "iss", "aud").mint(
            "u1",
            &["p.read", "pii.read"],
            Duration::from_secs(60),
        );
        let c = validator().validate(&t).unwrap();
        assert_eq!(c.subject, "u1");
        assert!(c.has("p.read") && c.has("pii.read") && !c.has("p.write"));
    }

    #[test]
    fn wrong_issuer_audience_key_expiry_and_garbage_are_refused() {
        let v = validator();
        let ttl = Duration::from_secs(60);
        assert!(
            v.validate(&TokenMinter::hs256(SECRET, "other", "aud").mint("u", &[], ttl))
                .is_err()
        );
        assert!(
            v.validate(&TokenMinter::hs256(SECRET, "iss", "other").mint("u", &[], ttl))
                .is_err()
        );
        assert!(
            v.validate(
                &TokenMinter::hs256(b"another-secret-entirely", "iss", "aud").mint("u", &[], ttl)
            )
            .is_err()
        );
        assert!(v.validate("garbage").is_err());
        let now = chrono::Utc::now().timestamp();
        let expired = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &Claims {
                sub: "u".into(),
                scope: String::new(),
                iss: "iss".into(),
                aud: "aud".into(),
                iat: now - 7200,
                exp: now - 3600,
            },
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert_eq!(v.validate(&expired), Err(AuthError::Expired));
    }

    #[test]
    fn policy_decisions() {
        let p = policy();
        assert_eq!(p.required("/grpc.health.v1.Health/Check"), Decision::Open);
        assert!(matches!(p.required("/p.S/Get"), Decision::Scopes(s) if s == ["p.read"]));
        assert_eq!(p.required("/p.S/Unlisted"), Decision::Unknown);
    }

    #[test]
    fn authorize_maps_to_grpc_codes() {
        let (p, v) = (policy(), validator());
        let minter = TokenMinter::hs256(SECRET, "iss", "aud");
        let ttl = Duration::from_secs(60);
        assert_eq!(
            p.authorize(&v, "/p.S/Get", None).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            p.authorize(&v, "/p.S/Get", Some("Basic x"))
                .unwrap_err()
                .code(),
            tonic::Code::Unauthenticated
        );
        let weak = format!("Bearer {}", minter.mint("u", &["p.write"], ttl));
        let err = p.authorize(&v, "/p.S/Get", Some(&weak)).unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
        assert!(err.message().contains("p.read"));
        let good = format!("Bearer {}", minter.mint("u", &["p.read"], ttl));
        assert_eq!(
            p.authorize(&v, "/p.S/Get", Some(&good))
                .unwrap()
                .unwrap()
                .subject,
            "u"
        );
        assert_eq!(
            p.authorize(&v, "/p.S/Nope", Some(&good))
                .unwrap_err()
                .code(),
            tonic::Code::PermissionDenied
        );
        assert!(
            p.authorize(&v, "/grpc.health.v1.Health/Check", None)
                .unwrap()
                .is_none()
        );
    }
}
