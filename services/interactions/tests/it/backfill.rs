//! BackfillEvents: each complaint replayed as the events that lead to its current
//! state, each survey as recorded, for one consumer group, a page of customers per
//! call; bad requests name their fields; only `interactions.admin` may ask.

use std::collections::BTreeMap;

use prost::Message;
use retention_proto::common::EventEnvelope;
use retention_proto::interactions as pb;
use retention_testkit::{Backend, on_both_backends};
use sea_orm::{ConnectionTrait, Statement};
use tonic::Code;

use crate::harness::*;

const ADMIN: &[&str] = &["interactions.admin"];

fn request(group: &str) -> pb::BackfillEventsRequest {
    pb::BackfillEventsRequest {
        consumer_group: group.into(),
        ..Default::default()
    }
}

/// Every outbox envelope, in outbox order.
pub(crate) async fn envelopes(app: &TestApp) -> Vec<EventEnvelope> {
    let db = app.inner.database().await.unwrap();
    db.query_all_raw(Statement::from_string(
        db.get_database_backend(),
        "SELECT envelope FROM outbox_events ORDER BY seq".to_string(),
    ))
    .await
    .unwrap()
    .iter()
    .map(|r| {
        let bytes: Vec<u8> = r.try_get_by_index(0).unwrap();
        EventEnvelope::decode(bytes.as_slice()).unwrap()
    })
    .collect()
}

/// Calls BackfillEvents until the range is done; the summed counts, and the calls made.
async fn backfill_all(
    app: &mut TestApp,
    mut req: pb::BackfillEventsRequest,
) -> (i64, BTreeMap<String, i64>, usize) {
    let (mut customers, mut events, mut calls) = (0, BTreeMap::new(), 0);
    loop {
        let r = app
            .client
            .backfill_events(app.inner.req(req.clone(), ADMIN))
            .await
            .expect("backfill")
            .into_inner();
        calls += 1;
        customers += r.customer_count;
        for (t, n) in r.event_counts {
            let t = t
                .trim_start_matches("retention.interactions.v1.")
                .to_string();
            *events.entry(t).or_default() += n;
        }
        if r.next_page_token.is_empty() {
            return (customers, events, calls);
        }
        req.page_token = r.next_page_token;
    }
}

fn counts(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
    pairs.iter().map(|(t, n)| (t.to_string(), *n)).collect()
}

fn resolution() -> Option<pb::Resolution> {
    Some(pb::Resolution {
        outcome: pb::ResolutionOutcome::Fixed as i32,
        root_cause: "courier".into(),
        service_gap: pb::ServiceGap::Procedure as i32,
        ..Default::default()
    })
}

fn survey(customer: &str, csat: i32) -> pb::RecordSurveyRequest {
    pb::RecordSurveyRequest {
        survey: Some(pb::Survey {
            customer: customer.into(),
            csat,
            expectation: 8,
            perceived: 6,
            ..Default::default()
        }),
        request_id: String::new(),
    }
}

