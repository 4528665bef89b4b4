//! GetSatisfactionSummary on a hand-computed fixture.

use chrono::{DateTime, Duration, TimeZone, Utc};
use retention_interactions::domain::*;
use retention_interactions::store::repo;
use retention_proto::interactions as pb;
use retention_testkit::Backend;

use crate::harness::*;

fn at(h: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap() + Duration::hours(h)
}

fn complaint(id: usize, category: ComplaintCategory, opened: i64) -> Complaint {
    Complaint {
        id: uuid::Uuid::now_v7().to_string(),
        customer_id: format!("{id:08}-0000-7000-8000-000000000000"),
        category,
        severity: Severity::Medium,
        priority: Priority::Normal,
        channel: None,
        subject: "s".into(),
        description: String::new(),
        state: ComplaintState::Open,
        assignee: None,
        escalation_level: 0,
        customer_tier: CustomerTier::Ordinary,
        open_time: at(opened),
        first_response_time: None,
        first_response_due: at(opened + 8),
        resolution_due: at(opened + 72),
        first_response_breached: false,
        resolution_breached: false,
        resolution: None,
        reopen_count: 0,
        close_time: None,
        update_time: at(opened),
        version: 1,
        calendar_id: None,
        resolution_remaining: None,
        holds: Vec::new(),
        next_response_target: None,
        next_response_due: None,
        next_response_breached: false,
        team: None,
        warnings: Default::default(),
    }
}

fn resolved(mut c: Complaint, after_hours: i64, gap: ServiceGap) -> Complaint {
    c.state = ComplaintState::Resolved;
    c.first_response_time = Some(c.open_time + Duration::hours(1));
    c.resolution = Some(Resolution {
        outcome: ResolutionOutcome::Fixed,
        compensation: None,
        root_cause: String::new(),
        service_gap: Some(gap),
        resolve_time: c.open_time + Duration::hours(after_hours),
    });
    c
}

fn survey(
    complaint: Option<&Complaint>,
    csat: Option<i32>,
    nps: Option<i32>,
    gap: Option<(i32, i32)>,
    h: i64,
) -> Survey {
    Survey {
        id: uuid::Uuid::now_v7().to_string(),
        customer_id: "00000000-0000-7000-8000-000000000000".into(),
        complaint_id: complaint.map(|c| c.id.clone()),
        csat,
        nps,
        expectation: gap.map(|g| g.0),
        perceived: gap.map(|g| g.1),
        occur_time: at(h),
    }
}

#[tokio::test]
async fn summary_matches_the_hand_computed_fixture() {
    let mut app = TestApp::spawn(Backend::Postgres).await;
    let db = retention_db::connect(&retention_db::DbOptions::new(
        app.inner.settings.database.url.clone(),
    ))
    .await
    .unwrap();
    // Complaints in March: two delivery (resolved in 10 h and 30 h, procedure and
    // behaviour gaps), one price (resolved in 20 h but its resolution breached), one
    // billing still open and first-response breached, one outside the range.
    let d1 = resolved(
        complaint(1, ComplaintCategory::Delivery, 0),
        10,
        ServiceGap::Procedure,
    );
    let d2 = resolved(
        complaint(2, ComplaintCategory::Delivery, 5),
        30,
        ServiceGap::Behaviour,
    );
    let mut p = resolved(
        complaint(3, ComplaintCategory::Price, 10),
        20,
        ServiceGap::Promotion,
    );
    p.resolution_breached = true;
    let mut b = complaint(4, ComplaintCategory::Billing, 20);
    b.first_response_breached = true;
    let open = complaint(5, ComplaintCategory::Billing, 30); // SLA outcome not yet known
    let outside = complaint(6, ComplaintCategory::Delivery, 24 * 40);
    for c in [&d1, &d2, &p, &b, &open, &outside] {
        repo::insert_complaint(&db, c).await.unwrap();
    }
    // Surveys: CSAT 5,4,2 (mean 11/3, satisfied 2/3); NPS 10,9,7,3,0 -> (2-2)/5 = 0;
    // plus 9 -> with category filter only d1/d2 surveys count.
    let surveys = [
        survey(Some(&d1), Some(5), Some(10), Some((7, 9)), 1),
        survey(Some(&d2), Some(4), Some(9), Some((8, 6)), 2),
        survey(Some(&p), Some(2), Some(7), Some((9, 5)), 3),
        survey(None, None, Some(3), None, 4),
        survey(None, None, Some(0), Some((5, 5)), 5),
        survey(None, Some(1), Some(0), None, 24 * 40),
    ];
    for s in &surveys {
        repo::insert_survey(&db, s).await.unwrap();
    }
    let range = |category: pb::ComplaintCategory| pb::GetSatisfactionSummaryRequest {
        start_time: Some(prost_types::Timestamp {
            seconds: at(0).timestamp(),
            nanos: 0,
        }),
        end_time: Some(prost_types::Timestamp {
            seconds: at(24 * 31).timestamp(),
            nanos: 0,
        }),
        category: category as i32,
    };
    let s = app
        .client
        .get_satisfaction_summary(app.req(range(pb::ComplaintCategory::Unspecified)))
        .await
        .unwrap()
        .into_inner();
    let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
    assert_eq!(s.survey_count, 5);
    assert!(close(s.csat_mean, 11.0 / 3.0), "{}", s.csat_mean);
    assert!(close(s.csat_satisfied_share, 2.0 / 3.0));
    assert!(close(s.nps, 0.0), "{}", s.nps);
    // Gaps: +2, -2, -4, 0 -> mean -1.
    assert!(close(s.mean_expectation_gap, -1.0));
    assert_eq!(s.complaint_count, 5);
    let by_cat: Vec<(i32, i64)> = s
        .complaints_by_category
        .iter()
        .map(|c| (c.category, c.count))
        .collect();
    assert!(by_cat.contains(&(pb::ComplaintCategory::Delivery as i32, 2)));
    assert!(by_cat.contains(&(pb::ComplaintCategory::Billing as i32, 2)));
    assert!(by_cat.contains(&(pb::ComplaintCategory::Price as i32, 1)));
    assert_eq!(s.complaints_by_service_gap.len(), 3);
    // Known SLA outcomes: d1, d2 (met), p (breached), b (breached) -> 2/4.
    assert!(
        close(s.sla_compliance_rate, 0.5),
        "{}",
        s.sla_compliance_rate
    );
    // MTTR over d1, d2, p: (10 + 30 + 20) / 3 = 20 h.
    assert!(
        close(s.mean_time_to_resolve_hours, 20.0),
        "{}",
        s.mean_time_to_resolve_hours
    );

    // Filtered to delivery: complaints d1, d2 and the surveys tied to them.
    let d = app
        .client
        .get_satisfaction_summary(app.req(range(pb::ComplaintCategory::Delivery)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.complaint_count, 2);
    assert_eq!(d.survey_count, 2);
    assert!(close(d.csat_mean, 4.5));
    assert!(close(d.nps, 100.0));
    assert!(close(d.sla_compliance_rate, 1.0));
    assert!(close(d.mean_time_to_resolve_hours, 20.0));
    app.stop().await;
}
