//! A retention workflow across the four services, over gRPC only, traced: a key
//! account complains, segmentation moves it into the "at-risk key accounts"
//! segment, a triggered retention campaign enrols it, a later purchase wins it
//! back, and the campaign results show it. One trace id connects the spans of all
//! four services (an in-memory OpenTelemetry exporter collects them). The services
//! run as in production: each on its own PostgreSQL database, events over Redis.

use std::time::Duration;

use opentelemetry::trace::{TraceContextExt, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use retention_proto::interactions as ipb;
use retention_proto::interactions::interaction_service_client::InteractionServiceClient;
use retention_proto::profile as ppb;
use retention_proto::profile::customer_profile_service_client::CustomerProfileServiceClient;
use retention_proto::segmentation as spb;
use retention_proto::winback as wpb;
use retention_suite::cli::{demo, scoring, synth};
use tonic::transport::Channel;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

use super::{Mode, chrono_free_now, clients, four_services};

fn install_exporter() -> (InMemorySpanExporter, SdkTracerProvider) {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("e2e")));
    tracing::subscriber::set_global_default(subscriber).expect("one subscriber per test process");
    (exporter, provider)
}

fn attr(s: &SpanData, key: &str) -> Option<String> {
    s.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

/// Which service a span belongs to: the gRPC path of a server span, or the consumer
/// group of an event span.
fn service_of(s: &SpanData) -> Option<&'static str> {
    let name = s.name.as_ref();
    let group = attr(s, "group").unwrap_or_default();
    for svc in ["profile", "interactions", "segmentation", "winback"] {
        if name.starts_with(&format!("/retention.{svc}.v1.")) || group == svc {
            return Some(svc);
        }
    }
    None
}

