//! Consumed events applied in batches: each exactly once and in stream order,
//! an erasure in its place, a bad event refused without holding back the rest.

use std::sync::Arc;
use std::time::Duration;

use retention_cache::Cache;
use retention_events::{EventHandler, HandlerError, Outbox};
use retention_proto::common::EventEnvelope;
use retention_proto::interactions as ipb;
use retention_proto::profile as ppb;
use retention_segmentation::app::SegmentationApp;
use retention_segmentation::domain::scoring::ScoringConfig;
use retention_segmentation::events::consume::UpstreamHandler;
use retention_testkit::{Backend, unique_namespace};
use sea_orm::DatabaseConnection;

use crate::harness::{TestApp, envelope, epoch, new_id, ts};

/// The consumer's handler on the service's database, driven directly (as a
/// second replica's consumer would be), with a cache of its own.
fn handler(db: DatabaseConnection) -> Arc<UpstreamHandler> {
    let outbox = Outbox::new(db, "segmentation", Arc::new(tokio::sync::Notify::new()));
    let cache = Cache::in_process(unique_namespace(), Duration::from_secs(60));
    UpstreamHandler::new(SegmentationApp::new(
        outbox,
        cache,
        ScoringConfig::default(),
    ))
}

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
    let handler = handler(app.inner.database().await.unwrap());
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

/// A customer's feature row (data, update time) and its purchase ids.
async fn model_of(
    db: &sea_orm::DatabaseConnection,
    customer: &str,
) -> (Option<(String, chrono::DateTime<chrono::Utc>)>, Vec<String>) {
    use sea_orm::{ConnectionTrait, Statement};
    let backend = db.get_database_backend();
    let row = db
        .query_one_raw(Statement::from_string(
            backend,
            format!("SELECT data, update_time FROM features WHERE customer_id = '{customer}'"),
        ))
        .await
        .unwrap()
        .map(|r| {
            (
                r.try_get::<String>("", "data").unwrap(),
                r.try_get::<chrono::DateTime<chrono::Utc>>("", "update_time")
                    .unwrap(),
            )
        });
    let purchases = db
        .query_all_raw(Statement::from_string(
            backend,
            format!(
                "SELECT purchase_id FROM purchases WHERE customer_id = '{customer}' ORDER BY purchase_id"
            ),
        ))
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get::<String>("", "purchase_id").unwrap())
        .collect();
    (row, purchases)
}

/// The same events under new event ids, addressed to segmentation: what a
/// backfill's replay looks like to the consumer.
fn replayed(events: &[EventEnvelope]) -> Vec<EventEnvelope> {
    events
        .iter()
        .map(|e| EventEnvelope {
            event_id: new_id(),
            target_group: "segmentation".into(),
            ..e.clone()
        })
        .collect()
}

