//! Per-caller rate limiting, inside the auth layer.

use std::collections::HashMap;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;

/// Per-caller rate limit: each authenticated subject has a token bucket of
/// `burst` calls refilled at `rate` a second; a call finding it empty gets
/// RESOURCE_EXHAUSTED with a RetryInfo saying when one call's worth is back.
/// Sits inside the auth layer, which put the [`Caller`] in the extensions;
/// unauthenticated paths (health, reflection) are not limited. The buckets live
/// in the replica, so N replicas admit up to N times the rate in total.
///
/// [`Caller`]: retention_auth::Caller
#[derive(Clone, Debug)]
pub struct RateLimitLayer {
    limiter: Option<std::sync::Arc<RateLimiter>>,
}

impl RateLimitLayer {
    /// No limit when `rate` is zero.
    pub fn new(rate: u32, burst: u32) -> Self {
        RateLimitLayer {
            limiter: (rate > 0).then(|| std::sync::Arc::new(RateLimiter::new(rate, burst))),
        }
    }
}

impl<S> tower::Layer<S> for RateLimitLayer {
    type Service = RateLimitService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RateLimitService {
            inner,
            limiter: self.limiter.clone(),
        }
    }
}

/// The service [`RateLimitLayer`] produces.
#[derive(Clone, Debug)]
pub struct RateLimitService<S> {
    inner: S,
    limiter: Option<std::sync::Arc<RateLimiter>>,
}

impl<S, B, RB> tower::Service<http::Request<B>> for RateLimitService<S>
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

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if let (Some(limiter), Some(caller)) = (
            &self.limiter,
            req.extensions().get::<retention_auth::Caller>(),
        ) && let Err(wait) = limiter.admit(&caller.subject, Instant::now())
        {
            tracing::debug!(subject = %caller.subject, path = req.uri().path(), "rate limited");
            let status = retention_errors::rate_limited(
                &format!(
                    "{} exceeded {} calls a second (bursts of {})",
                    caller.subject, limiter.rate, limiter.burst
                ),
                wait,
            );
            return Box::pin(async move { Ok(status.into_http()) });
        }
        Box::pin(self.inner.call(req))
    }
}

/// Token buckets by caller. Pure apart from the lock: time comes in as `now`.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Buckets kept before the full ones (callers idle long enough to be back at
/// `burst`, the same as a new bucket) are dropped, so a flood of distinct
/// subjects cannot grow the map without bound.
const MAX_CALLERS: usize = 10_000;

impl RateLimiter {
    pub fn new(rate: u32, burst: u32) -> Self {
        RateLimiter {
            rate: f64::from(rate.max(1)),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn refill(&self, b: &Bucket, now: Instant) -> f64 {
        let dt = now.saturating_duration_since(b.at).as_secs_f64();
        (b.tokens + dt * self.rate).min(self.burst)
    }

    /// Takes one call from `who`'s bucket, or says how long until one is back.
    pub fn admit(&self, who: &str, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = buckets.get_mut(who) {
            let tokens = self.refill(b, now);
            return if tokens >= 1.0 {
                *b = Bucket {
                    tokens: tokens - 1.0,
                    at: now,
                };
                Ok(())
            } else {
                *b = Bucket { tokens, at: now };
                Err(Duration::from_secs_f64((1.0 - tokens) / self.rate))
            };
        }
        // A new caller: its subject is allocated once, here, and its full bucket
        // pays for this call.
        if buckets.len() >= MAX_CALLERS {
            buckets.retain(|_, b| self.refill(b, now) < self.burst);
        }
        buckets.insert(
            who.to_string(),
            Bucket {
                tokens: self.burst - 1.0,
                at: now,
            },
        );
        Ok(())
    }

    #[cfg(test)]
    fn callers(&self) -> usize {
        self.buckets.lock().map(|b| b.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_gets_its_burst_then_its_rate() {
        let l = RateLimiter::new(10, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.admit("a", t0).is_ok());
        }
        let wait = l.admit("a", t0).unwrap_err();
        assert!(
            (wait.as_secs_f64() - 0.1).abs() < 1e-9,
            "one call back after 1/rate: {wait:?}"
        );
        // Another caller has its own bucket.
        assert!(l.admit("b", t0).is_ok());
        // After 0.25 s, two calls' worth has come back (10/s), not three.
        let t1 = t0 + Duration::from_millis(250);
        assert!(l.admit("a", t1).is_ok());
        assert!(l.admit("a", t1).is_ok());
        assert!(l.admit("a", t1).is_err());
        // Idle for long, the bucket is full again but never above the burst.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(l.admit("a", t2).is_ok());
        }
        assert!(l.admit("a", t2).is_err());
    }

    #[test]
    fn idle_callers_are_forgotten_when_the_table_is_full() {
        let l = RateLimiter::new(1_000, 1);
        let t0 = Instant::now();
        for i in 0..MAX_CALLERS {
            assert!(l.admit(&format!("c{i}"), t0).is_ok());
        }
        assert_eq!(l.callers(), MAX_CALLERS);
        // A second later every bucket is full again: a new caller clears them.
        assert!(l.admit("new", t0 + Duration::from_secs(1)).is_ok());
        assert_eq!(l.callers(), 1);
    }
}
