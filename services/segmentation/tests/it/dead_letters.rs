//! The dead-letter admin methods over gRPC: poison purchases listed (paged),
//! shown, discarded (gone), replayed (refused again: dead-lettered once more,
//! listed once), and a dead letter whose event is applicable replayed and
//! applied once.

use std::time::Duration;

use prost::Message;
use retention_proto::common::{DeadLetter, EventEnvelope, ListDeadLettersResponse, Money};
use retention_proto::profile as ppb;
use retention_proto::segmentation as pb;
use retention_testkit::Backend;
use tonic::Code;

use crate::harness::{TestApp, envelope, epoch, new_id, ts, violated_fields};

const PROFILE: &str = retention_segmentation::events::PROFILE_STREAM;

fn purchase(customer: &str, margin: i64) -> EventEnvelope {
    let money = |minor_units| {
        Some(Money {
            currency_code: "CNY".into(),
            minor_units,
        })
    };
    let mut env = envelope(&ppb::PurchaseRecordedEvent {
        customer_id: customer.into(),
        purchase_id: new_id(),
        order_id: new_id(),
        occur_time: Some(ts(epoch())),
        amount: money(2_000),
        gross_margin: money(margin),
        discount: money(0),
        product_category: "tea".into(),
        channel: "store".into(),
    });
    env.customer_id = customer.into();
    env
}

/// A purchase the handler refuses for good: a margin past the bound.
fn poison(customer: &str) -> EventEnvelope {
    purchase(customer, -retention_domain::MAX_MINOR_UNITS - 1)
}

async fn list(app: &mut TestApp, page_size: i32, page_token: &str) -> ListDeadLettersResponse {
    let req = app.req(pb::ListDeadLettersRequest {
        page_size,
        page_token: page_token.into(),
    });
    app.client
        .list_dead_letters(req)
        .await
        .unwrap()
        .into_inner()
}

/// Every dead letter, one page of 1 at a time (so paging is exercised).
async fn all(app: &mut TestApp) -> Vec<DeadLetter> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = list(app, 1, &token).await;
        assert!(page.dead_letters.len() <= 1);
        out.extend(page.dead_letters);
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
}

