//! One module per benchmark; each returns its rows for the table.

pub mod fit;
pub mod grpc;
pub mod launch;
pub mod pipeline;
pub mod purchases;
pub mod scoring;

use retention_config::Settings;
use retention_testkit::{Backend, TestService};

/// A service on PostgreSQL and Redis (production mode) on a random port, in this
/// process; `namespace` ties services to the same Redis streams.
pub async fn spawn<F, Fut, E>(
    name: &str,
    namespace: &str,
    tweak: impl FnOnce(&mut Settings),
    run: F,
) -> anyhow::Result<TestService>
where
    F: FnOnce(Settings, tokio::net::TcpListener, futures::future::BoxFuture<'static, ()>) -> Fut
        + Send
        + 'static,
    Fut: std::future::Future<Output = Result<(), E>> + Send + 'static,
    E: Into<anyhow::Error>,
{
    let namespace = namespace.to_string();
    TestService::spawn(
        name,
        Backend::Postgres,
        true,
        move |s| {
            s.redis.namespace = namespace;
            // Benchmarks measure the service, not the logging.
            s.telemetry.log_filter = "error".into();
            s.database.max_connections = 8;
            tweak(s);
        },
        move |s, l, stop| {
            run(
                s,
                l,
                Box::pin(async move {
                    let _ = stop.await;
                }),
            )
        },
    )
    .await
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
    #[test]
    fn thousands_are_separated() {
        assert_eq!(super::thousands(1234567.4), "1,234,567");
        assert_eq!(super::thousands(999.0), "999");
        assert_eq!(super::thousands(1000.0), "1,000");
    }
}
