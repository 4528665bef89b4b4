//! Warnings before a breach: each target of each complaint reported at risk once
//! (ComplaintSlaAtRisk), with two sweepers running at the same time, escalated when
//! the policy says so; a waiting complaint does not warn, and its resolution warning
//! moves with its clock.

use chrono::{DateTime, Duration, TimeZone, Utc};
use retention_interactions::app::{InteractionsApp, Swept};
use retention_interactions::domain::{Action, Complaint};
use retention_proto::interactions as pb;
use retention_testkit::{Backend, on_both_backends};

use crate::backfill::envelopes;
use crate::calendars::parcel_late;
use crate::clocks::retried;
use crate::harness::*;

/// Monday 2036-03-03 09:00 UTC: in the future, so the service's own sweep on the
/// real clock leaves these complaints to the test's sweeps.
fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2036, 3, 3, 9, 0, 0).unwrap()
}

/// Normal priority, ordinary tier: first response in 60 minutes, resolution in
/// 600, wall-clock time; at risk at 80 % (48 and 480 minutes), escalating.
fn escalating_policy(at_risk_percent: i32) -> pb::CreateSlaPolicyRequest {
    pb::CreateSlaPolicyRequest {
        policy: Some(pb::SlaPolicy {
            priority: pb::Priority::Normal as i32,
            customer_tier: pb::CustomerTier::Ordinary as i32,
            first_response_minutes: 60,
            resolution_minutes: 600,
            at_risk_percent,
            escalate_at_risk: true,
            ..Default::default()
        }),
    }
}

/// Both replicas sweep at `at` at the same time; what they reported together.
async fn sweep_twice(a: &InteractionsApp, b: &InteractionsApp, at: DateTime<Utc>) -> Swept {
    let (ra, rb) = tokio::join!(a.sweep(at), b.sweep(at));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    Swept {
        breaches: ra.breaches + rb.breaches,
        warnings: ra.warnings + rb.warnings,
    }
}

async fn complaint(app: &mut TestApp, id: &str) -> pb::Complaint {
    app.client
        .get_complaint(app.req(pb::GetComplaintRequest {
            name: format!("complaints/{id}"),
        }))
        .await
        .unwrap()
        .into_inner()
}

fn swept(breaches: usize, warnings: usize) -> Swept {
    Swept { breaches, warnings }
}