#[tokio::test]
async fn a_replay_changes_nothing_already_there_and_rebuilds_what_is_gone() {
    use ipb::ComplaintState as S;
    let app = TestApp::spawn(Backend::Postgres).await;
    let db = app.inner.database().await.unwrap();
    let handler = handler(db.clone());
    let (a, late, open) = (new_id(), new_id(), new_id());
    let created = envelope(&ppb::CustomerCreatedEvent {
        customer: Some(ppb::CustomerFacts {
            customer_id: a.clone(),
            create_time: Some(ts(epoch())),
            ..Default::default()
        }),
    });
    let purchases: Vec<EventEnvelope> = (0..3).map(|_| purchase(&a, &new_id())).collect();
    let opened = |id: &str| {
        envelope(&ipb::ComplaintOpenedEvent {
            complaint_id: id.into(),
            customer_id: a.clone(),
            ..Default::default()
        })
    };
    let breached = envelope(&ipb::ComplaintSlaBreachedEvent {
        complaint_id: late.clone(),
        customer_id: a.clone(),
        target: ipb::SlaTarget::Resolution as i32,
        ..Default::default()
    });
    let resolved = || {
        envelope(&ipb::ComplaintResolvedEvent {
            complaint_id: late.clone(),
            customer_id: a.clone(),
            ..Default::default()
        })
    };
    let status = |from: S, to: S| {
        envelope(&ipb::ComplaintStatusChangedEvent {
            complaint_id: late.clone(),
            customer_id: a.clone(),
            from_state: from as i32,
            to_state: to as i32,
            escalation_level: 0,
        })
    };
    let survey = envelope(&ipb::SurveyRecordedEvent {
        survey_id: new_id(),
        customer_id: a.clone(),
        csat: 2,
        expectation: 7,
        perceived: 4,
        ..Default::default()
    });
    let referral = envelope(&ppb::ReferralRecordedEvent {
        referrer_id: a.clone(),
        referred_id: new_id(),
        ..Default::default()
    });
    // Live: the late complaint is resolved, reopened and resolved again.
    let mut live = vec![created.clone()];
    live.extend(purchases.clone());
    live.extend([
        opened(&late),
        breached.clone(),
        status(S::Open, S::InProgress),
        status(S::InProgress, S::Resolved),
        resolved(),
        status(S::Resolved, S::InProgress),
        status(S::InProgress, S::Resolved),
        resolved(),
        opened(&open),
        survey.clone(),
        referral.clone(),
    ]);
    assert!(handler.handle_batch(&live).await.iter().all(Result::is_ok));
    let fed_live = model_of(&db, &a).await;
    let (Some((data, _)), bought) = fed_live.clone() else {
        panic!("no features for {a}");
    };
    assert_eq!(bought.len(), 3);
    for (field, value) in [
        ("purchases", 3),
        ("complaints_total", 2),
        ("complaints_open", 1),
        ("complaints_breached", 1),
        ("csat_count", 1),
        ("referrals_given", 1),
    ] {
        assert!(
            data.contains(&format!("\"{field}\":{value},")),
            "{field} {value}: {data}"
        );
    }

    // The owners' replay of the current state: the late complaint opened,
    // breached, resolved and its status; the open one opened.
    let mut state = vec![created];
    state.extend(purchases);
    state.extend([
        opened(&late),
        breached,
        resolved(),
        status(S::Open, S::Resolved),
        opened(&open),
        survey,
        referral,
    ]);
    // Over the full model, batched and one by one: nothing changes, not even
    // the row's update time.
    let results = handler.handle_batch(&replayed(&state)).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(model_of(&db, &a).await, fed_live, "a batch of replays");
    for env in replayed(&state) {
        handler.handle(&env).await.unwrap();
    }
    assert_eq!(model_of(&db, &a).await, fed_live, "replays one by one");

    // Emptied on purpose, then replayed: the same model again.
    for table in ["features", "purchases"] {
        sea_orm::ConnectionTrait::execute_unprepared(
            &db,
            &format!("DELETE FROM {table} WHERE customer_id = '{a}'"),
        )
        .await
        .unwrap();
    }
    assert_eq!(model_of(&db, &a).await, (None, Vec::new()));
    let results = handler.handle_batch(&replayed(&state)).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let (rebuilt, rebought) = model_of(&db, &a).await;
    assert_eq!(
        rebuilt.map(|(data, _)| data),
        Some(data),
        "the rebuilt features equal those fed live (update times aside)"
    );
    assert_eq!(rebought, bought);
    app.stop().await;
}

/// The dead letters of the profile stream: (event id, reason), in stream order.
async fn dead_letters(app: &TestApp) -> Vec<(String, String)> {
    let settings = &app.inner.settings;
    let client = redis::Client::open(settings.redis.url.as_str()).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let key = retention_events::dead_letter_key(
        &settings.redis.namespace,
        retention_segmentation::events::PROFILE_STREAM,
    );
    let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(&key)
        .arg("-")
        .arg("+")
        .query_async(&mut redis)
        .await
        .unwrap();
    reply
        .ids
        .iter()
        .map(|e| {
            (
                e.get::<String>("id").unwrap_or_default(),
                e.get::<String>("reason").unwrap_or_default(),
            )
        })
        .collect()
}

