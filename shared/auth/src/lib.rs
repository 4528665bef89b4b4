//! Bearer-token authentication and per-method scopes for every service.
//!
//! A tower layer (not a tonic interceptor: interceptors do not see the method
//! path, DESIGN §7) validates `authorization: Bearer <JWT>`, checks the scopes the
//! called method requires, and hands the handler a [`Caller`]. Methods missing from
//! the [`ScopePolicy`] are refused, so a new RPC cannot ship unprotected by accident.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tonic::Status;

mod jwks;
mod policy;
mod tokens;

pub use jwks::JwksError;
pub use policy::{Decision, ScopePolicy};
pub use tokens::{AuthError, Caller, Claims, JwtValidator, TokenMinter, bearer_token};

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

/// The authenticated caller's subject, for audit records; "" when the call was
/// not authenticated (an open method).
pub fn subject<T>(req: &tonic::Request<T>) -> String {
    caller(req).map(|c| c.subject.clone()).unwrap_or_default()
}

#[cfg(test)]
mod tests;