async fn warned_once(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let stored = app
        .client
        .create_sla_policy(app.req(escalating_policy(80)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (stored.at_risk_percent, stored.escalate_at_risk),
        (80, true)
    );

    let (a, b) = (app.second_replica().await, app.second_replica().await);
    let n = 8;
    let mut opened: Vec<Complaint> = Vec::new();
    for _ in 0..n {
        opened.push(retried(|| a.open_complaint_at(parcel_late(), "", t0())).await);
    }

    // Before 80 % of the first-response target, nothing.
    assert_eq!(
        sweep_twice(&a, &b, t0() + Duration::minutes(47)).await,
        swept(0, 0)
    );
    // At 50 minutes every first response is at risk: reported once in all.
    assert_eq!(
        sweep_twice(&a, &b, t0() + Duration::minutes(50)).await,
        swept(0, n)
    );
    assert_eq!(app.outbox_count("ComplaintSlaAtRiskEvent").await, n as i64);
    assert_eq!(
        sweep_twice(&a, &b, t0() + Duration::minutes(55)).await,
        swept(0, 0),
        "a warning is reported once"
    );
    let c = complaint(&mut app, &opened[0].id).await;
    assert!(c.first_response_at_risk && !c.resolution_at_risk);
    assert_eq!(
        c.escalation_level, 1,
        "the policy escalates at-risk complaints"
    );

    // One complaint answered in time, one waiting on the customer from 7 h
    // (a late first response: its breach is recorded with the pause).
    let answered = &opened[0].id;
    retried(|| {
        a.act_at(
            answered,
            Action::Acknowledge,
            "",
            t0() + Duration::minutes(56),
        )
    })
    .await;
    let waiting = &opened[1].id;
    retried(|| a.pause_complaint_at(waiting, "", t0() + Duration::hours(7))).await;

    // At 9 h: the six unanswered first responses are breached; the resolutions
    // (at risk from 8 h) warn, except the waiting one, whose clock stands still.
    assert_eq!(
        sweep_twice(&a, &b, t0() + Duration::hours(9)).await,
        swept(n - 2, n - 1)
    );
    let restarted = app.second_replica().await;
    assert_eq!(
        restarted
            .sweep(t0() + Duration::hours(9) + Duration::minutes(30))
            .await
            .unwrap(),
        swept(0, 0)
    );
    let c = complaint(&mut app, answered).await;
    assert!(c.first_response_at_risk && c.resolution_at_risk);
    assert_eq!(c.escalation_level, 2);
    let w = complaint(&mut app, waiting).await;
    assert!(!w.resolution_at_risk);

    // Resumed at 20 h with 180 of 600 minutes left: 60 of them before the last
    // 20 % (120 minutes), so the waiting one is at risk from 21 h.
    retried(|| a.resume_complaint_at(waiting, "", t0() + Duration::hours(20))).await;
    // Meanwhile the other resolutions (due at 10 h) were missed.
    assert_eq!(
        a.sweep(t0() + Duration::hours(20) + Duration::minutes(59))
            .await
            .unwrap(),
        swept(n - 1, 0)
    );
    assert_eq!(
        sweep_twice(&a, &b, t0() + Duration::hours(21)).await,
        swept(0, 1)
    );

    let warnings: Vec<pb::ComplaintSlaAtRiskEvent> = envelopes(&app)
        .await
        .iter()
        .filter_map(|e| retention_events::decode_payload(e).unwrap())
        .collect();
    assert_eq!(warnings.len(), 2 * n);
    let mut per_target = std::collections::BTreeMap::new();
    for w in &warnings {
        *per_target
            .entry((w.complaint_id.clone(), w.target))
            .or_insert(0) += 1;
    }
    assert_eq!(
        per_target.len(),
        2 * n,
        "one warning per target and complaint"
    );
    // Each escalation on a warning says the policy raised it, not a person.
    let escalations: Vec<pb::ComplaintStatusChangedEvent> = envelopes(&app)
        .await
        .iter()
        .filter_map(|e| retention_events::decode_payload(e).unwrap())
        .filter(|s: &pb::ComplaintStatusChangedEvent| s.from_state == s.to_state)
        .collect();
    assert_eq!(escalations.len(), 2 * n);
    assert!(
        escalations
            .iter()
            .all(|s| s.escalation_level > 0 && s.policy_escalations == s.escalation_level),
        "{escalations:?}"
    );
    let first = warnings
        .iter()
        .find(|w| w.complaint_id == *answered && w.target == pb::SlaTarget::Resolution as i32)
        .unwrap();
    assert_eq!(
        secs(&first.due_time),
        (t0() + Duration::minutes(600)).timestamp()
    );
    assert!(first.escalated);
    assert_eq!(first.escalation_level, 2);
    assert_eq!(
        app.outbox_count("ComplaintSlaBreachedEvent").await,
        2 * (n as i64 - 1)
    );
    app.stop().await;
}
on_both_backends!(at_risk_is_reported_once_with_two_sweepers, warned_once);

async fn policy_checks(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let stored = app
        .client
        .create_sla_policy(app.req(escalating_policy(0)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.at_risk_percent, 80, "0 means the default share");
    for bad in [-1, 100, 250] {
        let err = app
            .client
            .create_sla_policy(app.req(escalating_policy(bad)))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert_eq!(violated_fields(&err), ["policy.at_risk_percent"], "{bad}");
    }
    app.stop().await;
}
on_both_backends!(at_risk_percent_is_validated, policy_checks);