fn priced_purchase(customer: &str, amount: i64, margin: i64) -> EventEnvelope {
    let money = |minor_units| {
        Some(retention_proto::common::Money {
            currency_code: "CNY".into(),
            minor_units,
        })
    };
    envelope(&ppb::PurchaseRecordedEvent {
        customer_id: customer.into(),
        purchase_id: new_id(),
        order_id: new_id(),
        occur_time: Some(ts(epoch())),
        amount: money(amount),
        gross_margin: money(margin),
        discount: money(0),
        product_category: "tea".into(),
        channel: "store".into(),
    })
}

/// Poison purchases fed on the stream with 200 ordinary ones of other customers:
/// three of 2^62 minor units (beyond `MAX_MINOR_UNITS`), and one in bounds whose
/// fold would take its customer's spend past `i64::MAX`. Each is dead-lettered
/// with a reason naming its customer and field, nothing of it is applied, and
/// every ordinary purchase of the same batch is folded.
#[tokio::test]
async fn poison_purchases_are_dead_lettered_and_the_rest_of_the_batch_is_folded() {
    use retention_domain::MAX_MINOR_UNITS;
    let mut app = TestApp::spawn(Backend::Postgres).await;
    let profile = retention_segmentation::events::PROFILE_STREAM;

    // A customer whose spend is one bound short of the i64 (a long history).
    let rich = new_id();
    app.publish(profile, &priced_purchase(&rich, 1_000, 100))
        .await;
    app.settle().await;
    let near_max = i64::MAX - MAX_MINOR_UNITS + 1;
    let db = app.inner.database().await.unwrap();
    sea_orm::ConnectionTrait::execute_unprepared(
        &db,
        &format!(
            "UPDATE features SET data = replace(data, '\"spend_minor\":1000,', \
             '\"spend_minor\":{near_max},') WHERE customer_id = '{rich}'"
        ),
    )
    .await
    .unwrap();
    let rich_spend = format!(
        "SELECT COUNT(*) FROM features WHERE customer_id = '{rich}' \
         AND data LIKE '%\"spend_minor\":{near_max},%' AND data LIKE '%\"purchases\":1,%'"
    );
    assert_eq!(app.count(&rich_spend).await, 1);

    let poisoned = new_id();
    let big = 1i64 << 62;
    let ordinary: Vec<String> = (0..200).map(|_| new_id()).collect();
    let mut poison = Vec::new();
    for (i, customer) in ordinary.iter().enumerate() {
        if i % 50 == 25 {
            let env = if i == 175 {
                priced_purchase(&rich, MAX_MINOR_UNITS, 0)
            } else {
                priced_purchase(&poisoned, big, big)
            };
            app.publish(profile, &env).await;
            poison.push(env.event_id);
        }
        app.publish(profile, &priced_purchase(customer, 2_000, 500))
            .await;
    }
    assert_eq!(poison.len(), 4);

    // Every ordinary event in the inbox, every poison one dead-lettered.
    let inbox = "SELECT COUNT(*) FROM processed_events WHERE consumer = 'segmentation'";
    let expected = app.feeder.published - poison.len() as i64;
    let mut dead = Vec::new();
    for _ in 0..1200 {
        dead = dead_letters(&app).await;
        if dead.len() >= poison.len() && app.count(inbox).await >= expected {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        app.count(inbox).await,
        expected,
        "the poison ones are not recorded"
    );
    let ids: Vec<&str> = dead.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        ids, poison,
        "each poison event dead-lettered, once: {dead:?}"
    );
    for (id, reason) in &dead {
        if *id == poison[3] {
            assert!(
                reason.contains(&format!("customer {rich}"))
                    && reason.contains("spend_minor")
                    && reason.contains("overflow"),
                "{reason}"
            );
        } else {
            assert!(
                reason.contains(&format!("customer {poisoned}"))
                    && reason.contains("amount_minor")
                    && reason.contains(&big.to_string())
                    && reason.contains("MAX_MINOR_UNITS"),
                "{reason}"
            );
        }
    }

    // The ordinary purchases all folded, once each.
    let list = ordinary
        .iter()
        .map(|c| format!("'{c}'"))
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM features WHERE customer_id IN ({list}) \
             AND data LIKE '%\"purchases\":1,%' AND data LIKE '%\"spend_minor\":2000,%' \
             AND data LIKE '%\"margin_minor\":500,%'"
        ))
        .await,
        200
    );
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM purchases WHERE customer_id IN ({list})"
        ))
        .await,
        200
    );
    // Nothing of the poison ones.
    for table in ["features", "purchases"] {
        assert_eq!(
            app.count(&format!(
                "SELECT COUNT(*) FROM {table} WHERE customer_id = '{poisoned}'"
            ))
            .await,
            0,
            "{table} of the customer whose purchases were poison"
        );
    }
    assert_eq!(app.count(&rich_spend).await, 1, "the spend as it was");
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM purchases WHERE customer_id = '{rich}'"
        ))
        .await,
        1,
        "the refused purchase is not recorded"
    );
    app.stop().await;
}

