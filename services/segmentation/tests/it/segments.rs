//! Segments: materialised on create, enter / exit published on rescoring, members
//! listed; merged and erased customers leave.

use retention_proto::profile as ppb;
use retention_proto::segmentation as pb;
use retention_testkit::{Backend, on_both_backends};

use crate::harness::*;

pub async fn create(app: &mut TestApp, filter: &str) -> pb::Segment {
    let req = app.req(pb::CreateSegmentRequest {
        segment: Some(pb::Segment {
            display_name: "Upset customers".into(),
            filter: filter.into(),
            ..Default::default()
        }),
        request_id: new_id(),
    });
    app.client.create_segment(req).await.unwrap().into_inner()
}

async fn members(app: &mut TestApp, segment: &str) -> Vec<String> {
    let req = app.req(pb::ListSegmentMembersRequest {
        segment: segment.into(),
        page_size: 1000,
        page_token: String::new(),
    });
    app.client
        .list_segment_members(req)
        .await
        .unwrap()
        .into_inner()
        .members
        .into_iter()
        .map(|m| m.customer.trim_start_matches("customers/").to_string())
        .collect()
}

on_both_backends!(enter_and_exit_on_rescoring, enter_and_exit_on);

async fn enter_and_exit_on(backend: Backend) {
    let (mut app, ids) = TestApp::scored(backend, 60, 300).await;
    let seg = create(&mut app, "complaints_open > 0").await;
    assert_eq!(seg.member_count, 0);
    // Someone whose risk can still rise.
    let mut who = String::new();
    for id in &ids {
        let i = app.insight(id).await.unwrap();
        if i.churn_risk < pb::ChurnRisk::Critical as i32 {
            who = id.clone();
            break;
        }
    }
    assert!(
        !who.is_empty(),
        "the fixture has customers below critical risk"
    );
    let before = app.insight(&who).await.unwrap();

    let complaint = app.complaint_opened(&who).await;
    app.settle().await;
    assert_eq!(members(&mut app, &seg.name).await, vec![who.clone()]);
    let changes = app.outbox::<pb::SegmentMembershipChangedEvent>().await;
    let seg_id = seg.name.trim_start_matches("segments/");
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(
        (
            changes[0].segment_id.as_str(),
            changes[0].customer_id.as_str(),
            changes[0].entered
        ),
        (seg_id, who.as_str(), true)
    );
    let after = app.insight(&who).await.unwrap();
    assert!(
        after.churn_risk > before.churn_risk,
        "an open complaint raises the risk"
    );
    let risk = app.outbox::<pb::ChurnRiskChangedEvent>().await;
    let mine: Vec<_> = risk.iter().filter(|e| e.customer_id == who).collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(
        (mine[0].previous, mine[0].current),
        (before.churn_risk, after.churn_risk)
    );

    app.complaint_resolved(&who, &complaint).await;
    app.settle().await;
    assert!(members(&mut app, &seg.name).await.is_empty());
    let changes = app.outbox::<pb::SegmentMembershipChangedEvent>().await;
    assert_eq!(changes.len(), 2);
    assert!(!changes[1].entered, "left the segment");

    // A full run re-evaluates without publishing unchanged memberships again.
    app.complaint_opened(&who).await;
    app.settle().await;
    app.run_scoring().await;
    let changes = app.outbox::<pb::SegmentMembershipChangedEvent>().await;
    assert_eq!(changes.len(), 3, "entered once more, nothing from the run");
    let req = app.req(pb::GetSegmentRequest {
        name: seg.name.clone(),
    });
    let got = app.client.get_segment(req).await.unwrap().into_inner();
    assert_eq!(got.member_count, 1);
    app.stop().await;
}

