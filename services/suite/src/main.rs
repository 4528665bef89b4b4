//! `retention`: all four services in one process for trying the suite on a fresh
//! machine. Each service keeps its own configuration (`RETENTION_*`, config files)
//! and database; without Redis they share one in-process event bus, so events flow
//! between them exactly as through Redis Streams.

use std::time::Duration;

use anyhow::Context;
use retention_config::Settings;
use retention_events::EventBus;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let profile = Settings::load(
        retention_profile::SERVICE_NAME,
        retention_profile::DEFAULT_PORT,
    )?;
    let interactions = Settings::load(
        retention_interactions::SERVICE_NAME,
        retention_interactions::DEFAULT_PORT,
    )?;
    let segmentation = Settings::load(
        retention_segmentation::SERVICE_NAME,
        retention_segmentation::DEFAULT_PORT,
    )?;
    let mut winback = Settings::load(
        retention_winback::SERVICE_NAME,
        retention_winback::DEFAULT_PORT,
    )?;
    // In one process the peer is the segmentation started here.
    winback.winback.segmentation_endpoint = format!("http://{}", segmentation.listen_addr());
    let _telemetry = retention_telemetry::init(&retention_telemetry::TelemetryOptions {
        service_name: "retention-suite".into(),
        otlp_endpoint: Some(profile.telemetry.otlp_endpoint.clone()),
        log_filter: profile.telemetry.log_filter.clone(),
        log_format: profile.telemetry.log_format.clone(),
    })?;
    let shared_bus = EventBus::for_suite(&profile)?;
    let bus_for = |s: &Settings| -> anyhow::Result<EventBus> {
        Ok(if s.redis_url().is_some() {
            EventBus::from_settings(s)?
        } else {
            shared_bus.clone()
        })
    };
    let stop = CancellationToken::new();
    let signal = stop.clone();
    tokio::spawn(async move {
        retention_server::shutdown_signal().await;
        signal.cancel();
    });

    let bind = |s: &Settings| {
        let addr = s.listen_addr();
        async move {
            TcpListener::bind(&addr)
                .await
                .with_context(|| format!("binding {addr}"))
        }
    };
    let profile_listener = bind(&profile).await?;
    let interactions_listener = bind(&interactions).await?;
    let segmentation_listener = bind(&segmentation).await?;
    let winback_listener = bind(&winback).await?;
    print_banner(&profile, &interactions, &segmentation, &winback);

    let (p_bus, i_bus, s_bus, w_bus) = (
        bus_for(&profile)?,
        bus_for(&interactions)?,
        bus_for(&segmentation)?,
        bus_for(&winback)?,
    );
    let (p_stop, i_stop, s_stop, w_stop) = (stop.clone(), stop.clone(), stop.clone(), stop.clone());
    let p = tokio::spawn(retention_profile::run_with_bus(
        profile,
        profile_listener,
        async move { p_stop.cancelled().await },
        p_bus,
    ));
    let i = tokio::spawn(retention_interactions::run_with_bus(
        interactions,
        interactions_listener,
        async move { i_stop.cancelled().await },
        i_bus,
    ));
    let s = tokio::spawn(retention_segmentation::run_with_bus(
        segmentation,
        segmentation_listener,
        async move { s_stop.cancelled().await },
        s_bus,
    ));
    let w = tokio::spawn(retention_winback::run_with_bus(
        winback,
        winback_listener,
        async move { w_stop.cancelled().await },
        w_bus,
    ));
    let (p, i, s, w) = tokio::join!(p, i, s, w);
    p??;
    i??;
    s??;
    w??;
    Ok(())
}

fn print_banner(
    profile: &Settings,
    interactions: &Settings,
    segmentation: &Settings,
    winback: &Settings,
) {
    let dev = profile.auth.allow_dev_secret
        && profile.auth.jwt_secret == retention_config::DEV_JWT_SECRET;
    let p = profile.listen_addr();
    let i = interactions.listen_addr();
    let s = segmentation.listen_addr();
    let w = winback.listen_addr();
    println!(
        "\nretention suite (embedded mode)\n  profile       {p}  ({})\n  interactions  {i}  ({})\n  segmentation  {s}  ({})\n  winback       {w}  ({})\n",
        profile.database.url,
        interactions.database.url,
        segmentation.database.url,
        winback.database.url
    );
    if !dev {
        return;
    }
    let token = retention_auth::TokenMinter::hs256(
        profile.auth.jwt_secret.as_bytes(),
        &profile.auth.issuer,
        &profile.auth.audience,
    )
    .mint(
        "dev-user",
        retention_suite::cli::client::SCOPES,
        Duration::from_secs(12 * 3600),
    );
    println!(
        "Development token (valid 12 h):\n  export TOKEN={token}\n\n\
         Try it (grpcurl, or `npx buf curl --protocol grpc --http2-prior-knowledge` with http://ADDR/SERVICE/METHOD):\n  \
         grpcurl -plaintext -H \"authorization: Bearer $TOKEN\" \\\n    \
         -d '{{\"customer\":{{\"kind\":\"CUSTOMER_KIND_INDIVIDUAL\",\"display_name\":\"Li Lei\",\"email\":\"li.lei@example.com\"}}}}' \\\n    \
         {p} retention.profile.v1.CustomerProfileService/CreateCustomer\n\n  \
         npx buf curl --protocol grpc --http2-prior-knowledge -H \"authorization: Bearer $TOKEN\" \\\n    \
         -d '{{\"complaint\":{{\"customer\":\"customers/<id from above>\",\"category\":\"COMPLAINT_CATEGORY_DELIVERY\",\"severity\":\"SEVERITY_HIGH\",\"subject\":\"Parcel late\"}}}}' \\\n    \
         http://{i}/retention.interactions.v1.InteractionService/OpenComplaint\n"
    );
}
