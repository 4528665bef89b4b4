//! One module per benchmark; each returns its rows for the table.

pub mod backpressure;
pub mod fit;
pub mod grpc;
pub mod launch;
pub mod overhead;
pub mod pipeline;
pub mod purchases;
pub mod scale;
pub mod scoring;

use retention_config::Settings;
use retention_server::host::Service;
use retention_testkit::{Backend, TestService};

use crate::table::Row;

/// The benchmark names, in the order `make bench` runs them.
pub const ALL: [&str; 8] = [
    "grpc",
    "purchases",
    "overhead",
    "backpressure",
    "pipeline",
    "fit",
    "scoring",
    "launch",
];

/// Benchmarks only run when named (`BENCH_ONLY=scale`): hours of machine time
/// and tens of gigabytes; the smoke run still runs them at a tiny size.
pub const ON_REQUEST: [&str; 1] = ["scale"];

/// The start of each row that carries one of the targets; a complete run
/// has every one of them.
pub const TARGETS: [&str; 15] = [
    "GetCustomer, Redis cache hit: throughput",
    "GetCustomer, cache hit at half of peak: p99",
    "GetCustomer, cache miss",
    "RecordPurchases",
    "backpressure: RecordPurchases",
    "backpressure: segmentation stopped",
    "backpressure: segmentation started afterwards",
    "event pipeline",
    "BG/NBD fit, CDNOW: ours",
    "RunScoring, ",
    "RunScoring: peak memory",
    "LaunchCampaign",
    "metrics: GetCustomer cache hit",
    "metrics: RecordPurchases",
    "audit rows: masked GetCustomer",
];

/// How much work each benchmark does.
#[derive(Debug, Clone)]
pub struct Sizes {
    /// Requests per closed-loop gRPC run.
    pub requests: u64,
    /// Customers read once each for the cache-miss run.
    pub miss_customers: u64,
    /// Purchases streamed by RecordPurchases (and copied by COPY).
    pub purchases: usize,
    /// Seconds of sustained load for the event pipeline.
    pub pipeline_secs: u64,
    /// Customers in the scoring run.
    pub customers: usize,
    /// Pages the scoring run's replica scores at once (`scoring.workers`).
    pub scorers: usize,
    /// Candidates in the campaign launch.
    pub candidates: usize,
    /// The `scale` benchmark's population and segmentation replicas.
    pub scale: scale::Options,
}

impl Sizes {
    /// Small enough for a debug build in a minute or two: checks that every
    /// benchmark runs and reports, not how fast.
    pub fn smoke() -> Sizes {
        Sizes {
            requests: 2_000,
            miss_customers: 300,
            purchases: 4_000,
            pipeline_secs: 2,
            customers: 2_000,
            scorers: 3,
            candidates: 500,
            scale: scale::Options {
                customers: 3_000,
                replicas: 2,
            },
        }
    }
}

/// Runs the named benchmarks. One that fails is reported as a failed row and the
/// others still run.
pub async fn run_all(names: &[&str], sizes: &Sizes) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for name in names {
        println!("== {name}");
        let got = match *name {
            "grpc" => {
                grpc::run(&grpc::Options {
                    requests: sizes.requests,
                    miss_customers: sizes.miss_customers,
                })
                .await
            }
            "purchases" => purchases::run(sizes.purchases).await,
            // Ten imports: each a tenth of `purchases`.
            "overhead" => overhead::run(sizes.requests, (sizes.purchases / 10).max(1_000)).await,
            "backpressure" => backpressure::run(sizes.purchases).await,
            "pipeline" => pipeline::run(sizes.pipeline_secs).await,
            "fit" => fit::run(),
            "scoring" => scoring::run(sizes.customers, sizes.scorers).await,
            "launch" => launch::run(sizes.candidates).await,
            "scale" => scale::run(&sizes.scale).await,
            other => anyhow::bail!("unknown benchmark {other}"),
        };
        match got {
            Ok(r) => rows.extend(r),
            Err(e) => rows.push(Row::new(*name, format!("failed: {e:#}")).target("runs", false)),
        }
    }
    Ok(rows)
}

/// What keeps `rows` from being a complete report: failed benchmarks and
/// targets without a row. Empty when complete.
pub fn incomplete(rows: &[Row]) -> Vec<String> {
    let mut problems: Vec<String> = rows
        .iter()
        .filter(|r| r.figure.starts_with("failed:"))
        .map(|r| format!("{}: {}", r.benchmark, r.figure))
        .collect();
    for t in TARGETS {
        if !rows
            .iter()
            .any(|r| r.benchmark.starts_with(t) && r.met.is_some())
        {
            problems.push(format!("no figure for the target {t:?}"));
        }
    }
    problems
}

