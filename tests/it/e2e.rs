//! A retention workflow across the four services, over gRPC only, traced: a key
//! account complains, segmentation moves it into the "at-risk key accounts"
//! segment, a triggered retention campaign enrols it, a later purchase wins it
//! back, and the campaign results show it. One trace id connects the spans of all
//! four services (an in-memory OpenTelemetry exporter collects them).

use std::time::Duration;

use opentelemetry::trace::{TraceContextExt, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use retention_events::EventBus;
use retention_proto::interactions as ipb;
use retention_proto::interactions::interaction_service_client::InteractionServiceClient;
use retention_proto::profile as ppb;
use retention_proto::profile::customer_profile_service_client::CustomerProfileServiceClient;
use retention_proto::segmentation as spb;
use retention_proto::winback as wpb;
use retention_suite::cli::client::{Clients, Endpoints};
use retention_suite::cli::{demo, synth};
use tonic::transport::Channel;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

use super::{chrono_free_now, four_services, url};

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
    let bus = EventBus::in_process();
    let [profile, interactions, segmentation, winback] = four_services(&bus).await;
    let auth = &profile.settings.auth;
    let c = Clients::connect(
        &Endpoints {
            profile: url(&profile),
            interactions: url(&interactions),
            segmentation: url(&segmentation),
            winback: url(&winback),
        },
        Clients::mint(&auth.jwt_secret, &auth.issuer, &auth.audience),
    )
    .await
    .unwrap();

    // Twenty customers; the first buys far more than the rest: the key account.
    let now = chrono_free_now();
    let mut customers = Vec::new();
    let mut orders = Vec::new();
    for i in 0..20 {
        let name = synth::create_customer(&c, &format!("Customer {i}"))
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
    let folded = "SELECT COALESCE(SUM(CASE WHEN data LIKE '%\"purchases\":%' THEN 1 ELSE 0 END), 0) FROM features";
    wait_for("the feature store", || async {
        (segmentation.count(folded).await.ok()? == 20).then_some(())
    })
    .await;
    assert!(total > 40);
    demo::score(&c, true).await.unwrap();
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
