//! The embedded mode of `make run`: services in one process on SQLite, sharing one
//! in-process bus, so profile's events reach interactions without Redis.

use std::time::Duration;

use retention_events::EventBus;
use retention_proto::interactions as ipb;
use retention_proto::interactions::interaction_service_client::InteractionServiceClient;
use retention_proto::profile as ppb;
use retention_proto::profile::customer_profile_service_client::CustomerProfileServiceClient;
use retention_testkit::{Backend, TestService};

#[tokio::test]
async fn an_erasure_in_profile_reaches_interactions_over_the_in_process_bus() {
    let bus = EventBus::in_process();
    let (pb_bus, ib_bus) = (bus.clone(), bus.clone());
    let profile = TestService::spawn(
        "profile",
        Backend::Sqlite,
        false,
        |_| {},
        move |s, l, stop| {
            retention_profile::run_with_bus(
                s,
                l,
                async move {
                    let _ = stop.await;
                },
                pb_bus,
            )
        },
    )
    .await
    .unwrap();
    let interactions = TestService::spawn(
        "interactions",
        Backend::Sqlite,
        false,
        |_| {},
        move |s, l, stop| {
            retention_interactions::run_with_bus(
                s,
                l,
                async move {
                    let _ = stop.await;
                },
                ib_bus,
            )
        },
    )
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

    let customer = pc
        .create_customer(profile.req(
            ppb::CreateCustomerRequest {
                customer: Some(ppb::Customer {
                    kind: ppb::CustomerKind::Individual as i32,
                    display_name: "Li Lei".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &scopes,
        ))
        .await
        .unwrap()
        .into_inner();
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
