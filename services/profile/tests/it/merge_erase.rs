//! Merge (aliases resolve, history moves), erase (PII gone, purchases kept), export.

use retention_proto::profile as pb;
use retention_testkit::Backend;
use tonic::Code;

use crate::harness::*;
use retention_testkit::on_both_backends;

async fn merge_moves_history_and_leaves_an_alias(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let mut a = customer("Survivor");
    a.identities = vec![identity("crm", "S")];
    let survivor = app.create_with(a).await;
    let mut b = customer("Duplicate");
    b.identities = vec![identity("shop", "D")];
    b.tags = vec!["newsletter".into()];
    let merged = app.create_with(b).await;
    let friend = app.create("Friend").await;
    for (who, order) in [(&survivor, "1"), (&merged, "1"), (&merged, "2")] {
        app.record(purchase(&who.name, order, 100)).await;
    }
    app.refer(&merged.name, &friend.name).await;

    let result = app
        .client
        .merge_customers(app.req(pb::MergeCustomersRequest {
            survivor: survivor.name.clone(),
            merged: merged.name.clone(),
            request_id: String::new(),
            etag: survivor.etag.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(result.name, survivor.name);
    assert_eq!(result.merged_names, vec![merged.name.clone()]);
    assert_eq!(
        result.identities.len(),
        2,
        "identities moved: {:?}",
        result.identities
    );
    assert!(result.tags.contains(&"newsletter".to_string()));

    // The old id resolves to the survivor.
    let via_alias = app.get(&merged.name).await;
    assert_eq!(via_alias.name, survivor.name);
    assert_eq!(via_alias.merged_names, vec![merged.name.clone()]);
    assert_eq!(
        via_alias.identities, result.identities,
        "read back in one query"
    );

    // History moved: both customers' orders "1" coexist, and re-sending the merged
    // customer's order via its old id is still recognised.
    let export = app.export(&survivor.name).await;
    assert_eq!(export.purchases.len(), 3);
    assert_eq!(export.referrals_given.len(), 1);
    assert_eq!(export.referrals_given[0].referred, friend.name);
    let resend = app.record(purchase(&merged.name, "2", 100)).await;
    assert_eq!(resend.customer, survivor.name);
    assert_eq!(app.count("SELECT COUNT(*) FROM purchases").await, 3);
    assert_eq!(app.outbox_count("CustomerMergedEvent").await, 1);

    // Merging into itself (via the alias) is a precondition failure.
    let err = app
        .client
        .merge_customers(app.req(pb::MergeCustomersRequest {
            survivor: survivor.name.clone(),
            merged: merged.name.clone(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    app.stop().await;
}
on_both_backends!(merge_works, merge_moves_history_and_leaves_an_alias);

async fn erase_removes_pii_and_keeps_purchases(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let mut c = customer("Erase Me");
    c.identities = vec![identity("crm", "E-1")];
    c.attributes
        .insert("note".into(), "lives at 1 Main St".into());
    let c = app.create_with(c).await;
    app.record(purchase(&c.name, "o", 500)).await;
    // Warm the cache so erasure must invalidate it.
    app.client
        .get_customer(app.req(pb::GetCustomerRequest {
            name: c.name.clone(),
        }))
        .await
        .unwrap();

    let erased = app
        .client
        .erase_customer(app.req(pb::EraseCustomerRequest {
            name: c.name.clone(),
            request_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(erased.purchases_retained, 1);

    let id = c.name.trim_start_matches("customers/");
    let pii = app
        .count(&format!(
            "SELECT COUNT(*) FROM customers WHERE id = '{id}' AND display_name IS NULL AND email IS NULL \
             AND phone IS NULL AND region IS NULL AND birth_year IS NULL AND attributes = '{{}}' AND erased"
        ))
        .await;
    assert_eq!(pii, 1, "the row is kept but holds no PII");
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM customer_identities WHERE customer_id = '{id}'"
        ))
        .await,
        0
    );
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM purchases WHERE customer_id = '{id}'"
        ))
        .await,
        1
    );
    let err = app
        .client
        .get_customer(app.req(pb::GetCustomerRequest {
            name: c.name.clone(),
        }))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::NotFound,
        "erased customers are gone from reads (and the cache)"
    );
    // Erasure is idempotent.
    app.erase(&c.name).await;
    assert_eq!(app.outbox_count("CustomerErasedEvent").await, 1);
    app.stop().await;
}
on_both_backends!(erase_works, erase_removes_pii_and_keeps_purchases);

#[tokio::test]
async fn export_returns_everything_held() {
    let mut app = TestApp::spawn(Backend::Postgres).await;
    let c = app.create("Exporter").await;
    let friend = app.create("Friend").await;
    app.record(purchase(&c.name, "o", 500)).await;
    app.refer(&friend.name, &c.name).await;
    let export = app.export(&c.name).await;
    let exported = export.customer.unwrap();
    assert_eq!(exported.email, c.email);
    assert_eq!(export.purchases.len(), 1);
    assert_eq!(export.purchases[0].order_id, "o");
    assert_eq!(export.referrals_received.len(), 1);
    assert!(export.export_time.is_some());
    app.stop().await;
}
