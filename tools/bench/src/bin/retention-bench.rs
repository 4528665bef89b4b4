//! `make bench`: runs every benchmark, prints each figure beside its target and
//! writes the table to `target/bench/results.md` (copied into BENCHMARKS.md).

use clap::Parser;
use retention_bench::benches::{fit, grpc, launch, pipeline, purchases, scoring};
use retention_bench::table::{Row, markdown};

#[derive(Parser, Debug)]
#[command(about = "Benchmarks of the retention suite against ceilings measured in the same run")]
struct Args {
    /// Which benchmarks, comma-separated: grpc, purchases, pipeline, fit, scoring, launch.
    #[arg(
        long,
        env = "BENCH_ONLY",
        default_value = "grpc,purchases,pipeline,fit,scoring,launch"
    )]
    only: String,
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
    /// Candidates in the campaign launch.
    #[arg(long, env = "BENCH_CANDIDATES", default_value_t = 100_000)]
    candidates: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let wanted: Vec<&str> = args.only.split(',').map(str::trim).collect();
    let mut rows: Vec<Row> = Vec::new();
    for name in &wanted {
        println!("== {name}");
        let got = match *name {
            "grpc" => {
                grpc::run(&grpc::Options {
                    requests: args.requests,
                    miss_customers: args.miss_customers,
                })
                .await
            }
            "purchases" => purchases::run(args.purchases).await,
            "pipeline" => pipeline::run(args.pipeline_secs).await,
            "fit" => fit::run(),
            "scoring" => scoring::run(args.customers).await,
            "launch" => launch::run(args.candidates).await,
            other => anyhow::bail!("unknown benchmark {other}"),
        };
        match got {
            Ok(r) => rows.extend(r),
            // One failing benchmark is reported, the others still run.
            Err(e) => rows.push(Row::new(*name, format!("failed: {e:#}")).target("runs", false)),
        }
    }
    let table = markdown(&rows);
    println!("\n{table}");
    std::fs::create_dir_all("target/bench")?;
    std::fs::write("target/bench/results.md", &table)?;
    if rows.iter().any(|r| r.met == Some(false)) {
        println!("some targets are not met: see BENCHMARKS.md for what limits them");
    }
    Ok(())
}
