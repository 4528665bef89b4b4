//! Launches and the other campaign state changes are rows of win-back's audit
//! trail, committed with the change: listed by ListAuditRecords (`audit.read`
//! only) and chained; a refused change leaves none.

use retention_proto::winback as pb;
use retention_testkit::Backend;

use crate::harness::*;

async fn rows(app: &mut TestApp) -> Vec<retention_proto::common::AuditRecord> {
    app.client
        .list_audit_records(
            app.inner
                .req(pb::ListAuditRecordsRequest::default(), &["audit.read"]),
        )
        .await
        .expect("list audit records")
        .into_inner()
        .audit_records
}

#[tokio::test]
async fn launches_and_state_changes_are_audit_rows() {
    let mut app = TestApp::spawn(Backend::Postgres).await;
    let segment = new_id();
    let ids = [new_id(), new_id()];
    app.seg.with(|s| {
        for id in &ids {
            s.insights.insert(id.clone(), insight(id, 100_000));
        }
        s.segments.insert(segment.clone(), ids.to_vec());
    });
    let c = app.create(TestApp::campaign(&segment)).await;
    assert!(rows(&mut app).await.is_empty(), "a create is not audited");
    app.launch(&c.name).await.expect("launch");
    app.client
        .pause_campaign(app.req(pb::PauseCampaignRequest {
            name: c.name.clone(),
            etag: String::new(),
        }))
        .await
        .expect("pause");
    app.client
        .cancel_campaign(app.req(pb::CancelCampaignRequest {
            name: c.name.clone(),
            etag: String::new(),
        }))
        .await
        .expect("cancel");
    // Refused: a cancelled campaign cannot launch, and nothing is recorded.
    let refused = app.launch(&c.name).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);

    let got = rows(&mut app).await;
    let actions: Vec<&str> = got.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(
        actions,
        ["campaign.launch", "campaign.pause", "campaign.cancel"]
    );
    assert!(
        got.iter()
            .all(|r| r.resources == [c.name.clone()] && r.actor == "test-user")
    );
    let db = app.inner.database().await.unwrap();
    let report = retention_db::audit::verify(&db).await.unwrap();
    assert!(report.ok() && report.checked == 3, "{report:?}");
    db.close().await.unwrap();

    let denied = app
        .client
        .list_audit_records(app.req(pb::ListAuditRecordsRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
}
