//! `retention-profile`: loads configuration, installs telemetry, serves until
//! SIGTERM (`migrate`: apply the migrations and exit). All logic lives in the library.

use anyhow::Context;
use retention_config::Settings;
use retention_profile::{DEFAULT_PORT, SERVICE_NAME};

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
        retention_db::migrate_only::<retention_profile::store::Migrator>(&settings.database)
            .await
            .context("applying migrations")?;
        tracing::info!("migrations applied");
        return Ok(());
    }
    let listener = tokio::net::TcpListener::bind(settings.listen_addr())
        .await
        .with_context(|| format!("binding {}", settings.listen_addr()))?;
    let addr = listener.local_addr()?;
    if settings.auth.allow_dev_secret
        && settings.auth.jwt_secret == retention_config::DEV_JWT_SECRET
    {
        print_dev_banner(&settings, addr);
    }
    retention_profile::run(settings, listener, retention_server::shutdown_signal()).await?;
    Ok(())
}

/// Embedded/dev mode only: a token and a ready-to-paste call, so a new user can try
/// the service at once.
fn print_dev_banner(settings: &Settings, addr: std::net::SocketAddr) {
    let token = retention_auth::TokenMinter::hs256(
        settings.auth.jwt_secret.as_bytes(),
        &settings.auth.issuer,
        &settings.auth.audience,
    )
    .mint(
        "dev-user",
        &["profile.read", "profile.write", "profile.admin", "pii.read"],
        std::time::Duration::from_secs(12 * 3600),
    );
    println!(
        "\nretention-profile listening on {addr} (embedded mode: {}; development token below, valid 12 h)\n\n\
         Try it (grpcurl):\n  grpcurl -plaintext -H 'authorization: Bearer {token}' \\\n    \
         -d '{{\"customer\":{{\"kind\":\"CUSTOMER_KIND_INDIVIDUAL\",\"display_name\":\"Li Lei\",\"email\":\"li.lei@example.com\"}}}}' \\\n    \
         {addr} retention.profile.v1.CustomerProfileService/CreateCustomer\n\n\
         or (buf curl, via npx):\n  npx buf curl --protocol grpc --http2-prior-knowledge -H 'authorization: Bearer {token}' \\\n    \
         -d '{{\"page_size\":10}}' http://{addr}/retention.profile.v1.CustomerProfileService/ListCustomers\n",
        settings.database.url
    );
}