/// A service on PostgreSQL and Redis (production mode) on a random port, in this
/// process; `namespace` ties services to the same Redis streams.
pub async fn spawn<S: Service>(
    namespace: &str,
    tweak: impl FnOnce(&mut Settings),
) -> anyhow::Result<TestService> {
    let namespace = namespace.to_string();
    let tweak = move |s: &mut Settings| {
        s.redis.namespace = namespace;
        // Benchmarks measure the service, not the logging.
        s.telemetry.log_filter = "error".into();
        s.database.max_connections = 8;
        // One load generator is one caller: the benchmarks measure capacity,
        // which the per-caller limit would cap.
        s.server.rate_limit_per_sec = 0;
        tweak(s);
    };
    TestService::start::<S>(Backend::Postgres, true, tweak, None).await
}

/// Starts a scoring run over gRPC and waits until it has succeeded.
pub async fn run_scoring(
    seg: &mut retention_proto::segmentation::segmentation_service_client::SegmentationServiceClient<
        tonic::transport::Channel,
    >,
    token: &str,
) -> anyhow::Result<()> {
    use retention_proto::segmentation as spb;
    use retention_testkit::with_token;
    let run = seg
        .run_scoring(with_token(spb::RunScoringRequest::default(), token))
        .await?
        .into_inner();
    loop {
        let r = seg
            .get_scoring_run(with_token(
                spb::GetScoringRunRequest {
                    name: run.name.clone(),
                },
                token,
            ))
            .await?
            .into_inner();
        if r.state == spb::ScoringRunState::Succeeded as i32 {
            return Ok(());
        }
        anyhow::ensure!(
            r.state != spb::ScoringRunState::Failed as i32,
            "scoring run failed: {}",
            r.error
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Waits until the service's relay has published everything in its outbox.
pub async fn outbox_drained(service: &TestService) -> anyhow::Result<()> {
    settled(
        service,
        "SELECT count(*) FROM outbox_events WHERE published_at IS NULL",
        |n| n == 0,
        "events unpublished",
    )
    .await
}

/// Waits (up to two minutes) until what `sql` counts is `done`: background work a
/// measurement should not pay for has finished.
pub async fn settled(
    service: &TestService,
    sql: &str,
    done: impl Fn(i64) -> bool,
    what: &str,
) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let n = service.count(sql).await?;
        if done(n) {
            return Ok(());
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "{what}: still {n} after 120 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The address a load generator connects to.
pub fn endpoint(s: &TestService) -> anyhow::Result<String> {
    s.service
        .as_ref()
        .map(|s| s.endpoint())
        .ok_or_else(|| anyhow::anyhow!("service not running"))
}

/// `n` with thousands separators, for the table.
pub fn thousands(n: f64) -> String {
    let s = format!("{:.0}", n.max(0.0));
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_is_incomplete_while_a_target_is_missing_or_a_benchmark_failed() {
        let mut rows: Vec<Row> = TARGETS
            .iter()
            .map(|t| Row::new(format!("{t} (some detail)"), "1/s").target("≥ 1/s", true))
            .collect();
        assert!(incomplete(&rows).is_empty());
        rows.push(Row::new("grpc", "failed: connection refused").target("runs", false));
        rows.retain(|r| !r.benchmark.starts_with("LaunchCampaign"));
        let problems = incomplete(&rows);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("connection refused"));
        assert!(problems[1].contains("LaunchCampaign"));
        // A figure for orientation does not stand in for a target.
        rows.push(Row::new("LaunchCampaign over 5 candidates", "1 s"));
        assert_eq!(incomplete(&rows).len(), 2);
    }

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1000.0), "1,000");
    }
}

/// Pairs of rounds per comparison (ceiling and subject alternating).
pub const ROUNDS: usize = 5;

/// (ceiling or without, subject or with) throughputs of interleaved rounds:
/// each pair ran back to back, so drift of the machine falls on both sides.
#[derive(Default)]
pub struct Pairs(Vec<(f64, f64)>);

impl Pairs {
    pub fn push(&mut self, without: f64, with: f64) {
        self.0.push((without, with));
    }

    pub fn ratios(&self) -> Vec<f64> {
        let mut r: Vec<f64> = self.0.iter().map(|(off, on)| on / off).collect();
        r.sort_by(f64::total_cmp);
        r
    }

    pub fn median(&self) -> f64 {
        let r = self.ratios();
        match r.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => r[n / 2],
            n => (r[n / 2 - 1] + r[n / 2]) / 2.0,
        }
    }

    /// The mean throughput of the subject (`true`) or of the ceiling.
    pub fn mean(&self, subject: bool) -> f64 {
        let sum: f64 = self.0.iter().map(|p| if subject { p.1 } else { p.0 }).sum();
        sum / self.0.len().max(1) as f64
    }

    /// `0.93 × <ceiling> (median of 5 interleaved pairs, 0.90–0.95): <subject>
    /// 1,200/s, <ceiling> 1,290/s` (means over the rounds).
    pub fn figure(&self, subject: &str, ceiling: &str) -> String {
        let r = self.ratios();
        format!(
            "{:.3} × {ceiling} (median of {} interleaved pairs, {:.3}–{:.3}): {subject} {}/s, {ceiling} {}/s",
            self.median(),
            r.len(),
            r.first().copied().unwrap_or(f64::NAN),
            r.last().copied().unwrap_or(f64::NAN),
            thousands(self.mean(true)),
            thousands(self.mean(false)),
        )
    }
}
