//! Win-back against the real segmentation service in embedded mode: profile's
//! purchases are scored, a segment selects the customers, a campaign launched on
//! it reads the members over gRPC, and a later purchase wins a customer back.

use std::time::Duration;

use retention_events::EventBus;
use retention_proto::common::Money;
use retention_proto::profile as ppb;
use retention_proto::profile::customer_profile_service_client::CustomerProfileServiceClient;
use retention_proto::segmentation as spb;
use retention_proto::segmentation::segmentation_service_client::SegmentationServiceClient;
use retention_proto::winback as wpb;
use retention_proto::winback::winback_service_client::WinbackServiceClient;

use retention_testkit::TestService;

use super::{Mode, chrono_free_now, four_services};

fn at(seconds: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos: 0 })
}

fn cny(minor_units: i64) -> Option<Money> {
    Some(Money {
        currency_code: "CNY".into(),
        minor_units,
    })
}

/// Three customers consenting to phone calls with three purchases each, folded
/// into segmentation's features, scored by a live run and selected by a segment
/// of repeat buyers: (the customers, the segment).
pub(super) async fn scored_repeat_buyers(
    profile: &TestService,
    segmentation: &TestService,
    winback: &TestService,
) -> (Vec<String>, spb::Segment) {
    let mut pc = CustomerProfileServiceClient::new(profile.channel.clone());
    let mut sc = SegmentationServiceClient::new(segmentation.channel.clone());
    let p_scopes = ["profile.write"];
    let s_scopes = [
        "segmentation.read",
        "segmentation.write",
        "segmentation.admin",
    ];

    let now = chrono_free_now();
    let mut customers = Vec::new();
    for (i, name) in ["Li Lei", "Han Meimei", "Wei Hua"].iter().enumerate() {
        let c = pc
            .create_customer(profile.req(
                ppb::CreateCustomerRequest {
                    customer: Some(ppb::Customer {
                        kind: ppb::CustomerKind::Individual as i32,
                        display_name: (*name).into(),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
                &p_scopes,
            ))
            .await
            .unwrap()
            .into_inner();
        // Phone marketing is opt-in by default: each customer consented.
        pc.update_consent(profile.req(
            ppb::UpdateConsentRequest {
                name: c.name.clone(),
                channel: ppb::ContactChannel::Phone as i32,
                status: ppb::ConsentStatus::Granted as i32,
                source: "sign-up form".into(),
            },
            &p_scopes,
        ))
        .await
        .unwrap();
        for k in 0..3 {
            pc.record_purchase(profile.req(
                ppb::RecordPurchaseRequest {
                    purchase: Some(ppb::Purchase {
                        customer: c.name.clone(),
                        order_id: format!("o-{i}-{k}"),
                        occur_time: at(now - 86_400 * (200 - 40 * k - i as i64)),
                        amount: cny(20_000),
                        gross_margin: cny(6_000),
                        ..Default::default()
                    }),
                },
                &p_scopes,
            ))
            .await
            .unwrap();
        }
        customers.push(c.name);
    }
    // Nine purchases folded into segmentation's features, then a full scoring run.
    let folded = "SELECT COALESCE(SUM(CASE WHEN data LIKE '%\"purchases\":3,%' THEN 1 ELSE 0 END), 0) FROM features";
    for _ in 0..200 {
        if segmentation.count(folded).await.unwrap() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(segmentation.count(folded).await.unwrap(), 3);
    // ... and the three consents in win-back's read model.
    let granted = "SELECT COUNT(*) FROM consents WHERE channel = 'PHONE' AND granted";
    for _ in 0..200 {
        if winback.count(granted).await.unwrap() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(winback.count(granted).await.unwrap(), 3);
    let run = sc
        .run_scoring(segmentation.req(spb::RunScoringRequest::default(), &s_scopes))
        .await
        .unwrap()
        .into_inner();
    let mut state = 0;
    for _ in 0..400 {
        state = sc
            .get_scoring_run(segmentation.req(
                spb::GetScoringRunRequest {
                    name: run.name.clone(),
                },
                &s_scopes,
            ))
            .await
            .unwrap()
            .into_inner()
            .state;
        if state == spb::ScoringRunState::Succeeded as i32 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(state, spb::ScoringRunState::Succeeded as i32);
    let segment = sc
        .create_segment(segmentation.req(
            spb::CreateSegmentRequest {
                segment: Some(spb::Segment {
                    display_name: "Repeat buyers".into(),
                    filter: "purchases >= 3".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &s_scopes,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(segment.member_count, 3);
    (customers, segment)
}

#[tokio::test]
async fn a_campaign_on_a_real_segment_is_launched_and_measured() {
    let bus = EventBus::in_process_for_suite();
    let [profile, interactions, segmentation, winback] = four_services(&Mode::Embedded(bus)).await;
    let mut pc = CustomerProfileServiceClient::new(profile.channel.clone());
    let mut wc = WinbackServiceClient::new(winback.channel.clone());
    let p_scopes = ["profile.write"];
    let w_scopes = ["winback.read", "winback.write", "winback.admin"];
    let (customers, segment) = scored_repeat_buyers(&profile, &segmentation, &winback).await;

    let campaign = wc
        .create_campaign(winback.req(
            wpb::CreateCampaignRequest {
                campaign: Some(wpb::Campaign {
                    display_name: "Thank-you call".into(),
                    kind: wpb::CampaignKind::Retention as i32,
                    strategy: wpb::Strategy::RelationshipInvestment as i32,
                    offer: Some(wpb::Offer {
                        kind: wpb::OfferKind::PersonalOutreach as i32,
                        description: "a call from the owner".into(),
                        cost: cny(0),
                    }),
                    channel: "PHONE".into(),
                    target_segment: segment.name.clone(),
                    budget: cny(100_000),
                    max_cost_share_of_value: 0.2,
                    win_window_days: 30,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &w_scopes,
        ))
        .await
        .unwrap()
        .into_inner();
    let launched = wc
        .launch_campaign(winback.req(
            wpb::LaunchCampaignRequest {
                name: campaign.name.clone(),
                etag: campaign.etag.clone(),
            },
            &w_scopes,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(launched.state, wpb::CampaignState::Running as i32);
    let targets = wc
        .list_campaign_targets(winback.req(
            wpb::ListCampaignTargetsRequest {
                campaign: campaign.name.clone(),
                ..Default::default()
            },
            &w_scopes,
        ))
        .await
        .unwrap()
        .into_inner()
        .targets;
    let mut got: Vec<&str> = targets.iter().map(|t| t.customer.as_str()).collect();
    got.sort();
    let mut want: Vec<&str> = customers.iter().map(String::as_str).collect();
    want.sort();
    assert_eq!(
        got, want,
        "the campaign reached every member of the segment"
    );

    // A purchase after the launch wins the first customer back.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    pc.record_purchase(profile.req(
        ppb::RecordPurchaseRequest {
            purchase: Some(ppb::Purchase {
                customer: customers[0].clone(),
                order_id: "o-back".into(),
                occur_time: at(chrono_free_now()),
                amount: cny(30_000),
                gross_margin: cny(9_000),
                ..Default::default()
            }),
        },
        &p_scopes,
    ))
    .await
    .unwrap();
    let mut won = 0;
    for _ in 0..200 {
        let r = wc
            .get_campaign_results(winback.req(
                wpb::GetCampaignResultsRequest {
                    name: campaign.name.clone(),
                },
                &w_scopes,
            ))
            .await
            .unwrap()
            .into_inner();
        let treated = r.treated.unwrap();
        won = treated.won_back;
        if won == 1 {
            assert_eq!(
                treated.recovered_margin.unwrap().minor_units,
                9_000,
                "the winning purchase's margin is recovered"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(won, 1);
    for s in [profile, interactions, segmentation, winback] {
        s.stop().await.unwrap();
    }
}
