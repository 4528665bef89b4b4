//! Bearer tokens: the claims, their validation (HS256 with the shared secret, or
//! a JWKS key named by `kid`) with a cache of verified tokens, and minting.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tonic::Status;

use crate::jwks;
use crate::jwks::JwksError;

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
    pub(crate) verified: std::sync::Mutex<std::collections::HashMap<String, (Caller, i64)>>,
}

/// Verified tokens remembered at most; the map is emptied when full, which
/// costs one re-verification per live token.
pub(crate) const VERIFIED_CAPACITY: usize = 4_096;

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
