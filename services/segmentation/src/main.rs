//! `retention-segmentation`: configuration, telemetry, serve until SIGTERM
//! (`migrate`: apply the migrations and exit); all of it is the shared host's.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    retention_server::host::main::<retention_segmentation::Segmentation>().await?;
    Ok(())
}
