//! Which scopes each method path needs; unlisted paths are refused.

use std::collections::{BTreeMap, BTreeSet};

use tonic::Status;

use crate::tokens::{Caller, JwtValidator, bearer_token};

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

    /// Each of `methods` of the gRPC service `service` (its full name) needs every
    /// one of `scopes`.
    pub fn require_all(mut self, service: &str, methods: &[&str], scopes: &[&str]) -> Self {
        for m in methods {
            self = self.require(&format!("/{service}/{m}"), scopes);
        }
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