#[tokio::test]
async fn segment_updates_rematerialise_and_deletes_release_members() {
    let (mut app, _) = TestApp::scored(Backend::Postgres, 40, 300).await;
    let seg = create(&mut app, "purchases >= 1").await;
    assert_eq!(seg.member_count, 40, "materialised on create");
    let req = app.req(pb::UpdateSegmentRequest {
        segment: Some(pb::Segment {
            name: seg.name.clone(),
            filter: "purchases >= 1000".into(),
            etag: seg.etag.clone(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["filter".into()],
        }),
    });
    let updated = app.client.update_segment(req).await.unwrap().into_inner();
    assert_eq!(updated.member_count, 0);
    assert_eq!(
        updated.display_name, "Upset customers",
        "outside the mask: kept"
    );
    let left = app
        .outbox::<pb::SegmentMembershipChangedEvent>()
        .await
        .into_iter()
        .filter(|e| !e.entered)
        .count();
    assert_eq!(left, 40);

    let stale = app.req(pb::DeleteSegmentRequest {
        name: seg.name.clone(),
        etag: seg.etag.clone(),
    });
    let err = app.client.delete_segment(stale).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Aborted, "stale etag");
    let req = app.req(pb::DeleteSegmentRequest {
        name: seg.name.clone(),
        etag: updated.etag.clone(),
    });
    app.client.delete_segment(req).await.unwrap();
    let req = app.req(pb::GetSegmentRequest { name: seg.name });
    assert_eq!(
        app.client.get_segment(req).await.unwrap_err().code(),
        tonic::Code::NotFound
    );
    app.stop().await;
}

#[tokio::test]
async fn merge_folds_features_and_erase_forgets_the_customer() {
    let (mut app, ids) = TestApp::scored(Backend::Postgres, 50, 300).await;
    let seg = create(&mut app, "purchases >= 1").await;
    let (survivor, merged) = (ids[1].clone(), ids[2].clone());
    let a = app.insight(&survivor).await.unwrap();
    let b = app.insight(&merged).await.unwrap();
    app.profile_event(&ppb::CustomerMergedEvent {
        survivor_id: survivor.clone(),
        merged_id: merged.clone(),
    })
    .await;
    app.settle().await;
    let m = app.insight(&survivor).await.unwrap();
    let margin = |i: &pb::CustomerInsight| i.historical_margin.as_ref().unwrap().minor_units;
    assert_eq!(margin(&m), margin(&a) + margin(&b), "histories combined");
    assert_eq!(
        app.insight(&merged).await.unwrap_err().code(),
        tonic::Code::NotFound
    );
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM purchases WHERE customer_id = '{merged}'"
        ))
        .await,
        0
    );
    // Late news about the merged customer (a complaint interactions published
    // before it moved it, a redelivered purchase) reaches the survivor and does
    // not bring the merged record back.
    let complaints_sql = format!(
        "SELECT CAST(CAST(data AS jsonb) ->> 'complaints_total' AS BIGINT) \
         FROM features WHERE customer_id = '{survivor}'"
    );
    let complaints = app.count(&complaints_sql).await;
    app.complaint_opened(&merged).await;
    app.purchase(&merged, 301, 1_000, 300).await;
    app.settle().await;
    let late = app.insight(&survivor).await.unwrap();
    assert_eq!(
        margin(&late),
        margin(&m) + 300,
        "the late purchase is the survivor's"
    );
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM features WHERE customer_id = '{merged}'"
        ))
        .await,
        0,
        "the merged record stays gone"
    );
    assert_eq!(
        app.count(&complaints_sql).await,
        complaints + 1,
        "the late complaint is the survivor's"
    );

    app.profile_event(&ppb::CustomerErasedEvent {
        customer_id: survivor.clone(),
        erase_time: None,
    })
    .await;
    app.settle().await;
    assert_eq!(
        app.insight(&survivor).await.unwrap_err().code(),
        tonic::Code::NotFound
    );
    for table in ["features", "insights", "purchases", "segment_members"] {
        assert_eq!(
            app.count(&format!(
                "SELECT COUNT(*) FROM {table} WHERE customer_id = '{survivor}'"
            ))
            .await,
            0,
            "{table} forgets the erased customer"
        );
    }
    // Late news about the erased customer does not bring them back.
    app.complaint_opened(&survivor).await;
    app.purchase(&survivor, 300, 1_000, 300).await;
    app.settle().await;
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM features WHERE customer_id = '{survivor}'"
        ))
        .await,
        0,
        "events after the erasure are ignored"
    );
    let exits: Vec<String> = app
        .outbox::<pb::SegmentMembershipChangedEvent>()
        .await
        .into_iter()
        .filter(|e| !e.entered)
        .map(|e| e.customer_id)
        .collect();
    assert_eq!(exits, vec![merged, survivor], "both left {}", seg.name);
    app.stop().await;
}
