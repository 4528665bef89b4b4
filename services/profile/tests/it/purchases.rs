//! Purchases (single and streamed bulk ingest), listing, referrals.

use retention_proto::profile as pb;
use retention_testkit::Backend;
use tonic::Code;

use crate::harness::*;
use retention_testkit::on_both_backends;

async fn purchases_are_idempotent_per_order(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let c = app.create("Buyer").await;
    let p = purchase(&c.name, "order-1", 12_800);
    let first = app.record(p.clone()).await;
    assert!(first.name.starts_with(&format!("{}/purchases/", c.name)));
    assert_eq!(first.amount, cny(12_800));
    let again = app.record(p).await;
    assert_eq!(
        again, first,
        "re-sending an order is a no-op returning the original"
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM purchases").await, 1);
    assert_eq!(app.outbox_count("PurchaseRecordedEvent").await, 1);

    // Streamed ingest: valid rows land, duplicates are counted, bad rows reported by position.
    let other = app.create("Other").await;
    let mut bad = purchase(&c.name, "bad", 1);
    bad.amount = cny(-1);
    let unknown = purchase(&format!("customers/{}", uuid::Uuid::now_v7()), "x", 5);
    let messages = vec![
        pb::RecordPurchasesRequest {
            purchases: vec![
                purchase(&c.name, "order-1", 12_800),
                purchase(&c.name, "order-2", 100),
                bad,
            ],
        },
        pb::RecordPurchasesRequest {
            purchases: vec![purchase(&other.name, "order-1", 50), unknown],
        },
    ];
    let resp = app
        .client
        .record_purchases(app.req(tokio_stream::iter(messages)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.recorded_count, 2, "{resp:?}");
    assert_eq!(resp.duplicate_count, 1);
    assert_eq!(resp.rejected_count, 2);
    assert_eq!(
        resp.rejected.iter().map(|r| r.index).collect::<Vec<_>>(),
        vec![2, 4]
    );
    assert!(
        resp.rejected[0].reason.contains("minor_units"),
        "{:?}",
        resp.rejected[0]
    );
    assert!(
        resp.rejected[1].reason.contains("not found"),
        "{:?}",
        resp.rejected[1]
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM purchases").await, 3);
    assert_eq!(app.outbox_count("PurchaseRecordedEvent").await, 3);

    // Listing, newest first, paged.
    for i in 0..5 {
        let mut p = purchase(&c.name, &format!("p-{i}"), 10 * (i + 1));
        p.occur_time = Some(prost_types::Timestamp {
            seconds: 1_700_100_000 + i,
            nanos: 0,
        });
        app.record(p).await;
    }
    let mut orders = Vec::new();
    let mut token = String::new();
    loop {
        let page = app
            .client
            .list_purchases(app.req(pb::ListPurchasesRequest {
                parent: c.name.clone(),
                page_size: 3,
                page_token: token,
            }))
            .await
            .unwrap()
            .into_inner();
        orders.extend(page.purchases.into_iter().map(|p| p.order_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(orders.len(), 7);
    assert_eq!(&orders[..5], &["p-4", "p-3", "p-2", "p-1", "p-0"]);
    app.stop().await;
}
on_both_backends!(
    purchases_idempotent_and_streamed,
    purchases_are_idempotent_per_order
);

#[tokio::test]
async fn referrals_are_recorded_once() {
    let mut app = TestApp::spawn(Backend::Postgres).await;
    let a = app.create("Referrer").await;
    let b = app.create("Referred").await;
    let r = pb::Referral {
        referrer: a.name.clone(),
        referred: b.name.clone(),
        occur_time: None,
    };
    let stored = app
        .client
        .record_referral(app.req(pb::RecordReferralRequest {
            referral: Some(r.clone()),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.referrer, a.name);
    app.client
        .record_referral(app.req(pb::RecordReferralRequest { referral: Some(r) }))
        .await
        .unwrap();
    assert_eq!(app.count("SELECT COUNT(*) FROM referrals").await, 1);
    assert_eq!(app.outbox_count("ReferralRecordedEvent").await, 1);
    let err = app
        .client
        .record_referral(app.req(pb::RecordReferralRequest {
            referral: Some(pb::Referral {
                referrer: a.name.clone(),
                referred: a.name.clone(),
                occur_time: None,
            }),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    app.stop().await;
}