/// Polls until `done` holds of the dead letters (up to 30 s).
async fn until(app: &mut TestApp, done: impl Fn(&[DeadLetter]) -> bool) -> Vec<DeadLetter> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let letters = all(app).await;
        if done(&letters) || tokio::time::Instant::now() > deadline {
            return letters;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Buries `env` in the profile stream's dead letters as the consumer does when
/// an event reached the delivery limit (e.g. while a dependency was down).
async fn bury(app: &TestApp, env: &EventEnvelope) {
    let settings = &app.inner.settings;
    let client = redis::Client::open(settings.redis.url.as_str()).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let key = retention_events::dead_letter_key(&settings.redis.namespace, PROFILE);
    let bytes = env.encode_to_vec();
    let () = redis::cmd("XADD")
        .arg(&key)
        .arg("*")
        .arg("id")
        .arg(&env.event_id)
        .arg("type")
        .arg(&env.event_type)
        .arg("envelope")
        .arg(bytes)
        .arg("reason")
        .arg("delivery limit reached")
        .arg("original_id")
        .arg("0-1")
        .arg("group")
        .arg("segmentation")
        .arg("consumer")
        .arg("gone")
        .arg("deliveries")
        .arg(5)
        .query_async::<String>(&mut redis)
        .await
        .map(|_| ())
        .unwrap();
}

async fn processed(app: &TestApp, event_id: &str) -> i64 {
    app.count(&format!(
        "SELECT COUNT(*) FROM processed_events WHERE consumer = 'segmentation' \
         AND event_id = '{event_id}'"
    ))
    .await
}

#[tokio::test]
async fn dead_letters_are_listed_shown_discarded_and_replayed_through_grpc() {
    let mut app = TestApp::spawn(Backend::Postgres).await;
    assert!(all(&mut app).await.is_empty());

    let (a, b) = (new_id(), new_id());
    let (pa, pb_) = (poison(&a), poison(&b));
    app.publish(PROFILE, &pa).await;
    app.publish(PROFILE, &pb_).await;
    let letters = until(&mut app, |l| l.len() >= 2).await;
    let events: Vec<&str> = letters.iter().map(|d| d.event_id.as_str()).collect();
    assert_eq!(events, [pa.event_id.as_str(), pb_.event_id.as_str()]);
    for (d, customer) in letters.iter().zip([&a, &b]) {
        assert_eq!(d.consumer_group, "segmentation");
        assert_eq!(d.stream, PROFILE);
        assert_eq!(&d.customer_id, customer);
        assert!(d.event_type.ends_with("PurchaseRecordedEvent"), "{d:?}");
        assert!(d.reason.contains("margin_minor"), "{d:?}");
        assert!(d.deliveries >= 1 && d.bury_time.is_some(), "{d:?}");
        assert!(d.envelope.is_empty(), "a listing carries no envelopes");
    }

    // Shown with the envelope as published.
    let req = app.req(pb::GetDeadLetterRequest {
        id: letters[0].id.clone(),
    });
    let shown = app.client.get_dead_letter(req).await.unwrap().into_inner();
    assert_eq!(
        EventEnvelope::decode(shown.envelope.as_slice()).unwrap(),
        pa
    );

    // Bad requests.
    let req = app.req(pb::ListDeadLettersRequest {
        page_size: 1001,
        page_token: "junk".into(),
    });
    let e = app.client.list_dead_letters(req).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&e), ["page_size", "page_token"]);
    let req = app.req(pb::GetDeadLetterRequest { id: String::new() });
    let e = app.client.get_dead_letter(req).await.unwrap_err();
    assert_eq!(
        (e.code(), violated_fields(&e)),
        (Code::InvalidArgument, vec!["id".to_string()])
    );
    for id in [
        format!("{PROFILE}/1-0"),
        "retention.winback.events/1-0".into(),
        "nonsense".into(),
    ] {
        let req = app.req(pb::GetDeadLetterRequest { id });
        let e = app.client.get_dead_letter(req).await.unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
    }

    // Discarded: gone, and a second discard finds nothing.
    let req = app.req(pb::DiscardDeadLetterRequest {
        id: letters[0].id.clone(),
    });
    let discarded = app
        .client
        .discard_dead_letter(req)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(discarded.event_id, pa.event_id);
    let left = all(&mut app).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, letters[1].id);
    for _ in 0..2 {
        let req = app.req(pb::DiscardDeadLetterRequest {
            id: letters[0].id.clone(),
        });
        let e = app.client.discard_dead_letter(req).await.unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
    }

    // A poison one replayed is refused again: dead-lettered anew, listed once.
    let req = app.req(pb::ReplayDeadLetterRequest {
        id: letters[1].id.clone(),
    });
    let replayed = app
        .client
        .replay_dead_letter(req)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replayed.event_id, pb_.event_id);
    let again = until(&mut app, |l| l.len() == 1 && l[0].id != letters[1].id).await;
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0].event_id, pb_.event_id);
    assert_ne!(again[0].id, letters[1].id, "buried again under a new id");
    assert!(again[0].reason.contains("margin_minor"));
    let req = app.req(pb::ReplayDeadLetterRequest {
        id: letters[1].id.clone(),
    });
    let e = app.client.replay_dead_letter(req).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "the old id is gone");
    let req = app.req(pb::DiscardDeadLetterRequest {
        id: again[0].id.clone(),
    });
    app.client.discard_dead_letter(req).await.unwrap();

    // An applicable event given up on (delivery limit): replayed, applied once.
    let c = new_id();
    let good = purchase(&c, 500);
    bury(&app, &good).await;
    let buried = all(&mut app).await;
    assert_eq!(buried.len(), 1);
    assert_eq!(
        (buried[0].event_id.as_str(), buried[0].deliveries),
        (good.event_id.as_str(), 5)
    );
    assert_eq!(buried[0].reason, "delivery limit reached");
    assert_eq!(processed(&app, &good.event_id).await, 0);
    let req = app.req(pb::ReplayDeadLetterRequest {
        id: buried[0].id.clone(),
    });
    app.client.replay_dead_letter(req).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while processed(&app, &good.event_id).await == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(processed(&app, &good.event_id).await, 1, "applied once");
    let req = app.req(pb::ReplayDeadLetterRequest {
        id: buried[0].id.clone(),
    });
    let e = app.client.replay_dead_letter(req).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "replaying again finds nothing");
    let features = app
        .count(&format!(
            "SELECT COUNT(*) FROM features WHERE customer_id = '{c}' \
             AND data LIKE '%\"purchases\":1,%'"
        ))
        .await;
    assert_eq!(features, 1, "the purchase folded once");
    assert!(all(&mut app).await.is_empty());

    // The four replays and discards that happened are the audit trail, in
    // order and chained; the refused ones left nothing.
    let rows = app
        .client
        .list_audit_records(app.inner.req(
            pb::ListAuditRecordsRequest {
                page_size: 2,
                ..Default::default()
            },
            &["audit.read"],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rows.audit_records.len(), 2);
    assert!(!rows.next_page_token.is_empty());
    let db = app.inner.database().await.unwrap();
    let all_rows = retention_db::audit::list(&db, &Default::default(), None, 100)
        .await
        .unwrap();
    let actions: Vec<&str> = all_rows.iter().map(|r| r.entry.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "events.dead_letter.discard",
            "events.dead_letter.replay",
            "events.dead_letter.discard",
            "events.dead_letter.replay",
        ]
    );
    assert_eq!(
        all_rows[0].entry.resources,
        ["segmentation".to_string(), letters[0].id.clone()]
    );
    assert!(retention_db::audit::verify(&db).await.unwrap().ok());
    db.close().await.unwrap();
    let denied = app
        .client
        .list_audit_records(app.req(pb::ListAuditRecordsRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    app.stop().await;
}