async fn replays_each_complaint_in_its_state_and_each_survey(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    // x: one complaint open and past its SLA, one escalated, one resolved, one
    // closed, two surveys. y: a survey only.
    let (x, y) = (customer(), customer());
    let late = app.open(&x, pb::Severity::Low).await;
    app.second_replica()
        .await
        .sweep(chrono::Utc::now() + chrono::Duration::days(30))
        .await
        .unwrap();
    let escalated = app.open(&x, pb::Severity::Medium).await;
    app.client
        .escalate_complaint(app.req(pb::EscalateComplaintRequest {
            name: escalated.name.clone(),
            reason: "VIP".into(),
            etag: String::new(),
        }))
        .await
        .unwrap();
    let resolved = app.open(&x, pb::Severity::High).await;
    let closed = app.open(&x, pb::Severity::High).await;
    for c in [&resolved, &closed] {
        app.client
            .resolve_complaint(app.req(pb::ResolveComplaintRequest {
                name: c.name.clone(),
                resolution: resolution(),
                etag: String::new(),
            }))
            .await
            .unwrap();
    }
    app.client
        .close_complaint(app.req(pb::CloseComplaintRequest {
            name: closed.name.clone(),
            etag: String::new(),
        }))
        .await
        .unwrap();
    for (who, csat) in [(&x, 4), (&x, 2), (&y, 5)] {
        app.client
            .record_survey(app.req(survey(who, csat)))
            .await
            .unwrap();
    }
    let live = envelopes(&app).await;
    assert!(live.iter().all(|e| e.target_group.is_empty()));

    let (customers, events, calls) = backfill_all(&mut app, request("segmentation")).await;
    assert_eq!((customers, calls), (2, 1));
    assert_eq!(
        events,
        counts(&[
            ("ComplaintOpenedEvent", 4),
            // The late one: first response and resolution missed.
            ("ComplaintSlaBreachedEvent", 2),
            ("ComplaintResolvedEvent", 2),
            // The escalated, resolved and closed ones.
            ("ComplaintStatusChangedEvent", 3),
            ("SurveyRecordedEvent", 3),
        ])
    );
    let all = envelopes(&app).await;
    let replay = &all[live.len()..];
    assert_eq!(replay.len(), 14);
    assert!(replay.iter().all(|e| e.target_group == "segmentation"));
    let statuses: BTreeMap<String, (i32, i32, i32)> = replay
        .iter()
        .filter_map(|e| {
            retention_events::decode_payload::<pb::ComplaintStatusChangedEvent>(e)
                .unwrap()
                .map(|s| {
                    (
                        format!("complaints/{}", s.complaint_id),
                        (s.from_state, s.to_state, s.escalation_level),
                    )
                })
        })
        .collect();
    use pb::ComplaintState as S;
    assert_eq!(
        statuses,
        BTreeMap::from([
            (escalated.name.clone(), (S::Open as i32, S::Open as i32, 1)),
            (
                resolved.name.clone(),
                (S::Open as i32, S::Resolved as i32, 0)
            ),
            (
                closed.name.clone(),
                (S::Resolved as i32, S::Closed as i32, 0)
            ),
        ])
    );
    let breached: Vec<String> = replay
        .iter()
        .filter_map(|e| {
            retention_events::decode_payload::<pb::ComplaintSlaBreachedEvent>(e)
                .unwrap()
                .map(|b| format!("complaints/{}", b.complaint_id))
        })
        .collect();
    assert_eq!(breached, vec![late.name.clone(), late.name.clone()]);
    let survey_ids = |envs: &[EventEnvelope]| -> Vec<String> {
        let mut v: Vec<String> = envs
            .iter()
            .filter_map(|e| {
                retention_events::decode_payload::<pb::SurveyRecordedEvent>(e)
                    .unwrap()
                    .map(|s| s.survey_id)
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(survey_ids(replay), survey_ids(&live), "surveys as recorded");

    // One customer per call, and a range holding only y.
    let mut paged = request("winback");
    paged.page_size = 1;
    let (n, by_type, calls) = backfill_all(&mut app, paged).await;
    assert_eq!((n, calls, by_type), (2, 2, events));
    let (xid, yid) = (
        x.trim_start_matches("customers/"),
        y.trim_start_matches("customers/"),
    );
    let mut only_y = request("segmentation");
    only_y.customer_id_from = yid.to_string();
    let (n, by_type, _) = backfill_all(&mut app, only_y).await;
    assert_eq!(
        (n, by_type),
        (1, counts(&[("SurveyRecordedEvent", 1)])),
        "{xid} < {yid}"
    );
    app.stop().await;
}
on_both_backends!(
    backfill_replays,
    replays_each_complaint_in_its_state_and_each_survey
);

#[tokio::test]
async fn bad_backfills_name_their_fields_and_need_the_admin_scope() {
    let mut app = TestApp::spawn(Backend::Sqlite).await;
    app.open(&customer(), pb::Severity::Low).await;
    for (req, field) in [
        (request(""), "consumer_group"),
        (request("a b"), "consumer_group"),
        (
            pb::BackfillEventsRequest {
                customer_id_from: "x".into(),
                customer_id_to: "x".into(),
                ..request("segmentation")
            },
            "customer_id_to",
        ),
        (
            pb::BackfillEventsRequest {
                page_size: -1,
                ..request("segmentation")
            },
            "page_size",
        ),
    ] {
        let err = app
            .client
            .backfill_events(app.inner.req(req.clone(), ADMIN))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{req:?}");
        assert_eq!(violated_fields(&err), vec![field], "{req:?}");
    }
    let before = app.count("SELECT COUNT(*) FROM outbox_events").await;
    let err = app
        .client
        .backfill_events(app.req(request("segmentation")))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::PermissionDenied,
        "read and write are not enough"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM outbox_events").await,
        before
    );
    let ok = app
        .client
        .backfill_events(app.inner.req(request("segmentation"), ADMIN))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.customer_count, 1);

    // Only the backfill that ran is in the audit trail, read with `audit.read`
    // (the admin scope does not stand in for it).
    let audit = pb::ListAuditRecordsRequest {
        action: "events.backfill".into(),
        ..Default::default()
    };
    let denied = app
        .client
        .list_audit_records(app.inner.req(audit.clone(), ADMIN))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let rows = app
        .client
        .list_audit_records(app.inner.req(audit, &["audit.read"]))
        .await
        .unwrap()
        .into_inner()
        .audit_records;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].resources, ["segmentation"]);
    assert_eq!(rows[0].seq, 1);
    app.stop().await;
}
