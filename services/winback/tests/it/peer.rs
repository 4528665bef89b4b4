//! What win-back answers when segmentation answers each gRPC code (the table in
//! deploy/OPERATIONS.md), checked over the wire with the stand-in segmentation.

use std::time::Duration;

use retention_errors::tonic_types::StatusExt;
use retention_proto::winback as pb;
use retention_testkit::Backend;
use tonic::{Code, Status};

use crate::harness::*;

/// The code segmentation answers, how the stand-in answers it, what the caller gets.
type Case = (&'static str, fn() -> Status, Code);

async fn recommend(app: &mut TestApp, customer: &str) -> Result<Vec<pb::RetentionAction>, Status> {
    let req = app.req(pb::RecommendRetentionActionsRequest {
        customer: format!("customers/{customer}"),
    });
    app.client
        .recommend_retention_actions(req)
        .await
        .map(|r| r.into_inner().actions)
}

/// What segmentation answers before its first scoring run (its own builder and words).
fn not_scored() -> Status {
    retention_errors::failed_precondition(
        "NOT_SCORED",
        "insights/c1",
        "no scoring run has fitted the models yet; call RunScoring",
    )
}

#[tokio::test]
async fn recommend_before_the_first_scoring_run_is_failed_precondition_not_internal() {
    let mut app = TestApp::spawn(Backend::Postgres).await;
    let customer = new_id();
    app.seg.with(|s| s.answer = Some(not_scored));
    let err = recommend(&mut app, &customer).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("a scoring run is needed"), "{err:?}");
    assert!(err.message().contains("RunScoring"), "{err:?}");
    assert!(err.message().contains("nothing was changed"), "{err:?}");
    let v = err
        .get_details_precondition_failure()
        .expect("precondition details")
        .violations;
    assert_eq!(v[0].r#type, "PEER");
    assert_eq!(v[0].subject, format!("customers/{customer}"));

    // Scored since: the playbook answers.
    app.seg.with(|s| {
        s.answer = None;
        s.insights
            .insert(customer.clone(), insight(&customer, 300_000));
    });
    let actions = recommend(&mut app, &customer).await.unwrap();
    assert!(!actions.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn every_code_segmentation_answers_reaches_the_caller_as_mapped() {
    let mut app = TestApp::spawn(Backend::Postgres).await;
    let (_, ids) = app.segment(&[300_000]);
    let scored = ids[0].clone();
    let unknown = new_id();
    // OK: the insight is used.
    assert!(!recommend(&mut app, &scored).await.unwrap().is_empty());
    // NOT_FOUND on a customer's insight: segmentation does not know the customer,
    // the playbook answers from win-back's own records (here: nothing to do).
    assert_eq!(recommend(&mut app, &unknown).await.unwrap(), vec![]);

    let cases: Vec<Case> = vec![
        (
            "CANCELLED",
            || Status::cancelled("shutting down"),
            Code::Unavailable,
        ),
        ("UNKNOWN", || Status::unknown("?"), Code::Internal),
        (
            "INVALID_ARGUMENT",
            || retention_errors::invalid_argument([("name", "bad customer id")]),
            Code::InvalidArgument,
        ),
        (
            "DEADLINE_EXCEEDED",
            || Status::deadline_exceeded("deadline of 2000 ms exceeded"),
            Code::DeadlineExceeded,
        ),
        (
            "ALREADY_EXISTS",
            || Status::already_exists("?"),
            Code::Internal,
        ),
        (
            "PERMISSION_DENIED",
            || Status::permission_denied("missing scope segmentation.read"),
            Code::FailedPrecondition,
        ),
        (
            "RESOURCE_EXHAUSTED",
            || retention_errors::rate_limited("too many requests", Duration::from_secs(5)),
            Code::Unavailable,
        ),
        ("FAILED_PRECONDITION", not_scored, Code::FailedPrecondition),
        ("ABORTED", || Status::aborted("conflict"), Code::Unavailable),
        ("OUT_OF_RANGE", || Status::out_of_range("?"), Code::Internal),
        (
            "UNIMPLEMENTED",
            || Status::unimplemented("?"),
            Code::Internal,
        ),
        ("INTERNAL", || Status::internal("boom"), Code::Internal),
        (
            "UNAVAILABLE",
            || Status::unavailable("restarting"),
            Code::Unavailable,
        ),
        ("DATA_LOSS", || Status::data_loss("?"), Code::Internal),
        (
            "UNAUTHENTICATED",
            || Status::unauthenticated("bad signature"),
            Code::FailedPrecondition,
        ),
    ];
    for (peer, answer, want) in cases {
        app.seg.with(|s| s.answer = Some(answer));
        let err = recommend(&mut app, &scored).await.unwrap_err();
        assert_eq!(err.code(), want, "segmentation answered {peer}: {err:?}");
        match want {
            Code::Unavailable => assert!(
                err.get_details_retry_info()
                    .and_then(|r| r.retry_delay)
                    .is_some(),
                "{peer}: no RetryInfo in {err:?}"
            ),
            Code::Internal => assert!(
                err.message().starts_with("internal error (id "),
                "{peer}: {err:?}"
            ),
            Code::FailedPrecondition | Code::DeadlineExceeded => assert!(
                err.message().contains("nothing was changed"),
                "{peer}: {err:?}"
            ),
            _ => {}
        }
    }
    app.seg.with(|s| s.answer = None);
    assert!(!recommend(&mut app, &scored).await.unwrap().is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_launch_before_the_first_scoring_run_is_failed_precondition_and_changes_nothing() {
    let mut app = TestApp::spawn(Backend::Postgres).await;
    let (segment, _) = app.segment(&[100_000, 200_000]);
    let c = app.create(TestApp::campaign(&segment)).await;
    app.seg.with(|s| {
        s.answer = Some(|| {
            retention_errors::failed_precondition(
                "NOT_FITTED",
                "modelParameters",
                "no scoring run has fitted the models yet; call RunScoring",
            )
        })
    });
    let err = app.launch(&c.name).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("RunScoring"), "{err:?}");
    assert_eq!(
        app.get(&c.name).await.state,
        pb::CampaignState::Draft as i32
    );
    assert_eq!(app.launch_traces().await, (0, 0, 0));
    app.stop().await;
}
