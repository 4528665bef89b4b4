//! SLA breaches: detected by the sweep, exactly once across restarts and with two
//! sweepers running at the same time.

use chrono::Duration;
use retention_proto::interactions as pb;
use retention_testkit::{Backend, on_both_backends};

use crate::harness::*;

async fn breaches_are_recorded_once(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let n = 12;
    let mut names = Vec::new();
    for _ in 0..n {
        names.push(app.open(&customer(), pb::Severity::Medium).await.name);
    }
    // One complaint answered in time: only its resolution target can be missed.
    let answered = app
        .client
        .acknowledge_complaint(app.req(pb::AcknowledgeComplaintRequest {
            name: names[0].clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(answered.first_response_time.is_some());

    // Two replicas sweep concurrently, ten days from now.
    let later = retention_interactions::domain::now() + Duration::days(10);
    let (a, b) = (app.second_replica().await, app.second_replica().await);
    let (ra, rb) = tokio::join!(a.sweep(later), b.sweep(later));
    let recorded = ra.unwrap().breaches + rb.unwrap().breaches;
    let expected = 2 * n - 1;
    assert_eq!(
        recorded, expected,
        "each breach recorded by exactly one sweeper"
    );
    assert_eq!(
        app.outbox_count("ComplaintSlaBreachedEvent").await,
        expected as i64
    );

    // A restarted sweeper (fresh instance, later still) finds nothing new.
    let restarted = app.second_replica().await;
    assert_eq!(
        restarted
            .sweep(later + Duration::days(1))
            .await
            .unwrap()
            .breaches,
        0
    );
    assert_eq!(
        app.outbox_count("ComplaintSlaBreachedEvent").await,
        expected as i64
    );

    // Breached complaints can be listed.
    let breached = app
        .client
        .list_complaints(app.req(pb::ListComplaintsRequest {
            breached_only: true,
            page_size: 100,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(breached.complaints.len(), n);
    let first = breached
        .complaints
        .iter()
        .find(|c| c.name == names[0])
        .unwrap();
    assert!(!first.first_response_breached && first.resolution_breached);
    assert!(
        breached
            .complaints
            .iter()
            .filter(|c| c.name != names[0])
            .all(|c| c.first_response_breached)
    );
    app.stop().await;
}
on_both_backends!(sla_sweep_exactly_once, breaches_are_recorded_once);

#[tokio::test]
async fn nothing_is_breached_before_its_due_time() {
    let mut app = TestApp::spawn(Backend::Postgres).await;
    app.open(&customer(), pb::Severity::Critical).await;
    let replica = app.second_replica().await;
    let soon = retention_interactions::domain::now() + Duration::minutes(30);
    assert_eq!(
        replica.sweep(soon).await.unwrap().breaches,
        0,
        "urgent first response is due after 1 h"
    );
    let after = retention_interactions::domain::now() + Duration::minutes(61);
    assert_eq!(replica.sweep(after).await.unwrap().breaches, 1);
    app.stop().await;
}
