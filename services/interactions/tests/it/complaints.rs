//! Complaint lifecycle over gRPC: every transition, etags, idempotent opens, SLA
//! due times from policies and tiers.

use retention_proto::interactions as pb;
use retention_testkit::{Backend, on_both_backends};
use tonic::Code;
use tonic_types::StatusExt;

use crate::harness::*;

async fn lifecycle(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let who = customer();
    let c = app.open(&who, pb::Severity::Medium).await;
    assert_eq!(c.state, pb::ComplaintState::Open as i32);
    assert_eq!(
        c.priority,
        pb::Priority::Normal as i32,
        "priority follows severity"
    );
    assert_eq!(
        c.customer_tier,
        pb::CustomerTier::Ordinary as i32,
        "tier defaults to ordinary"
    );
    let name = c.name.clone();

    let ack = app
        .client
        .acknowledge_complaint(app.req(pb::AcknowledgeComplaintRequest {
            name: name.clone(),
            etag: c.etag.clone(),
            note: "called back".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ack.state, pb::ComplaintState::Acknowledged as i32);
    assert!(ack.first_response_time.is_some());

    // A stale etag is refused.
    let err = app
        .client
        .assign_complaint(app.req(pb::AssignComplaintRequest {
            name: name.clone(),
            assignee: "li".into(),
            etag: c.etag.clone(),
            team: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Aborted);

    let assigned = app
        .client
        .assign_complaint(app.req(pb::AssignComplaintRequest {
            name: name.clone(),
            assignee: "li".into(),
            etag: ack.etag.clone(),
            team: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(assigned.state, pb::ComplaintState::InProgress as i32);
    assert_eq!(assigned.assignee, "li");
    let escalated = app
        .client
        .escalate_complaint(app.req(pb::EscalateComplaintRequest {
            name: name.clone(),
            reason: "VIP".into(),
            etag: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(escalated.escalation_level, 1);
    assert_eq!(escalated.state, pb::ComplaintState::InProgress as i32);

    let resolve = |app: &TestApp| app.req(compensated(&name, 5000));
    let resolved = app
        .client
        .resolve_complaint(resolve(&app))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resolved.state, pb::ComplaintState::Resolved as i32);
    let r = resolved.resolution.unwrap();
    assert_eq!(r.compensation.unwrap().minor_units, 5000);
    assert_eq!(r.service_gap, pb::ServiceGap::Procedure as i32);

    let reopened = app
        .client
        .reopen_complaint(app.req(pb::ReopenComplaintRequest {
            name: name.clone(),
            reason: "still missing".into(),
            etag: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reopened.state, pb::ComplaintState::InProgress as i32);
    assert_eq!(reopened.reopen_count, 1);
    assert!(reopened.resolution.is_none());
    app.client.resolve_complaint(resolve(&app)).await.unwrap();
    let closed = app
        .client
        .close_complaint(app.req(pb::CloseComplaintRequest {
            name: name.clone(),
            etag: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(closed.state, pb::ComplaintState::Closed as i32);

    // Closed is terminal: an illegal transition names the current state.
    let err = app
        .client
        .reopen_complaint(app.req(pb::ReopenComplaintRequest {
            name: name.clone(),
            reason: String::new(),
            etag: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let pf = err
        .get_details_precondition_failure()
        .expect("precondition failure");
    assert_eq!(pf.violations[0].r#type, "STATE");
    assert!(
        pf.violations[0].description.contains("CLOSED"),
        "{:?}",
        pf.violations[0]
    );

    // One status event per transition, two resolutions, one open.
    assert_eq!(app.outbox_count("ComplaintOpenedEvent").await, 1);
    assert_eq!(app.outbox_count("ComplaintStatusChangedEvent").await, 7);
    assert_eq!(app.outbox_count("ComplaintResolvedEvent").await, 2);

    let listed = app
        .client
        .list_complaints(app.req(pb::ListComplaintsRequest {
            customer: who.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.complaints.len(), 1);
    app.stop().await;
}
on_both_backends!(complaint_lifecycle, lifecycle);

#[tokio::test]
async fn illegal_transitions_are_failed_preconditions() {
    let mut app = TestApp::spawn(Backend::Sqlite).await;
    let c = app.open(&customer(), pb::Severity::Low).await;
    let err = app
        .client
        .close_complaint(app.req(pb::CloseComplaintRequest {
            name: c.name.clone(),
            etag: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("OPEN"), "{err:?}");
    let err = app
        .client
        .reopen_complaint(app.req(pb::ReopenComplaintRequest {
            name: c.name.clone(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let missing = format!("complaints/{}", uuid::Uuid::now_v7());
    let err = app
        .client
        .get_complaint(app.req(pb::GetComplaintRequest { name: missing }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    app.stop().await;
}

#[tokio::test]
async fn opens_are_idempotent_on_request_id() {
    let mut app = TestApp::spawn(Backend::Postgres).await;
    let who = customer();
    let req = |app: &TestApp| {
        app.req(pb::OpenComplaintRequest {
            complaint: Some(complaint(&who, pb::Severity::High)),
            request_id: "retry-1".into(),
        })
    };
    let a = app
        .client
        .open_complaint(req(&app))
        .await
        .unwrap()
        .into_inner();
    let b = app
        .client
        .open_complaint(req(&app))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(a.name, b.name);
    assert_eq!(app.count("SELECT COUNT(*) FROM complaints").await, 1);
    assert_eq!(app.outbox_count("ComplaintOpenedEvent").await, 1);
    app.stop().await;
}

#[tokio::test]
async fn sla_due_times_follow_policy_and_tier() {
    let mut app = TestApp::spawn(Backend::Postgres).await;
    let key_customer = customer();
    // Segmentation's tier read model says this customer is a key account.
    let db = app.inner.database().await.unwrap();
    use sea_orm::ConnectionTrait;
    db.execute_unprepared(&format!(
        "INSERT INTO customer_tiers (customer_id, tier, update_time) VALUES ('{}', 'KEY', now())",
        key_customer.trim_start_matches("customers/")
    ))
    .await
    .unwrap();
    let policy = app
        .client
        .create_sla_policy(app.req(pb::CreateSlaPolicyRequest {
            policy: Some(pb::SlaPolicy {
                priority: pb::Priority::High as i32,
                customer_tier: pb::CustomerTier::Key as i32,
                first_response_minutes: 30,
                resolution_minutes: 240,
                ..Default::default()
            }),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(policy.name, "slaPolicies/high-key");
    let listed = app
        .client
        .list_sla_policies(app.req(pb::ListSlaPoliciesRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.policies, vec![policy]);

    // Key account + configured policy.
    let key = app.open(&key_customer, pb::Severity::High).await;
    assert_eq!(key.customer_tier, pb::CustomerTier::Key as i32);
    assert_eq!(
        secs(&key.first_response_due_time) - secs(&key.open_time),
        30 * 60
    );
    assert_eq!(
        secs(&key.resolution_due_time) - secs(&key.open_time),
        240 * 60
    );
    // Ordinary customer, no policy: built-in defaults (high: 4 h / 24 h).
    let ordinary = app.open(&customer(), pb::Severity::High).await;
    assert_eq!(
        secs(&ordinary.first_response_due_time) - secs(&ordinary.open_time),
        4 * 3600
    );
    assert_eq!(
        secs(&ordinary.resolution_due_time) - secs(&ordinary.open_time),
        24 * 3600
    );
    // Key account without a configured policy for its priority: half the default.
    let key_low = app.open(&key_customer, pb::Severity::Low).await;
    assert_eq!(
        secs(&key_low.first_response_due_time) - secs(&key_low.open_time),
        12 * 3600
    );
    app.stop().await;
}

#[tokio::test]
async fn interactions_form_a_filtered_paged_timeline() {
    let mut app = TestApp::spawn(Backend::Postgres).await;
    let who = customer();
    for (i, channel) in [
        pb::Channel::Phone,
        pb::Channel::Email,
        pb::Channel::Phone,
        pb::Channel::Chat,
    ]
    .into_iter()
    .enumerate()
    {
        let req = app.req(pb::LogInteractionRequest {
            interaction: Some(pb::Interaction {
                customer: who.clone(),
                channel: channel as i32,
                direction: pb::Direction::Inbound as i32,
                kind: pb::CommunicationKind::Opinion as i32,
                purchase_phase: pb::PurchasePhase::After as i32,
                agent: "wang".into(),
                summary: format!("contact {i}"),
                occur_time: Some(prost_types::Timestamp {
                    seconds: 1_790_000_000 + i as i64,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            request_id: format!("log-{i}"),
        });
        app.client.log_interaction(req).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = app
            .client
            .list_interactions(app.req(pb::ListInteractionsRequest {
                customer: who.clone(),
                page_size: 3,
                page_token: token,
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.interactions.into_iter().map(|i| i.summary));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(
        seen,
        vec!["contact 3", "contact 2", "contact 1", "contact 0"]
    );
    let phones = app
        .client
        .list_interactions(app.req(pb::ListInteractionsRequest {
            customer: who.clone(),
            channel: pb::Channel::Phone as i32,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(phones.interactions.len(), 2);
    assert_eq!(app.outbox_count("InteractionLoggedEvent").await, 4);
    app.stop().await;
}
