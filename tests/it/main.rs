//! The embedded mode of `make run`: services in one process on SQLite, sharing one
//! in-process bus, so profile's events reach interactions without Redis.

use std::time::Duration;

use retention_events::EventBus;
use retention_proto::interactions as ipb;
use retention_proto::interactions::interaction_service_client::InteractionServiceClient;
use retention_proto::profile as ppb;
use retention_proto::profile::customer_profile_service_client::CustomerProfileServiceClient;
use retention_server::host::Service;
use retention_testkit::{Backend, TestService};

mod audit;
mod backfill;
mod backpressure;
mod cdnow;
mod cli;
mod consumer_kill;
mod dead_letters;
mod e2e;
mod html_report;
mod metrics;
mod process;
mod scopes;
mod sigterm;
mod winback;

#[tokio::test]
async fn an_erasure_in_profile_reaches_interactions_over_the_in_process_bus() {
    let bus = EventBus::in_process();
    let profile = embedded::<retention_profile::Profile>(&bus).await.unwrap();
    let interactions = embedded::<retention_interactions::Interactions>(&bus)
        .await
        .unwrap();
    let scopes = [
        "profile.write",
        "profile.admin",
        "interactions.read",
        "interactions.write",
    ];
    let mut pc = CustomerProfileServiceClient::new(profile.channel.clone());
    let mut ic = InteractionServiceClient::new(interactions.channel.clone());

    let customer = create_customer(&profile, "Li Lei", &scopes).await;
    ic.log_interaction(interactions.req(
        ipb::LogInteractionRequest {
            interaction: Some(ipb::Interaction {
                customer: customer.name.clone(),
                channel: ipb::Channel::Hotline as i32,
                direction: ipb::Direction::Inbound as i32,
                summary: "lives at 1 Main St".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        },
        &scopes,
    ))
    .await
    .unwrap();
    pc.erase_customer(profile.req(
        ppb::EraseCustomerRequest {
            name: customer.name.clone(),
            request_id: String::new(),
        },
        &scopes,
    ))
    .await
    .unwrap();

    let mut summary = String::from("not yet");
    for _ in 0..100 {
        let list = ic
            .list_interactions(interactions.req(
                ipb::ListInteractionsRequest {
                    customer: customer.name.clone(),
                    ..Default::default()
                },
                &scopes,
            ))
            .await
            .unwrap()
            .into_inner();
        summary = list.interactions[0].summary.clone();
        if summary.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        summary, "",
        "interactions removed the erased customer's free text"
    );
    profile.stop().await.unwrap();
    interactions.stop().await.unwrap();
}

/// How a test's services run: embedded (a SQLite file each, one in-process bus)
/// or as in production (a PostgreSQL database each, Redis Streams in one
/// namespace, so their events meet).
#[derive(Clone)]
enum Mode {
    Embedded(EventBus),
    Production { namespace: String },
}

impl Mode {
    fn production() -> Mode {
        Mode::Production {
            namespace: retention_testkit::unique_namespace(),
        }
    }
}

/// Spawns service `S` in `mode`, with the settings adjusted by `tweak`.
async fn start<S: Service>(
    mode: Mode,
    tweak: impl FnOnce(&mut retention_config::Settings),
) -> anyhow::Result<TestService> {
    match mode {
        Mode::Embedded(bus) => {
            TestService::start::<S>(Backend::Sqlite, false, tweak, Some(bus)).await
        }
        Mode::Production { namespace } => {
            let tweak = move |s: &mut retention_config::Settings| {
                s.redis.namespace = namespace;
                tweak(s);
            };
            TestService::start::<S>(Backend::Postgres, true, tweak, None).await
        }
    }
}

/// Spawns service `S` in embedded mode on the shared bus.
async fn embedded<S: Service>(bus: &EventBus) -> anyhow::Result<TestService> {
    start::<S>(Mode::Embedded(bus.clone()), |_| {}).await
}

/// The four services in `mode`, win-back pointed at this segmentation:
/// (profile, interactions, segmentation, winback).
async fn four_services(mode: &Mode) -> [TestService; 4] {
    let profile = start::<retention_profile::Profile>(mode.clone(), |_| {})
        .await
        .unwrap();
    let interactions = start::<retention_interactions::Interactions>(mode.clone(), |_| {})
        .await
        .unwrap();
    let segmentation = start::<retention_segmentation::Segmentation>(mode.clone(), |_| {})
        .await
        .unwrap();
    let seg_url = url(&segmentation);
    let winback = start::<retention_winback::Winback>(mode.clone(), move |s| {
        s.winback.segmentation_endpoint = seg_url
    })
    .await
    .unwrap();
    [profile, interactions, segmentation, winback]
}

/// The CLI's clients of the four services, with a token for every scope.
async fn clients(
    profile: &TestService,
    interactions: &TestService,
    segmentation: &TestService,
    winback: &TestService,
) -> retention_suite::cli::Clients {
    use retention_suite::cli::client::{Clients, Endpoints};
    let auth = &profile.settings.auth;
    Clients::connect(
        &Endpoints {
            profile: url(profile),
            interactions: url(interactions),
            segmentation: url(segmentation),
            winback: url(winback),
        },
        Clients::mint(&auth.jwt_secret, &auth.issuer, &auth.audience),
    )
    .await
    .unwrap()
}

/// The SLA breaches a sweep `days` from now records, run as another replica of
/// `interactions` would run it.
async fn sweep_in_days(interactions: &TestService, days: i64) -> usize {
    let db = sea_orm::Database::connect(interactions.settings.database.url.as_str())
        .await
        .unwrap();
    retention_interactions::app::InteractionsApp::new(retention_events::Outbox::new(
        db,
        "interactions",
        Default::default(),
    ))
    .sweep(chrono::Utc::now() + chrono::Duration::days(days))
    .await
    .unwrap()
    .breaches
}

fn url(t: &TestService) -> String {
    format!("http://{}", t.service.as_ref().expect("running").addr)
}

#[tokio::test]
async fn purchases_and_complaints_reach_segmentations_feature_store() {
    let bus = EventBus::in_process();
    let profile = embedded::<retention_profile::Profile>(&bus).await.unwrap();
    let interactions = embedded::<retention_interactions::Interactions>(&bus)
        .await
        .unwrap();
    let segmentation = embedded::<retention_segmentation::Segmentation>(&bus)
        .await
        .unwrap();
    let scopes = ["profile.write", "interactions.write"];
    let mut pc = CustomerProfileServiceClient::new(profile.channel.clone());
    let mut ic = InteractionServiceClient::new(interactions.channel.clone());
    let customer = create_customer(&profile, "Han Meimei", &scopes).await;
    for order in ["o-1", "o-2"] {
        pc.record_purchase(profile.req(
            ppb::RecordPurchaseRequest {
                purchase: Some(ppb::Purchase {
                    customer: customer.name.clone(),
                    order_id: order.into(),
                    occur_time: Some(prost_types::Timestamp {
                        seconds: chrono_free_now() - 86_400,
                        nanos: 0,
                    }),
                    amount: Some(retention_proto::common::Money {
                        currency_code: "CNY".into(),
                        minor_units: 12_000,
                    }),
                    ..Default::default()
                }),
            },
            &scopes,
        ))
        .await
        .unwrap();
    }
    ic.open_complaint(interactions.req(
        ipb::OpenComplaintRequest {
            complaint: Some(ipb::Complaint {
                customer: customer.name.clone(),
                category: ipb::ComplaintCategory::Delivery as i32,
                severity: ipb::Severity::High as i32,
                subject: "late".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        },
        &scopes,
    ))
    .await
    .unwrap();

    let id = customer.name.trim_start_matches("customers/");
    let sql = format!(
        "SELECT COUNT(*) FROM features WHERE customer_id = '{id}' \
         AND data LIKE '%\"purchases\":2,%' AND data LIKE '%\"complaints_open\":1,%'"
    );
    let mut folded = 0;
    for _ in 0..200 {
        folded = segmentation.count(&sql).await.unwrap();
        if folded == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        folded, 1,
        "both streams reached segmentation's feature store"
    );
    profile.stop().await.unwrap();
    interactions.stop().await.unwrap();
    segmentation.stop().await.unwrap();
}

/// A new individual customer named `display_name`, created through the API.
async fn create_customer(
    profile: &TestService,
    display_name: &str,
    scopes: &[&str],
) -> ppb::Customer {
    CustomerProfileServiceClient::new(profile.channel.clone())
        .create_customer(profile.req(
            ppb::CreateCustomerRequest {
                customer: Some(ppb::Customer {
                    kind: ppb::CustomerKind::Individual as i32,
                    display_name: display_name.into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            scopes,
        ))
        .await
        .unwrap()
        .into_inner()
}

fn chrono_free_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
