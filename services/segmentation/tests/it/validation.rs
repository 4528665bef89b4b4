//! Bad input answers INVALID_ARGUMENT naming the field; scopes are enforced.

use retention_proto::segmentation as pb;
use retention_testkit::Backend;

use crate::harness::*;

#[tokio::test]
async fn bad_requests_name_their_fields() {
    let mut app = TestApp::spawn(Backend::Sqlite).await;
    let req = app.req(pb::CreateSegmentRequest {
        segment: Some(pb::Segment {
            display_name: String::new(),
            filter: r#"value_tier == "platinum""#.into(),
            ..Default::default()
        }),
        request_id: "has spaces".into(),
    });
    let err = app.client.create_segment(req).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        violated_fields(&err),
        vec!["request_id", "segment.display_name", "segment.filter"]
    );
    assert!(
        err.message().contains("filter") || format!("{err:?}").contains("PLATINUM"),
        "the enum's allowed values are named: {err:?}"
    );

    let req = app.req(pb::ListCustomerInsightsRequest {
        page_size: -1,
        filter: "p_alive >".into(),
        order_by: "email desc".into(),
        page_token: "garbage".into(),
    });
    let err = app.client.list_customer_insights(req).await.unwrap_err();
    assert_eq!(
        violated_fields(&err),
        vec!["page_size", "filter", "order_by", "page_token"]
    );

    let req = app.req(pb::GetSegmentRequest {
        name: "segments/42".into(),
    });
    let err = app.client.get_segment(req).await.unwrap_err();
    assert_eq!(violated_fields(&err), vec!["name"]);

    let req = app.req(pb::GetPortfolioReportRequest {
        period_days: 400,
        periods: -1,
    });
    let err = app.client.get_portfolio_report(req).await.unwrap_err();
    assert_eq!(violated_fields(&err), vec!["period_days", "periods"]);

    let req = app.req(pb::GetModelParametersRequest {});
    let err = app.client.get_model_parameters(req).await.unwrap_err();
    assert_eq!(
        err.code(),
        tonic::Code::FailedPrecondition,
        "nothing fitted yet"
    );

    // Without customers, a run fails with a reason instead of fitting nothing.
    let run = app.run_scoring().await;
    assert_eq!(run.state, pb::ScoringRunState::Failed as i32);
    assert!(run.error.contains("no customer"), "{}", run.error);
    app.stop().await;
}

#[tokio::test]
async fn scopes_guard_reads_writes_and_runs() {
    let mut app = TestApp::spawn(Backend::Sqlite).await;
    let req = app
        .inner
        .req(pb::RunScoringRequest::default(), &["segmentation.read"]);
    let err = app.client.run_scoring(req).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    let req = app.inner.req(
        pb::CreateSegmentRequest {
            segment: Some(pb::Segment {
                display_name: "x".into(),
                filter: "purchases > 1".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        },
        &["segmentation.read"],
    );
    let err = app.client.create_segment(req).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    let req = tonic::Request::new(pb::ListSegmentsRequest::default());
    let err = app.client.list_segments(req).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    let req = app.req(pb::ListSegmentsRequest::default());
    assert!(app.client.list_segments(req).await.is_ok());
    app.stop().await;
}
