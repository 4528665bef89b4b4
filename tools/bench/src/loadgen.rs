//! A closed- or open-loop gRPC load generator.
//!
//! Closed loop (no rate): `concurrency` workers each send the next request as soon
//! as the previous one answers, which finds the peak throughput. Open loop (a
//! rate): request `i` is due at `start + i / rate` and its latency counts from
//! that due time, not from when a worker got to it, so a stalled server shows up
//! in the tail instead of silently slowing the generator down (coordinated
//! omission). A worker that was idle and woke up to one timer tick late counts
//! from its wake-up: that tick is the generator's, not the server's.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

/// The resolution of tokio's timer wheel.
const TIMER_TICK: Duration = Duration::from_millis(1);

/// An open-loop request sent this much after its due time counts as late.
pub const LATE_SEND: Duration = Duration::from_millis(10);

/// How much load, and how it is shaped.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Stop after this many requests (0: no count limit).
    pub requests: u64,
    /// Stop after this long (None: no time limit).
    pub duration: Option<Duration>,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Requests per second for an open loop; None runs closed-loop flat out.
    pub rate: Option<f64>,
}

impl LoadSpec {
    pub fn count(requests: u64, concurrency: usize) -> LoadSpec {
        LoadSpec {
            requests,
            duration: None,
            concurrency,
            rate: None,
        }
    }

    pub fn at_rate(mut self, rate: f64) -> LoadSpec {
        self.rate = Some(rate);
        self
    }
}

/// What a load run measured.
#[derive(Debug, Clone)]
pub struct Report {
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    /// Latencies of the successful calls in microseconds, sorted.
    latencies_us: Vec<u64>,
    /// The open loop's requested rate.
    pub rate: Option<f64>,
    /// Open loop: requests sent more than [`LATE_SEND`] after their due time
    /// because every worker was still busy.
    pub late_sends: u64,
}

impl Report {
    pub fn throughput(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Whether an open loop kept its schedule: at least 95 % of the requested
    /// rate achieved and under 1 % of the requests sent late. A run that did
    /// not measured its own queue as much as the server: its tail means little.
    /// Always true for a closed loop.
    pub fn kept_schedule(&self) -> bool {
        let Some(rate) = self.rate else {
            return true;
        };
        let sent = (self.ok + self.errors).max(1);
        self.throughput() >= 0.95 * rate && (self.late_sends as f64) < 0.01 * sent as f64
    }

    /// An open loop's tail as a figure, or why it has none.
    pub fn tail(&self) -> String {
        let achieved = format!(
            "achieved {:.0}/s of {:.0}/s",
            self.throughput(),
            self.rate.unwrap_or(0.0)
        );
        if self.kept_schedule() {
            format!(
                "p99 {} (p50 {}, p99.9 {}), {achieved}",
                ms(self.p99()),
                ms(self.p50()),
                ms(self.p999())
            )
        } else {
            format!(
                "schedule not kept ({achieved}, {} of {} requests sent over {} late): no p99",
                self.late_sends,
                self.ok + self.errors,
                ms(LATE_SEND)
            )
        }
    }

    /// The `q` quantile (0..=1) of successful-call latency.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.latencies_us.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((q * self.latencies_us.len() as f64).ceil() as usize)
            .clamp(1, self.latencies_us.len());
        Duration::from_micros(self.latencies_us[rank - 1])
    }

    pub fn p50(&self) -> Duration {
        self.quantile(0.50)
    }

    pub fn p99(&self) -> Duration {
        self.quantile(0.99)
    }

    pub fn p999(&self) -> Duration {
        self.quantile(0.999)
    }

    pub fn summary(&self) -> String {
        format!(
            "{} ok, {} errors in {:.2} s: {:.0}/s, p50 {}, p99 {}, p99.9 {}",
            self.ok,
            self.errors,
            self.elapsed.as_secs_f64(),
            self.throughput(),
            ms(self.p50()),
            ms(self.p99()),
            ms(self.p999()),
        )
    }
}

/// A duration in milliseconds with two decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// `connections` separate HTTP/2 connections to `addr` (a channel is one
/// connection; requests are spread over them by worker).
pub async fn connect(addr: &str, connections: usize) -> anyhow::Result<Vec<Channel>> {
    let endpoint = Endpoint::from_shared(addr.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(60))
        .tcp_nodelay(true);
    let mut out = Vec::with_capacity(connections.max(1));
    for _ in 0..connections.max(1) {
        out.push(endpoint.connect().await?);
    }
    Ok(out)
}