async fn wait_for<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..300 {
        if let Some(v) = probe().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn a_complaining_key_account_is_enrolled_won_back_and_traced_across_all_services() {
    let (exporter, provider) = install_exporter();
    let [profile, interactions, segmentation, winback] = four_services(&Mode::production()).await;
    let c = clients(&profile, &interactions, &segmentation, &winback).await;

    // Twenty customers; the first buys far more than the rest: the key account.
    let now = chrono_free_now();
    let mut customers = Vec::new();
    let mut orders = Vec::new();
    for i in 0..20 {
        let name = synth::create_customer(&c, &format!("Customer {i}"))
            .await
            .unwrap();
        // Phone marketing is opt-in by default: each customer consented.
        synth::grant_consent(&c, &name, &[ppb::ContactChannel::Phone], "sign-up form")
            .await
            .unwrap();
        let (n, amount) = if i == 0 {
            (8, 90_000)
        } else {
            (2 + i % 3, 6_000)
        };
        for k in 0..n {
            orders.push(ppb::Purchase {
                customer: name.clone(),
                order_id: format!("e2e-{i}-{k}"),
                occur_time: Some(prost_types::Timestamp {
                    seconds: now - 86_400 * (20 + 25 * k as i64 + i as i64),
                    nanos: 0,
                }),
                amount: synth::cny(amount),
                gross_margin: synth::cny(amount * 3 / 10),
                ..Default::default()
            });
        }
        customers.push(name);
    }
    let total = orders.len();
    synth::record_purchases(&c, orders, true).await.unwrap();
    // Every purchase folded, not just every customer known: a feature row exists
    // from CustomerCreated on, and consumers fold a customer's purchases in batches.
    let folded = "SELECT CAST(COALESCE(SUM(CAST(CAST(data AS jsonb)->>'purchases' AS BIGINT)), 0) AS BIGINT) FROM features";
    assert!(total > 40);
    wait_for("the feature store", || async {
        (segmentation.count(folded).await.ok()? == total as i64).then_some(())
    })
    .await;
    scoring::score(&c, true).await.unwrap();
    wait_for("win-back's consents", || async {
        let sql = "SELECT COUNT(*) FROM consents WHERE channel = 'PHONE' AND granted";
        (winback.count(sql).await.ok()? == 20).then_some(())
    })
    .await;
    let key = customers[0].clone();
    let insight = c
        .segmentation
        .clone()
        .get_customer_insight(c.req(spb::GetCustomerInsightRequest { name: key.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(insight.management_tier, spb::ManagementTier::Key as i32);

    let segment = demo::create_segment(
        &c,
        "At-risk key accounts",
        "management_tier == \"KEY\" && complaints_open > 0",
    )
    .await
    .unwrap();
    assert_eq!(segment.member_count, 0);
    let campaign = c
        .winback
        .clone()
        .create_campaign(c.req(wpb::CreateCampaignRequest {
            campaign: Some(wpb::Campaign {
                display_name: "Recover complaining key accounts".into(),
                kind: wpb::CampaignKind::Retention as i32,
                strategy: wpb::Strategy::ServiceRecovery as i32,
                offer: Some(wpb::Offer {
                    kind: wpb::OfferKind::PersonalOutreach as i32,
                    description: "the account manager calls".into(),
                    cost: synth::cny(0),
                }),
                channel: "PHONE".into(),
                target_segment: segment.name.clone(),
                budget: synth::cny(100_000),
                max_cost_share_of_value: 0.2,
                win_window_days: 30,
                triggered: true,
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    demo::launch(&c, &campaign.name).await.unwrap();
    assert!(demo::targets(&c, &campaign.name).await.unwrap().is_empty());

    // The workflow, under one root span: the complaint, then the purchase.
    let root = tracing::info_span!("e2e.workflow");
    let trace_id: TraceId = root.context().span().span_context().trace_id();
    let traced = |ch: Channel| {
        tonic::service::interceptor::InterceptedService::new(
            ch,
            retention_telemetry::propagate_trace,
        )
    };
    let ich = interactions
        .service
        .as_ref()
        .unwrap()
        .channel()
        .await
        .unwrap();
    let pch = profile.service.as_ref().unwrap().channel().await.unwrap();
    let mut ic = InteractionServiceClient::new(traced(ich));
    let mut pc = CustomerProfileServiceClient::new(traced(pch));
    ic.open_complaint(c.req(ipb::OpenComplaintRequest {
        complaint: Some(ipb::Complaint {
            customer: key.clone(),
            category: ipb::ComplaintCategory::Delivery as i32,
            severity: ipb::Severity::High as i32,
            subject: "third late delivery".into(),
            ..Default::default()
        }),
        request_id: String::new(),
    }))
    .instrument(root.clone())
    .await
    .unwrap();
    let target = wait_for("the triggered enrolment", || async {
        demo::targets(&c, &campaign.name)
            .await
            .ok()?
            .into_iter()
            .find(|t| t.customer == key)
    })
    .await;
    assert_eq!(target.arm, wpb::Arm::Treated as i32);

    tokio::time::sleep(Duration::from_millis(1_100)).await;
    pc.record_purchase(c.req(ppb::RecordPurchaseRequest {
        purchase: Some(ppb::Purchase {
            customer: key.clone(),
            order_id: "e2e-back".into(),
            occur_time: Some(prost_types::Timestamp {
                seconds: chrono_free_now(),
                nanos: 0,
            }),
            amount: synth::cny(50_000),
            gross_margin: synth::cny(15_000),
            ..Default::default()
        }),
    }))
    .instrument(root.clone())
    .await
    .unwrap();
    let results = wait_for("the win-back", || async {
        let r = demo::results(&c, &campaign.name).await.ok()?;
        (r.treated.as_ref()?.won_back == 1).then_some(r)
    })
    .await;
    let treated = results.treated.unwrap();
    assert_eq!(treated.recovered_margin.unwrap().minor_units, 15_000);
    drop(root);

    for s in [profile, interactions, segmentation, winback] {
        s.stop().await.unwrap();
    }
    provider.force_flush().unwrap();
    let spans = exporter.get_finished_spans().unwrap();
    let mut seen: Vec<&str> = spans
        .iter()
        .filter(|s| s.span_context.trace_id() == trace_id)
        .filter_map(service_of)
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(
        seen,
        vec!["interactions", "profile", "segmentation", "winback"],
        "one trace connects every service of the workflow"
    );
    // Win-back's call for the customer's insight is part of the same trace.
    assert!(
        spans.iter().any(|s| s.span_context.trace_id() == trace_id
            && s.name.as_ref()
                == "/retention.segmentation.v1.SegmentationService/GetCustomerInsight"),
        "segmentation served win-back's GetCustomerInsight inside the workflow's trace"
    );
}

#[tokio::test]
async fn malicious_churners_are_never_targeted_and_erased_customers_vanish_everywhere() {
    let [profile, interactions, segmentation, winback] = four_services(&Mode::production()).await;
    let c = clients(&profile, &interactions, &segmentation, &winback).await;
    let now = chrono_free_now();
    let mut customers = Vec::new();
    let mut orders = Vec::new();
    for i in 0..6 {
        let name = synth::create_customer(&c, &format!("Customer {i}"))
            .await
            .unwrap();
        // E-mail marketing is opt-in by default: each customer consented.
        synth::grant_consent(&c, &name, &[ppb::ContactChannel::Email], "sign-up form")
            .await
            .unwrap();
        for k in 0..3 {
            orders.push(ppb::Purchase {
                customer: name.clone(),
                order_id: format!("e2e-{i}-{k}"),
                occur_time: Some(prost_types::Timestamp {
                    seconds: now - 86_400 * (10 + 30 * k as i64 + i as i64),
                    nanos: 0,
                }),
                amount: synth::cny(30_000 + 5_000 * i as i64),
                gross_margin: synth::cny(9_000 + 1_500 * i as i64),
                ..Default::default()
            });
        }
        customers.push(name);
    }
    synth::record_purchases(&c, orders, true).await.unwrap();
    let folded = "SELECT COALESCE(SUM(CASE WHEN data LIKE '%\"purchases\":3,%' THEN 1 ELSE 0 END), 0) FROM features";
    wait_for("the feature store", || async {
        (segmentation.count(folded).await.ok()? == 6).then_some(())
    })
    .await;
    scoring::score(&c, true).await.unwrap();
    wait_for("win-back's consents", || async {
        let sql = "SELECT COUNT(*) FROM consents WHERE channel = 'EMAIL' AND granted";
        (winback.count(sql).await.ok()? == 6).then_some(())
    })
    .await;
    let (malicious, erased) = (customers[0].clone(), customers[1].clone());
    for (who, t) in [
        (&malicious, wpb::ChurnType::Malicious),
        (&erased, wpb::ChurnType::Fault),
    ] {
        c.winback
            .clone()
            .record_churn(c.req(wpb::RecordChurnRequest {
                churn_record: Some(wpb::ChurnRecord {
                    customer: who.clone(),
                    churn_type: t as i32,
                    ..Default::default()
                }),
                request_id: String::new(),
            }))
            .await
            .unwrap();
    }
    c.interactions
        .clone()
        .open_complaint(c.req(ipb::OpenComplaintRequest {
            complaint: Some(ipb::Complaint {
                customer: erased.clone(),
                category: ipb::ComplaintCategory::Billing as i32,
                severity: ipb::Severity::Medium as i32,
                subject: "charged twice for order 42".into(),
                description: "my card number ends 4242".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap();

    let segment = demo::create_segment(&c, "Everyone who bought", "purchases >= 1")
        .await
        .unwrap();
    assert_eq!(segment.member_count, 6);
    let campaign = demo::create_campaign(
        &c,
        &demo::CampaignPlan {
            name: "Win them all back".into(),
            segment: segment.name.clone(),
            strategy: wpb::Strategy::PricePromotion,
            offer: wpb::OfferKind::Discount,
            offer_cost: 0,
            budget: 100_000,
            holdout_share: 0.0,
            channel: "EMAIL".into(),
            value_basis: wpb::ValueBasis::Unspecified,
        },
    )
    .await
    .unwrap();
    demo::launch(&c, &campaign.name).await.unwrap();
    let targeted: Vec<String> = demo::targets(&c, &campaign.name)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.customer)
        .collect();
    assert_eq!(targeted.len(), 5);
    assert!(
        !targeted.contains(&malicious),
        "a malicious churner was targeted"
    );
    assert!(targeted.contains(&erased));

    // Erased in profile: every service lets go of the customer.
    c.profile
        .clone()
        .erase_customer(c.req(ppb::EraseCustomerRequest {
            name: erased.clone(),
            request_id: String::new(),
        }))
        .await
        .unwrap();
    let gone = c
        .profile
        .clone()
        .get_customer(c.req(ppb::GetCustomerRequest {
            name: erased.clone(),
        }))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound);
    wait_for("segmentation to forget the customer", || async {
        let r = c
            .segmentation
            .clone()
            .get_customer_insight(c.req(spb::GetCustomerInsightRequest {
                name: erased.clone(),
            }))
            .await;
        matches!(r, Err(s) if s.code() == tonic::Code::NotFound).then_some(())
    })
    .await;
    let members = demo::segment_members(&c, &segment.name).await.unwrap();
    assert!(members.iter().all(|m| m.customer != erased));
    wait_for("win-back to forget the customer", || async {
        let id = erased.trim_start_matches("customers/");
        let churn = c
            .winback
            .clone()
            .list_churn_records(c.req(wpb::ListChurnRecordsRequest {
                filter: format!("customer_id == \"{id}\""),
                ..Default::default()
            }))
            .await
            .ok()?
            .into_inner()
            .churn_records;
        let targets = demo::targets(&c, &campaign.name).await.ok()?;
        (churn.is_empty() && targets.iter().all(|t| t.customer != erased) && targets.len() == 5)
            .then_some(())
    })
    .await;
    let complaints = wait_for("interactions to redact the complaint", || async {
        let list = c
            .interactions
            .clone()
            .list_complaints(c.req(ipb::ListComplaintsRequest {
                customer: erased.clone(),
                ..Default::default()
            }))
            .await
            .ok()?
            .into_inner()
            .complaints;
        list.iter()
            .all(|x| x.description.is_empty())
            .then_some(list)
    })
    .await;
    for x in complaints {
        assert!(!x.subject.contains("charged twice") && !x.description.contains("4242"));
    }
    for s in [profile, interactions, segmentation, winback] {
        s.stop().await.unwrap();
    }
}
