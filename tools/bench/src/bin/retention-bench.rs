//! `make bench`: runs every benchmark, prints each figure beside its target and
//! writes the table to `target/bench/results.md` (copied into BENCHMARKS.md).
//! `--smoke` runs them all at a tiny size and fails unless every target got a
//! figure: `make test` runs it, so a fresh clone is known to bench.

use clap::Parser;
use retention_bench::benches::{ALL, ON_REQUEST, Sizes, incomplete, run_all, scale};
use retention_bench::table::markdown;

#[derive(Parser, Debug)]
#[command(about = "Benchmarks of the retention suite against ceilings measured in the same run")]
struct Args {
    /// Which benchmarks, comma-separated: grpc, purchases, overhead, backpressure,
    /// pipeline, fit, scoring, launch (the default: all of these), and scale
    /// (only when named: 10 million customers, about 60 GB of disk).
    #[arg(long, env = "BENCH_ONLY", value_delimiter = ',', default_values_t = ALL.map(String::from))]
    only: Vec<String>,
    /// Tiny sizes; exit with an error unless every benchmark ran and every
    /// target has a figure (whether met or not).
    #[arg(long)]
    smoke: bool,
    /// Requests per closed-loop gRPC run.
    #[arg(long, env = "BENCH_REQUESTS", default_value_t = 100_000)]
    requests: u64,
    /// Customers read once each for the cache-miss run.
    #[arg(long, env = "BENCH_MISS", default_value_t = 20_000)]
    miss_customers: u64,
    /// Purchases streamed by RecordPurchases (and copied by COPY).
    #[arg(long, env = "BENCH_PURCHASES", default_value_t = 200_000)]
    purchases: usize,
    /// Seconds of sustained load for the event pipeline.
    #[arg(long, env = "BENCH_PIPELINE_SECS", default_value_t = 60)]
    pipeline_secs: u64,
    /// Customers in the scoring run.
    #[arg(long, env = "BENCH_CUSTOMERS", default_value_t = 1_000_000)]
    customers: usize,
    /// Pages the scoring run scores at once (`scoring.workers`).
    #[arg(long, env = "BENCH_SCORERS", default_value_t = 3)]
    scorers: usize,
    /// Candidates in the campaign launch.
    #[arg(long, env = "BENCH_CANDIDATES", default_value_t = 100_000)]
    candidates: usize,
    /// Customers loaded for the scale benchmark.
    #[arg(long, env = "BENCH_SCALE_CUSTOMERS", default_value_t = 10_000_000)]
    scale_customers: usize,
    /// Segmentation processes sharing the scale benchmark's scoring run.
    #[arg(long, env = "BENCH_SCALE_REPLICAS", default_value_t = 2)]
    scale_replicas: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let sizes = if args.smoke {
        Sizes::smoke()
    } else {
        Sizes {
            requests: args.requests,
            miss_customers: args.miss_customers,
            purchases: args.purchases,
            pipeline_secs: args.pipeline_secs,
            customers: args.customers,
            scorers: args.scorers,
            candidates: args.candidates,
            scale: scale::Options {
                customers: args.scale_customers,
                replicas: args.scale_replicas,
            },
        }
    };
    let names: Vec<&str> = if args.smoke {
        ALL.iter().chain(ON_REQUEST.iter()).copied().collect()
    } else {
        args.only.iter().map(|s| s.trim()).collect()
    };
    let rows = run_all(&names, &sizes).await?;
    let table = markdown(&rows);
    println!("\n{table}");
    if args.smoke {
        let problems = incomplete(&rows);
        if !problems.is_empty() {
            anyhow::bail!(
                "the benchmark report is incomplete:\n{}",
                problems.join("\n")
            );
        }
        println!("bench smoke: every benchmark ran and every target has a figure");
        return Ok(());
    }
    std::fs::create_dir_all("target/bench")?;
    std::fs::write("target/bench/results.md", &table)?;
    if rows.iter().any(|r| r.met == Some(false)) {
        println!("some targets are not met: see BENCHMARKS.md for what limits them");
    }
    Ok(())
}
