//! Profile's CustomerMerged and CustomerErased, applied idempotently: directly
//! through the handler (twice, same result) and end to end from the Redis stream.

use retention_events::EventHandler;
use retention_proto::common::EventEnvelope;
use retention_proto::interactions as pb;
use retention_proto::profile as profile_pb;
use retention_testkit::Backend;

use crate::harness::*;

fn envelope<M: prost::Name>(msg: &M) -> EventEnvelope {
    EventEnvelope {
        event_id: uuid::Uuid::now_v7().to_string(),
        event_type: M::full_name(),
        source: "profile".into(),
        payload: Some(retention_proto::pack_any(msg)),
        ..Default::default()
    }
}

async fn log(app: &mut TestApp, customer: &str, summary: &str) {
    let req = app.req(pb::LogInteractionRequest {
        interaction: Some(pb::Interaction {
            customer: customer.to_string(),
            channel: pb::Channel::Email as i32,
            direction: pb::Direction::Inbound as i32,
            summary: summary.into(),
            agent: "zhao".into(),
            ..Default::default()
        }),
        request_id: String::new(),
    });
    app.client.log_interaction(req).await.unwrap();
}

#[tokio::test]
async fn merge_and_erase_apply_once_even_when_delivered_twice() {
    let mut app = TestApp::spawn(Backend::Postgres).await;
    let (survivor, merged) = (customer(), customer());
    let id = |n: &str| n.trim_start_matches("customers/").to_string();
    log(&mut app, &merged, "lives at 5 Garden Rd, wants a refund").await;
    app.open(&merged, pb::Severity::High).await;
    log(&mut app, &survivor, "asked about delivery").await;

    let db = retention_db::connect(&retention_db::DbOptions::new(
        app.inner.settings.database.url.clone(),
    ))
    .await
    .unwrap();
    let handler = retention_interactions::events::consume::ProfileEventsHandler::new(db);
    let merge = envelope(&profile_pb::CustomerMergedEvent {
        survivor_id: id(&survivor),
        merged_id: id(&merged),
    });
    for _ in 0..2 {
        handler.handle(&merge).await.unwrap();
    }
    let owned = |who: &str| {
        format!(
            "SELECT COUNT(*) FROM interactions WHERE customer_id = '{}'",
            id(who)
        )
    };
    assert_eq!(
        app.count(&owned(&survivor)).await,
        2,
        "history re-pointed to the survivor"
    );
    assert_eq!(app.count(&owned(&merged)).await, 0);
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM complaints WHERE customer_id = '{}'",
            id(&survivor)
        ))
        .await,
        1
    );

    let erase = envelope(&profile_pb::CustomerErasedEvent {
        customer_id: id(&survivor),
        erase_time: None,
    });
    for _ in 0..2 {
        handler.handle(&erase).await.unwrap();
    }
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM interactions WHERE customer_id = '{}' AND summary = ''",
            id(&survivor)
        ))
        .await,
        2,
        "free text removed"
    );
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM complaints WHERE customer_id = '{}' AND description = ''",
            id(&survivor)
        ))
        .await,
        1
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM processed_events WHERE consumer = 'interactions'")
            .await,
        2,
        "each event recorded once in the inbox"
    );
    app.stop().await;
}

#[tokio::test]
async fn events_on_the_profile_stream_are_consumed() {
    let mut app = TestApp::spawn(Backend::Postgres).await;
    let who = customer();
    let id = who.trim_start_matches("customers/").to_string();
    log(&mut app, &who, "complained loudly about the manager").await;
    let erase = envelope(&profile_pb::CustomerErasedEvent {
        customer_id: id.clone(),
        erase_time: None,
    });
    let mut feeder = retention_testkit::StreamFeeder::connect(&app.inner.settings)
        .await
        .unwrap();
    feeder
        .publish_envelope("retention.profile.events", &erase)
        .await
        .unwrap();
    let sql =
        format!("SELECT COUNT(*) FROM interactions WHERE customer_id = '{id}' AND summary = ''");
    let mut redacted = 0;
    for _ in 0..100 {
        redacted = app.count(&sql).await;
        if redacted == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        redacted, 1,
        "the running service consumed CustomerErased from Redis"
    );
    app.stop().await;
}

#[tokio::test]
async fn segmentation_tiers_feed_the_sla_read_model() {
    let mut app = TestApp::spawn(Backend::Postgres).await;
    let who = customer();
    let id = who.trim_start_matches("customers/").to_string();
    let ordinary = app.open(&who, pb::Severity::Medium).await;
    assert_eq!(ordinary.customer_tier, pb::CustomerTier::Ordinary as i32);

    let scored = envelope(&retention_proto::segmentation::CustomerScoredEvent {
        customer_id: id.clone(),
        management_tier: retention_proto::segmentation::ManagementTier::Key as i32,
        ..Default::default()
    });
    let mut feeder = retention_testkit::StreamFeeder::connect(&app.inner.settings)
        .await
        .unwrap();
    feeder
        .publish_envelope("retention.segmentation.events", &scored)
        .await
        .unwrap();
    let sql =
        format!("SELECT COUNT(*) FROM customer_tiers WHERE customer_id = '{id}' AND tier = 'KEY'");
    let mut stored = 0;
    for _ in 0..100 {
        stored = app.count(&sql).await;
        if stored == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(stored, 1, "CustomerScored from segmentation set the tier");
    let key = app.open(&who, pb::Severity::Medium).await;
    assert_eq!(key.customer_tier, pb::CustomerTier::Key as i32);
    let due = |c: &pb::Complaint| secs(&c.resolution_due_time) - secs(&c.open_time);
    assert!(
        due(&key) < due(&ordinary),
        "key accounts get tighter SLA targets"
    );
    app.stop().await;
}