/// One batch through the handler: the poison events are refused for good (their
/// reasons naming customer and field), each on its own, and the others applied.
#[tokio::test]
async fn a_poison_event_is_refused_alone_and_the_batch_applied() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let db = app.inner.database().await.unwrap();
    let handler = handler(db.clone());
    let max = retention_domain::MAX_MINOR_UNITS;
    let (rich, poisoned) = (new_id(), new_id());
    let others: Vec<String> = (0..4).map(|_| new_id()).collect();
    // 9,223 orders at the bound fit in an i64 spend; a 9,224th would not.
    let history: Vec<EventEnvelope> = (0..2).map(|_| priced_purchase(&rich, max, 0)).collect();
    assert!(
        handler
            .handle_batch(&history)
            .await
            .iter()
            .all(Result::is_ok)
    );
    sea_orm::ConnectionTrait::execute_unprepared(
        &db,
        &format!(
            "UPDATE features SET data = replace(data, '\"spend_minor\":{},', \
             '\"spend_minor\":{},') WHERE customer_id = '{rich}'",
            2 * max,
            9_223 * max
        ),
    )
    .await
    .unwrap();
    let batch = vec![
        priced_purchase(&others[0], 2_000, 500),
        priced_purchase(&rich, max, 0),
        priced_purchase(&others[1], 2_000, 500),
        priced_purchase(&poisoned, 0, -max - 1),
        priced_purchase(&others[2], 2_000, 500),
        // What is left up to i64::MAX: fits, exactly.
        priced_purchase(&rich, i64::MAX - 9_223 * max, 0),
        priced_purchase(&others[3], 2_000, 500),
    ];
    let results = handler.handle_batch(&batch).await;
    for (i, r) in results.iter().enumerate() {
        match (i, r) {
            (1, Err(HandlerError::Permanent(reason))) => assert!(
                reason.contains(&format!("customer {rich}: spend_minor would overflow")),
                "{reason}"
            ),
            (3, Err(HandlerError::Permanent(reason))) => assert!(
                reason.contains(&format!(
                    "customer {poisoned}: margin_minor of {}",
                    -max - 1
                )) && reason.contains("PurchaseRecordedEvent"),
                "{reason}"
            ),
            (1 | 3, r) => panic!("event {i}: {r:?}"),
            (_, r) => assert!(r.is_ok(), "event {i}: {r:?}"),
        }
    }
    let folded = |customer: &str, purchases: u32, spend: i64| {
        format!(
            "SELECT COUNT(*) FROM features WHERE customer_id = '{customer}' \
             AND data LIKE '%\"purchases\":{purchases},%' AND data LIKE '%\"spend_minor\":{spend},%'"
        )
    };
    for c in &others {
        assert_eq!(app.count(&folded(c, 1, 2_000)).await, 1, "{c}");
    }
    assert_eq!(
        app.count(&folded(&rich, 3, i64::MAX)).await,
        1,
        "up to i64::MAX exactly: the order that fits is folded"
    );
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM features WHERE customer_id = '{poisoned}'"
        ))
        .await,
        0
    );
    app.stop().await;
}
