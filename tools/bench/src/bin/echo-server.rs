//! The echo ceiling as its own process: `echo-server [ADDR]` (default
//! 127.0.0.1:50090), for `loadgen --target echo`.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:50090".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("echo server on {}", listener.local_addr()?);
    retention_bench::echo::serve(listener, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
