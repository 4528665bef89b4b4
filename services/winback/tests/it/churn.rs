//! Churn records, ClassifyChurn on each signal (including the complaint history
//! kept from interactions' events), the playbook, and erasure.

use retention_proto::interactions as ipb;
use retention_proto::profile as ppb;
use retention_proto::winback as pb;
use retention_testkit::Backend;
use tonic::Code;

use crate::harness::*;

fn record(customer: &str, t: pb::ChurnType) -> pb::ChurnRecord {
    pb::ChurnRecord {
        customer: format!("customers/{customer}"),
        churn_type: t as i32,
        reason_codes: vec![pb::ReasonCode::CoreServiceFailure as i32],
        evidence: "exit interview: the delivery failed three times".into(),
        ..Default::default()
    }
}

fn opened(complaint_id: String, customer_id: String) -> ipb::ComplaintOpenedEvent {
    ipb::ComplaintOpenedEvent {
        complaint_id,
        customer_id,
        ..Default::default()
    }
}

async fn list_churn(
    app: &mut TestApp,
    req: pb::ListChurnRecordsRequest,
) -> pb::ListChurnRecordsResponse {
    let req = app.req(req);
    app.client
        .list_churn_records(req)
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn churn_records_are_kept_valued_listed_and_idempotent() {
    let mut app = TestApp::spawn(Backend::Postgres).await;
    let (_, ids) = app.segment(&[250_000]);
    let request_id = new_id();
    let mut names = Vec::new();
    for _ in 0..2 {
        let req = app.req(pb::RecordChurnRequest {
            churn_record: Some(record(&ids[0], pb::ChurnType::Fault)),
            request_id: request_id.clone(),
        });
        names.push(app.client.record_churn(req).await.unwrap().into_inner());
    }
    assert_eq!(names[0].name, names[1].name);
    // No value given: the predicted CLV segmentation holds.
    assert_eq!(
        names[0].value_at_churn.clone().unwrap().minor_units,
        250_000
    );

    // Segmentation down: the churn is still recorded, without a value.
    app.seg.with(|s| s.down = true);
    let other = new_id();
    let req = app.req(pb::RecordChurnRequest {
        churn_record: Some(record(&other, pb::ChurnType::Competitive)),
        request_id: new_id(),
    });
    let r = app.client.record_churn(req).await.unwrap().into_inner();
    assert!(r.value_at_churn.is_none());
    app.seg.with(|s| s.down = false);

    let req = app.req(pb::GetChurnRecordRequest {
        name: r.name.clone(),
    });
    let got = app.client.get_churn_record(req).await.unwrap().into_inner();
    assert_eq!(got.churn_type, pb::ChurnType::Competitive as i32);

    let list = list_churn(
        &mut app,
        pb::ListChurnRecordsRequest {
            filter: "churn_type == \"FAULT\"".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(list.churn_records.len(), 1);
    assert_eq!(
        list.churn_records[0].customer,
        format!("customers/{}", ids[0])
    );
    // Paging: one per page, newest first, then the end.
    let page = list_churn(
        &mut app,
        pb::ListChurnRecordsRequest {
            page_size: 1,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(page.churn_records[0].name, r.name);
    let page = list_churn(
        &mut app,
        pb::ListChurnRecordsRequest {
            page_size: 1,
            page_token: page.next_page_token,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(page.churn_records[0].name, names[0].name);
    assert!(page.next_page_token.is_empty());

    // Bad input names its fields.
    let req = app.req(pb::RecordChurnRequest {
        churn_record: Some(pb::ChurnRecord {
            customer: "people/1".into(),
            reason_codes: vec![99],
            churn_time: Some(ts(chrono::Utc::now() + chrono::Duration::days(3))),
            ..Default::default()
        }),
        request_id: new_id(),
    });
    let err = app.client.record_churn(req).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let mut fields = violated_fields(&err);
    fields.sort();
    assert_eq!(
        fields,
        vec![
            "churn_record.churn_time",
            "churn_record.churn_type",
            "churn_record.customer",
            "churn_record.reason_codes[0]"
        ]
    );
    let req = app.req(pb::ListChurnRecordsRequest {
        filter: "churn_type == \"BORED\"".into(),
        ..Default::default()
    });
    let err = app.client.list_churn_records(req).await.unwrap_err();
    assert_eq!(violated_fields(&err), vec!["filter"]);
    app.stop().await;
}

async fn classify(
    app: &mut TestApp,
    customer: &str,
    signals: pb::ChurnSignals,
) -> pb::ChurnClassification {
    let req = app.req(pb::ClassifyChurnRequest {
        customer: format!("customers/{customer}"),
        signals: Some(signals),
    });
    app.client.classify_churn(req).await.unwrap().into_inner()
}

#[tokio::test]
async fn classify_churn_reads_each_signal() {
    let mut app = TestApp::spawn(Backend::Sqlite).await;
    let quiet = new_id();
    let none = pb::ChurnSignals::default();
    let c = classify(&mut app, &quiet, none.clone()).await;
    assert_eq!(c.churn_type, pb::ChurnType::Natural as i32);
    assert!(c.targetable);

    let signal = |f: fn(&mut pb::ChurnSignals)| {
        let mut s = pb::ChurnSignals::default();
        f(&mut s);
        s
    };
    let c = classify(&mut app, &quiet, signal(|s| s.payment_failed = true)).await;
    assert_eq!(c.churn_type, pb::ChurnType::NonMalicious as i32);
    let c = classify(
        &mut app,
        &quiet,
        signal(|s| s.competitor_mentioned = "TeaCo".into()),
    )
    .await;
    assert_eq!(c.churn_type, pb::ChurnType::Competitive as i32);
    assert!(c.reasons.iter().any(|r| r.contains("TeaCo")));
    for s in [
        signal(|s| s.fraud_suspected = true),
        signal(|s| s.credit_default = true),
    ] {
        let c = classify(&mut app, &quiet, s).await;
        assert_eq!(c.churn_type, pb::ChurnType::Malicious as i32);
        assert!(!c.targetable);
    }

    // The complaint history comes from interactions' events.
    let angry = new_id();
    let complaint = new_id();
    app.publish_interactions(&opened(complaint.clone(), angry.clone()))
        .await;
    app.settle().await;
    let c = classify(&mut app, &angry, none.clone()).await;
    assert_eq!(c.churn_type, pb::ChurnType::Fault as i32);
    assert!(
        c.reasons.iter().any(|r| r.contains("1 unresolved")),
        "{:?}",
        c.reasons
    );

    // About to miss its SLA: said so, still a fault.
    app.publish_interactions(&ipb::ComplaintSlaAtRiskEvent {
        complaint_id: complaint.clone(),
        customer_id: angry.clone(),
        target: ipb::SlaTarget::Resolution as i32,
        ..Default::default()
    })
    .await;
    app.settle().await;
    let c = classify(&mut app, &angry, none.clone()).await;
    assert_eq!(c.churn_type, pb::ChurnType::Fault as i32);
    assert!(
        c.reasons
            .iter()
            .any(|r| r == "1 complaint(s) about to miss their SLA"),
        "{:?}",
        c.reasons
    );

    app.publish_interactions(&ipb::ComplaintSlaBreachedEvent {
        complaint_id: complaint.clone(),
        customer_id: angry.clone(),
        ..Default::default()
    })
    .await;
    // Escalated by the SLA policy when the complaint was at risk: no sign of the
    // customer's anger, so still a fault.
    app.publish_interactions(&ipb::ComplaintStatusChangedEvent {
        complaint_id: complaint.clone(),
        customer_id: angry.clone(),
        from_state: ipb::ComplaintState::Open as i32,
        to_state: ipb::ComplaintState::Open as i32,
        escalation_level: 1,
        policy_escalations: 1,
    })
    .await;
    app.settle().await;
    let c = classify(&mut app, &angry, none.clone()).await;
    assert_eq!(c.churn_type, pb::ChurnType::Fault as i32, "{:?}", c.reasons);

    app.publish_interactions(&ipb::ComplaintStatusChangedEvent {
        complaint_id: complaint.clone(),
        customer_id: angry.clone(),
        from_state: ipb::ComplaintState::Open as i32,
        to_state: ipb::ComplaintState::InProgress as i32,
        escalation_level: 2,
        policy_escalations: 1,
    })
    .await;
    app.settle().await;
    let c = classify(&mut app, &angry, none.clone()).await;
    assert_eq!(c.churn_type, pb::ChurnType::Retaliatory as i32);

    // A complaint opened and resolved leaves no fault signal.
    let calm = new_id();
    let calm_complaint = new_id();
    app.publish_interactions(&opened(calm_complaint.clone(), calm.clone()))
        .await;
    app.publish_interactions(&ipb::ComplaintResolvedEvent {
        complaint_id: calm_complaint.clone(),
        customer_id: calm.clone(),
        ..Default::default()
    })
    .await;
    // Interactions' backfill replays the resolved complaint as opened, then
    // resolved: opened again under a new event id changes nothing here.
    app.publish_interactions(&opened(calm_complaint, calm.clone()))
        .await;
    app.settle().await;
    let c = classify(&mut app, &calm, none).await;
    assert_eq!(
        c.churn_type,
        pb::ChurnType::Natural as i32,
        "{:?}",
        c.reasons
    );
    app.stop().await;
}

#[tokio::test]
async fn the_playbook_needs_segmentation_and_erasure_removes_the_customer() {
    let mut app = TestApp::spawn(Backend::Postgres).await;
    let (segment, ids) = app.segment(&[300_000]);
    app.publish_interactions(&opened(new_id(), ids[0].clone()))
        .await;
    app.settle().await;
    let req = app.req(pb::RecommendRetentionActionsRequest {
        customer: format!("customers/{}", ids[0]),
    });
    let actions = app
        .client
        .recommend_retention_actions(req)
        .await
        .unwrap()
        .into_inner()
        .actions;
    assert_eq!(actions[0].action, "RESOLVE_OPEN_COMPLAINTS");
    assert!(actions.iter().all(|a| !a.reason.is_empty()));

    app.seg.with(|s| s.down = true);
    let req = app.req(pb::RecommendRetentionActionsRequest {
        customer: format!("customers/{}", ids[0]),
    });
    let err = app
        .client
        .recommend_retention_actions(req)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    app.seg.with(|s| s.down = false);

    // Erased: churn records and complaint history go; the campaign keeps its
    // count under a pseudonym.
    let req = app.req(pb::RecordChurnRequest {
        churn_record: Some(record(&ids[0], pb::ChurnType::Fault)),
        request_id: new_id(),
    });
    app.client.record_churn(req).await.unwrap();
    let c = app.create(TestApp::campaign(&segment)).await;
    app.launch(&c.name).await.unwrap();
    app.publish(
        "retention.profile.events",
        &ppb::CustomerErasedEvent {
            customer_id: ids[0].clone(),
            erase_time: None,
        },
    )
    .await;
    app.settle().await;
    let id = &ids[0];
    for table in ["churn_records", "complaint_signals", "campaign_targets"] {
        assert_eq!(
            app.count(&format!(
                "SELECT COUNT(*) FROM {table} WHERE customer_id = '{id}'"
            ))
            .await,
            0,
            "{table} still holds the erased customer"
        );
    }
    assert_eq!(app.results(&c.name).await.treated.unwrap().targets, 1);
    app.stop().await;
}
