//! Exactly one outbox event per committed change, none for a rolled-back one, and
//! the relay delivering them to the Redis stream.

use prost::Message;
use redis::AsyncCommands;
use retention_proto::common::EventEnvelope;
use retention_proto::profile as pb;
use retention_testkit::Backend;

use crate::harness::*;
use retention_testkit::on_both_backends;

async fn one_event_per_committed_change(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let a = app.create("A").await;
    let b = app.create("B").await;
    let mut patch = a.clone();
    patch.phone = "+4915112345678".into();
    let upd = |p: pb::Customer| pb::UpdateCustomerRequest {
        customer: Some(p),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["phone".into()],
        }),
    };
    app.client
        .update_customer(app.req(upd(patch.clone())))
        .await
        .unwrap();
    // Rolled back / refused: stale etag, no-op update, invalid input.
    assert!(
        app.client
            .update_customer(app.req(upd(patch.clone())))
            .await
            .is_err()
    );
    patch.etag = String::new();
    app.client
        .update_customer(app.req(upd(patch)))
        .await
        .unwrap(); // same value: no change, no event
    let mut invalid = customer("x");
    invalid.email = "bad".into();
    assert!(
        app.client
            .create_customer(app.req(pb::CreateCustomerRequest {
                customer: Some(invalid),
                request_id: String::new()
            }))
            .await
            .is_err()
    );
    app.consent(
        &a.name,
        pb::ContactChannel::Sms,
        pb::ConsentStatus::Granted,
        "form",
    )
    .await;
    app.record(purchase(&a.name, "1", 10)).await;
    app.refer(&a.name, &b.name).await;
    app.merge(&a.name, &b.name).await;
    app.erase(&a.name).await;

    for (event, expected) in [
        ("CustomerCreatedEvent", 2),
        ("CustomerUpdatedEvent", 1),
        ("ConsentChangedEvent", 1),
        ("PurchaseRecordedEvent", 1),
        ("ReferralRecordedEvent", 1),
        ("CustomerMergedEvent", 1),
        ("CustomerErasedEvent", 1),
    ] {
        assert_eq!(app.outbox_count(event).await, expected, "{event}");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM outbox_events").await, 8);
    app.stop().await;
}
on_both_backends!(outbox_exactly_once, one_event_per_committed_change);

#[tokio::test]
async fn the_relay_publishes_envelopes_to_the_stream() {
    let mut app = TestApp::spawn(Backend::Postgres).await;
    let c = app.create("Streamed").await;
    let stream =
        retention_events::stream_key(&app.settings.redis.namespace, "retention.profile.events");
    let client = redis::Client::open(app.settings.redis.url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    // Rows are marked published after Redis took them: once none is pending, the
    // stream holds everything.
    for _ in 0..100 {
        if app
            .count("SELECT COUNT(*) FROM outbox_events WHERE published_at IS NULL")
            .await
            == 0
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let entries: redis::streams::StreamRangeReply = conn.xrange_all(&stream).await.unwrap();
    assert_eq!(entries.ids.len(), 1);
    let raw: Vec<u8> = entries.ids[0].get("envelope").expect("envelope field");
    let env = EventEnvelope::decode(raw.as_slice()).unwrap();
    assert_eq!(env.event_type, "retention.profile.v1.CustomerCreatedEvent");
    assert_eq!(env.source, "profile");
    assert_eq!(format!("customers/{}", env.customer_id), c.name);
    let payload = pb::CustomerCreatedEvent::decode(env.payload.unwrap().value.as_slice()).unwrap();
    let facts = payload.customer.unwrap();
    assert_eq!(facts.tags, vec!["vip"]);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM outbox_events WHERE published_at IS NULL")
            .await,
        0
    );
    let _: () = conn.del(&stream).await.unwrap();
    app.stop().await;
}
