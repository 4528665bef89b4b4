//! `retention-interactions`: configuration, telemetry, serve until SIGTERM (`migrate`: apply the migrations and exit).

use anyhow::Context;
use retention_config::Settings;
use retention_interactions::{DEFAULT_PORT, SERVICE_NAME};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load(SERVICE_NAME, DEFAULT_PORT).context("loading configuration")?;
    let _telemetry = retention_telemetry::init(&retention_telemetry::TelemetryOptions {
        service_name: format!("retention-{SERVICE_NAME}"),
        otlp_endpoint: Some(settings.telemetry.otlp_endpoint.clone()),
        log_filter: settings.telemetry.log_filter.clone(),
        log_format: settings.telemetry.log_format.clone(),
    })?;
    if std::env::args().nth(1).as_deref() == Some("migrate") {
        retention_db::migrate_only::<retention_interactions::store::Migrator>(&settings.database)
            .await
            .context("applying migrations")?;
        tracing::info!("migrations applied");
        return Ok(());
    }
    let listener = tokio::net::TcpListener::bind(settings.listen_addr())
        .await
        .with_context(|| format!("binding {}", settings.listen_addr()))?;
    tracing::info!(addr = %listener.local_addr()?, "retention-interactions listening");
    retention_interactions::run(settings, listener, retention_server::shutdown_signal()).await?;
    Ok(())
}
