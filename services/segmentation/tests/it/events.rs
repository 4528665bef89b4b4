//! Consumed events applied in batches: each exactly once and in stream order,
//! an erasure in its place, a bad event refused without holding back the rest.

use std::sync::Arc;
use std::time::Duration;

use retention_cache::Cache;
use retention_events::{EventHandler, HandlerError};
use retention_proto::common::EventEnvelope;
use retention_proto::interactions as ipb;
use retention_proto::profile as ppb;
use retention_segmentation::app::SegmentationApp;
use retention_segmentation::domain::scoring::ScoringConfig;
use retention_segmentation::events::UpstreamHandler;
use retention_testkit::{Backend, unique_namespace};

use crate::harness::{TestApp, envelope, epoch, new_id, ts};

fn purchase(customer: &str, purchase_id: &str) -> EventEnvelope {
    envelope(&ppb::PurchaseRecordedEvent {
        customer_id: customer.into(),
        purchase_id: purchase_id.into(),
        occur_time: Some(ts(epoch())),
        ..Default::default()
    })
}

/// What the batch below must leave: `a` with three purchases and one complaint,
/// `b` erased and nothing of theirs kept.
async fn check(app: &TestApp, a: &str, b: &str) {
    let feature = |field: &str, value: u32| {
        format!(
            "SELECT COUNT(*) FROM features WHERE customer_id = '{a}' AND data LIKE '%\"{field}\":{value},%'"
        )
    };
    assert_eq!(
        app.count(&feature("purchases", 3)).await,
        1,
        "three distinct purchases folded once each"
    );
    assert_eq!(
        app.count(&feature("complaints_total", 1)).await,
        1,
        "a complaint delivered twice in one batch counts once"
    );
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM purchases WHERE customer_id = '{a}'"
        ))
        .await,
        3
    );
    for table in ["features", "purchases"] {
        assert_eq!(
            app.count(&format!(
                "SELECT COUNT(*) FROM {table} WHERE customer_id = '{b}'"
            ))
            .await,
            0,
            "the erased customer's {table} are gone, and stay gone"
        );
    }
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM erased_customers WHERE customer_id = '{b}'"
        ))
        .await,
        1
    );
}

#[tokio::test]
async fn a_batch_applies_each_event_once_and_in_order() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let db = app.inner.database().await.unwrap();
    let cache = Cache::in_process(unique_namespace(), Duration::from_secs(60));
    let handler = UpstreamHandler::new(SegmentationApp::new(
        db,
        cache,
        ScoringConfig::default(),
        Arc::new(tokio::sync::Notify::new()),
    ));
    let (a, b) = (new_id(), new_id());
    let first = purchase(&a, &new_id());
    let republished = EventEnvelope {
        event_id: new_id(),
        ..first.clone()
    };
    let complaint = envelope(&ipb::ComplaintOpenedEvent {
        complaint_id: new_id(),
        customer_id: a.clone(),
        ..Default::default()
    });
    let batch = vec![
        first.clone(),
        purchase(&b, &new_id()),
        // The same delivery twice, and the same purchase under another event id.
        first.clone(),
        republished,
        purchase(&a, &new_id()),
        complaint.clone(),
        complaint,
        envelope(&ppb::CustomerErasedEvent {
            customer_id: b.clone(),
            ..Default::default()
        }),
        // After the erasure: forgotten.
        purchase(&b, &new_id()),
        // Unusable: refused on its own.
        envelope(&ppb::PurchaseRecordedEvent {
            customer_id: a.clone(),
            purchase_id: new_id(),
            ..Default::default()
        }),
        purchase(&a, &new_id()),
    ];
    let results = handler.handle_batch(&batch).await;
    assert_eq!(results.len(), batch.len());
    for (i, r) in results.iter().enumerate() {
        match i {
            9 => assert!(matches!(r, Err(HandlerError::Permanent(_))), "{r:?}"),
            _ => assert!(r.is_ok(), "event {i}: {r:?}"),
        }
    }

    check(&app, &a, &b).await;
    // Eight distinct event ids were applied (the refused one is not recorded).
    let inbox = "SELECT COUNT(*) FROM processed_events WHERE consumer = 'segmentation'";
    assert_eq!(app.count(inbox).await, 8);

    // The whole batch delivered again changes nothing.
    let again = handler.handle_batch(&batch).await;
    assert_eq!(again.iter().filter(|r| r.is_ok()).count(), batch.len() - 1);
    check(&app, &a, &b).await;
    assert_eq!(app.count(inbox).await, 8);
    app.stop().await;
}