/// Runs `call(i, worker)` under `spec`; `i` numbers the requests from 0, `worker`
/// (0..concurrency) lets the caller pick a connection.
pub async fn run<F, Fut>(spec: &LoadSpec, call: F) -> Report
where
    F: Fn(u64, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), tonic::Status>> + Send,
{
    let call = Arc::new(call);
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = spec.duration.map(|d| start + d);
    let mut workers = Vec::with_capacity(spec.concurrency);
    for w in 0..spec.concurrency.max(1) {
        let (call, next, spec) = (call.clone(), next.clone(), spec.clone());
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let (mut errors, mut first_error) = (0u64, None);
            let mut late_sends = 0u64;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if spec.requests > 0 && i >= spec.requests {
                    break;
                }
                let (due, from) = match spec.rate {
                    Some(rate) => {
                        let due = start + Duration::from_secs_f64(i as f64 / rate);
                        let now = Instant::now();
                        if now < due {
                            tokio::time::sleep_until(due).await;
                            // Tokio's timer fires on a 1 ms tick: up to one tick of
                            // lateness is the generator's own timer, not the
                            // server's. Anything beyond still counts.
                            (due, Instant::now().min(due + TIMER_TICK))
                        } else {
                            // Every worker was busy at the due time: the schedule
                            // slips, and the wait counts in the latency.
                            if now - due > LATE_SEND {
                                late_sends += 1;
                            }
                            (due, due)
                        }
                    }
                    None => {
                        let now = Instant::now();
                        (now, now)
                    }
                };
                if deadline.is_some_and(|d| due >= d) {
                    break;
                }
                match call(i, w).await {
                    Ok(()) => lat.push(from.elapsed().as_micros() as u64),
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| e.to_string());
                    }
                }
            }
            (lat, errors, first_error, late_sends)
        }));
    }
    let mut report = Report {
        ok: 0,
        errors: 0,
        first_error: None,
        elapsed: Duration::ZERO,
        latencies_us: Vec::new(),
        rate: spec.rate,
        late_sends: 0,
    };
    for w in workers {
        match w.await {
            Ok((lat, errors, first_error, late_sends)) => {
                report.latencies_us.extend(lat);
                report.late_sends += late_sends;
                report.errors += errors;
                if report.first_error.is_none() {
                    report.first_error = first_error;
                }
            }
            Err(e) => {
                report.errors += 1;
                report.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    report.elapsed = start.elapsed();
    report.ok = report.latencies_us.len() as u64;
    report.latencies_us.sort_unstable();
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_every_request_once_and_orders_the_quantiles() {
        let seen = Arc::new(AtomicU64::new(0));
        let s = seen.clone();
        let report = run(&LoadSpec::count(500, 8), move |i, _| {
            let s = s.clone();
            async move {
                s.fetch_add(1, Ordering::Relaxed);
                if i % 100 == 7 {
                    return Err(tonic::Status::unavailable("down"));
                }
                tokio::time::sleep(Duration::from_micros(50 + i % 3 * 500)).await;
                Ok(())
            }
        })
        .await;
        assert_eq!(seen.load(Ordering::Relaxed), 500);
        assert_eq!((report.ok, report.errors), (495, 5));
        assert!(report.first_error.as_deref().unwrap().contains("down"));
        assert!(report.p50() <= report.p99() && report.p99() <= report.p999());
        assert!(report.p999() >= Duration::from_micros(1000));
    }

    #[tokio::test]
    async fn an_open_loop_counts_latency_from_the_due_time() {
        // One worker, 100 requests/s, each call takes at least 20 ms: the worker
        // falls behind, and the lag shows up as latency. Request k is due at
        // 10k ms but cannot finish before 20(k+1) ms, so the last one waits at
        // least 90 ms longer than the first, however slow the machine is.
        let report = run(&LoadSpec::count(10, 1).at_rate(100.0), |_, _| async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(())
        })
        .await;
        assert_eq!(report.ok, 10);
        assert!(
            report.quantile(1.0) >= report.quantile(0.0) + Duration::from_millis(85),
            "{report:?}"
        );
    }
}
