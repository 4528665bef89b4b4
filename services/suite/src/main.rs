//! `retention`: all four services in one process for trying the suite on a fresh
//! machine. Each service keeps its own configuration (`RETENTION_*`, config files)
//! and database; without Redis they share one in-process event bus, so events flow
//! between them exactly as through Redis Streams.

use std::time::Duration;

use retention_config::Settings;
use retention_events::EventBus;
use retention_interactions::Interactions;
use retention_profile::Profile;
use retention_segmentation::Segmentation;
use retention_server::host::{self, Service};
use retention_winback::Winback;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let profile = load::<Profile>()?;
    let interactions = load::<Interactions>()?;
    let segmentation = load::<Segmentation>()?;
    let mut winback = load::<Winback>()?;
    // In one process the peer is the segmentation started here.
    winback.winback.segmentation_endpoint = format!("http://{}", segmentation.listen_addr());
    let _telemetry = retention_telemetry::init(&retention_telemetry::TelemetryOptions {
        service_name: "retention-suite".into(),
        otlp_endpoint: Some(profile.telemetry.otlp_endpoint.clone()),
        log_filter: profile.telemetry.log_filter.clone(),
        log_format: profile.telemetry.log_format.clone(),
    })?;
    let shared_bus = EventBus::for_suite(&profile)?;
    let stop = CancellationToken::new();
    let signal = stop.clone();
    tokio::spawn(async move {
        retention_server::shutdown_signal().await;
        signal.cancel();
    });

    let listeners = [
        host::bind(&profile).await?,
        host::bind(&interactions).await?,
        host::bind(&segmentation).await?,
        host::bind(&winback).await?,
    ];
    // One admin port for the process (its metrics are the four services'), on
    // profile's admin settings.
    let admin = host::spawn_admin(&profile, &stop).await?;
    print_banner(&profile, &interactions, &segmentation, &winback);
    let [p, i, s, w] = listeners;
    let (p, i, s, w) = tokio::join!(
        spawn::<Profile>(profile, p, &stop, &shared_bus),
        spawn::<Interactions>(interactions, i, &stop, &shared_bus),
        spawn::<Segmentation>(segmentation, s, &stop, &shared_bus),
        spawn::<Winback>(winback, w, &stop, &shared_bus),
    );
    stop.cancel();
    if let Some(admin) = admin {
        let _ = admin.await;
    }
    p??;
    i??;
    s??;
    w??;
    Ok(())
}

fn load<S: Service>() -> anyhow::Result<Settings> {
    Ok(Settings::load(S::NAME, S::DEFAULT_PORT)?)
}

/// Runs `S` until `stop`; on the shared in-process bus unless its settings name
/// Redis.
fn spawn<S: Service>(
    settings: Settings,
    listener: tokio::net::TcpListener,
    stop: &CancellationToken,
    shared_bus: &EventBus,
) -> tokio::task::JoinHandle<Result<(), host::HostError>> {
    let bus = settings.redis_url().is_none().then(|| shared_bus.clone());
    let stop = stop.clone();
    tokio::spawn(host::run::<S>(
        settings,
        listener,
        async move { stop.cancelled().await },
        bus,
    ))
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
    if let Some(admin) = profile.admin_addr() {
        println!("  metrics       http://{admin}/metrics\n");
    }
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
