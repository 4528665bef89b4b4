//! Bad input is answered with field violations; scopes are enforced.

use retention_proto::interactions as pb;
use retention_testkit::Backend;
use tonic::Code;

use crate::harness::*;

#[tokio::test]
async fn bad_input_gets_field_violations() {
    let mut app = TestApp::spawn(Backend::Sqlite).await;
    let who = customer();
    let cases: Vec<(pb::Complaint, &str)> = vec![
        (
            pb::Complaint {
                customer: "nobody".into(),
                ..complaint(&who, pb::Severity::Low)
            },
            "complaint.customer",
        ),
        (
            pb::Complaint {
                category: 0,
                ..complaint(&who, pb::Severity::Low)
            },
            "complaint.category",
        ),
        (
            pb::Complaint {
                category: 99,
                ..complaint(&who, pb::Severity::Low)
            },
            "complaint.category",
        ),
        (
            pb::Complaint {
                severity: 0,
                ..complaint(&who, pb::Severity::Low)
            },
            "complaint.severity",
        ),
        (
            pb::Complaint {
                subject: " ".into(),
                ..complaint(&who, pb::Severity::Low)
            },
            "complaint.subject",
        ),
        (
            pb::Complaint {
                subject: "s".repeat(201),
                ..complaint(&who, pb::Severity::Low)
            },
            "complaint.subject",
        ),
    ];
    for (c, field) in cases {
        let err = app
            .client
            .open_complaint(app.req(pb::OpenComplaintRequest {
                complaint: Some(c),
                request_id: String::new(),
            }))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{field}");
        assert!(
            violated_fields(&err).contains(&field.to_string()),
            "{field}: {:?}",
            violated_fields(&err)
        );
    }
    let err = app
        .client
        .record_survey(app.req(pb::RecordSurveyRequest {
            survey: Some(pb::Survey {
                customer: who.clone(),
                csat: 6,
                nps: Some(11),
                expectation: 3,
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&err),
        vec!["survey.csat", "survey.nps", "survey.perceived"]
    );
    let err = app
        .client
        .create_sla_policy(app.req(pb::CreateSlaPolicyRequest {
            policy: Some(pb::SlaPolicy {
                priority: pb::Priority::High as i32,
                customer_tier: pb::CustomerTier::Key as i32,
                first_response_minutes: 60,
                resolution_minutes: 30,
                next_response_minutes: -1,
                ..Default::default()
            }),
        }))
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&err),
        vec!["policy.resolution_minutes", "policy.next_response_minutes"]
    );
    let err = app
        .client
        .get_satisfaction_summary(app.req(pb::GetSatisfactionSummaryRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), vec!["start_time", "end_time"]);
    let err = app
        .client
        .list_interactions(app.req(pb::ListInteractionsRequest {
            customer: who.clone(),
            page_size: 5000,
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), vec!["page_size"]);
    assert_eq!(app.count("SELECT COUNT(*) FROM complaints").await, 0);
    app.stop().await;
}

#[tokio::test]
async fn scopes_are_enforced() {
    let mut app = TestApp::spawn(Backend::Sqlite).await;
    let err = app
        .client
        .open_complaint(app.inner.req(
            pb::OpenComplaintRequest {
                complaint: Some(complaint(&customer(), pb::Severity::Low)),
                request_id: String::new(),
            },
            &["interactions.read"],
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("interactions.write"));
    let err = app
        .client
        .list_complaints(tonic::Request::new(pb::ListComplaintsRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert_eq!(
        <retention_interactions::Interactions as retention_server::host::Service>::scope_policy()
            .methods()
            .count(),
        29
    );
    app.stop().await;
}

#[tokio::test]
async fn compensation_beyond_max_minor_units_is_refused() {
    let mut app = TestApp::spawn(Backend::Sqlite).await;
    let name = app.open(&customer(), pb::Severity::Low).await.name;
    let resolve = |app: &TestApp, minor_units: i64| app.req(compensated(&name, minor_units));
    let max = retention_domain::MAX_MINOR_UNITS;
    for poison in [1 << 62, i64::MAX, max + 1, i64::MIN] {
        let err = app
            .client
            .resolve_complaint(resolve(&app, poison))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{poison}: {err:?}");
        let violations = retention_errors::field_violations(&err);
        assert_eq!(violations.len(), 1, "{poison}: {violations:?}");
        assert_eq!(violations[0].0, "resolution.compensation.minor_units");
        assert!(violations[0].1.contains(&max.to_string()), "{violations:?}");
    }
    let resolved = app
        .client
        .resolve_complaint(resolve(&app, max))
        .await
        .expect("an amount exactly at the bound is accepted")
        .into_inner();
    assert_eq!(
        resolved
            .resolution
            .unwrap()
            .compensation
            .unwrap()
            .minor_units,
        max
    );
    app.stop().await;
}
