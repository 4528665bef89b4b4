//! A command-line load generator for the suite's unary calls and the echo
//! ceiling, e.g. against a running `make run`:
//!
//! ```text
//! loadgen --addr http://127.0.0.1:50051 --target get-customer \
//!     --name customers/... --token $TOKEN --duration-secs 10 --concurrency 64
//! ```

use std::time::Duration;

use clap::{Parser, ValueEnum};
use retention_bench::echo::{EchoServiceClient, pb::EchoRequest};
use retention_bench::loadgen::{self, LoadSpec};
use retention_proto::profile as ppb;
use retention_proto::profile::customer_profile_service_client::CustomerProfileServiceClient;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Target {
    /// The bare echo server (`echo-server`).
    Echo,
    /// CustomerProfileService.GetCustomer of one customer.
    GetCustomer,
}

#[derive(Parser, Debug)]
#[command(about = "Unary gRPC load: throughput and p50 / p99 / p99.9 latency")]
struct Args {
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    addr: String,
    #[arg(long, value_enum, default_value = "echo")]
    target: Target,
    /// Stop after this many requests (0: run for --duration-secs).
    #[arg(long, default_value_t = 0)]
    requests: u64,
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Requests per second (open loop); omitted: as fast as answers come.
    #[arg(long)]
    rate: Option<f64>,
    /// Reply size for the echo target.
    #[arg(long, default_value_t = 400)]
    reply_bytes: u32,
    /// Customer to read for get-customer ("customers/{id}").
    #[arg(long, default_value = "")]
    name: String,
    /// Bearer token for the suite's services.
    #[arg(long, env = "RETENTION_TOKEN", default_value = "")]
    token: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let spec = LoadSpec {
        requests: a.requests,
        duration: (a.requests == 0).then(|| Duration::from_secs(a.duration_secs)),
        concurrency: a.concurrency,
        rate: a.rate,
    };
    let channels = loadgen::connect(&a.addr, a.connections).await?;
    let report = match a.target {
        Target::Echo => {
            let n = a.reply_bytes;
            loadgen::run(&spec, move |_, w| {
                let mut c = EchoServiceClient::new(channels[w % channels.len()].clone());
                async move {
                    c.echo(EchoRequest {
                        reply_bytes: n,
                        payload: Vec::new(),
                    })
                    .await
                    .map(|_| ())
                }
            })
            .await
        }
        Target::GetCustomer => {
            let (name, token) = (a.name.clone(), a.token.clone());
            loadgen::run(&spec, move |_, w| {
                let mut c = CustomerProfileServiceClient::new(channels[w % channels.len()].clone());
                let mut req = tonic::Request::new(ppb::GetCustomerRequest { name: name.clone() });
                if let Ok(v) = format!("Bearer {token}").parse() {
                    req.metadata_mut().insert("authorization", v);
                }
                async move { c.get_customer(req).await.map(|_| ()) }
            })
            .await
        }
    };
    println!("{}", report.summary());
    if let Some(e) = report.first_error {
        println!("first error: {e}");
    }
    Ok(())
}
