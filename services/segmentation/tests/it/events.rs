//! Consumed events applied in batches: each exactly once and in stream order,
//! an erasure in its place, a bad event refused without holding back the rest.

use std::sync::Arc;
use std::time::Duration;

use retention_cache::Cache;
use retention_events::{EventHandler, HandlerError, Outbox};
use retention_proto::common::EventEnvelope;
use retention_proto::interactions as ipb;
use retention_proto::profile as ppb;
use retention_segmentation::Segmentation;
use retention_segmentation::app::SegmentationApp;
use retention_segmentation::domain::scoring::ScoringConfig;
use retention_segmentation::events::consume::UpstreamHandler;
use retention_testkit::{Backend, TestService, unique_namespace};
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
    let at_risk = envelope(&ipb::ComplaintSlaAtRiskEvent {
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
            ..Default::default()
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
        at_risk.clone(),
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

    // The warning is kept on the complaint's mark (the resolution's bit).
    assert!(data.contains("\"at_risk\":4"), "{data}");

    // The owners' replay of the current state: the late complaint opened,
    // warned of, breached, resolved and its status; the open one opened.
    let mut state = vec![created];
    state.extend(purchases);
    state.extend([
        opened(&late),
        at_risk,
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

/// 1,000 ordinary purchases of other customers (one each, 2,000 spent, 500
/// margin) with poison purchases among them, in publication order: two poison
/// ones before any ordinary one (2^62 minor units; a margin one short of
/// `-MAX_MINOR_UNITS`), then one in every 250 ordinary ones: three more of 2^62,
/// and one in bounds whose fold would take `rich`'s spend past `i64::MAX`.
struct PoisonFeed {
    rich: String,
    poisoned: String,
    ordinary: Vec<String>,
    events: Vec<EventEnvelope>,
    /// Event ids of the poison ones, in publication order.
    poison: Vec<String>,
}

const ORDINARY: usize = 1_000;
const BIG: i64 = 1 << 62;

impl PoisonFeed {
    fn new(rich: &str) -> PoisonFeed {
        let max = retention_domain::MAX_MINOR_UNITS;
        let poisoned = new_id();
        let ordinary: Vec<String> = (0..ORDINARY).map(|_| new_id()).collect();
        let mut events = vec![
            priced_purchase(&poisoned, BIG, BIG),
            priced_purchase(&poisoned, 0, -max - 1),
        ];
        let mut poison: Vec<String> = events.iter().map(|e| e.event_id.clone()).collect();
        for (i, customer) in ordinary.iter().enumerate() {
            if i % 250 == 125 {
                let env = if i == 875 {
                    priced_purchase(rich, max, 0)
                } else {
                    priced_purchase(&poisoned, BIG, BIG)
                };
                poison.push(env.event_id.clone());
                events.push(env);
            }
            events.push(priced_purchase(customer, 2_000, 500));
        }
        assert_eq!(poison.len(), 6);
        PoisonFeed {
            rich: rich.into(),
            poisoned,
            ordinary,
            events,
            poison,
        }
    }

    /// Whether `reason` is the one the poison event `id` must be refused with.
    fn check_reason(&self, id: &str, reason: &str) {
        let max = retention_domain::MAX_MINOR_UNITS;
        let (rich, poisoned) = (&self.rich, &self.poisoned);
        let ok = if id == self.poison[1] {
            reason.contains(&format!(
                "customer {poisoned}: margin_minor of {}",
                -max - 1
            )) && reason.contains("MAX_MINOR_UNITS")
        } else if id == self.poison[5] {
            reason.contains(&format!("customer {rich}"))
                && reason.contains("spend_minor")
                && reason.contains("overflow")
        } else {
            reason.contains(&format!("customer {poisoned}"))
                && reason.contains("amount_minor")
                && reason.contains(&BIG.to_string())
                && reason.contains("MAX_MINOR_UNITS")
        };
        assert!(ok, "poison event {id}: {reason}");
    }
}

/// Lifts `rich`'s spend (one purchase of 1,000, applied already) to one bound
/// short of `i64::MAX`, as a long history would; the query that finds it so.
async fn near_max_spend(svc: &TestService, rich: &str) -> String {
    let near_max = i64::MAX - retention_domain::MAX_MINOR_UNITS + 1;
    let db = svc.database().await.unwrap();
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
    assert_eq!(svc.count(&rich_spend).await.unwrap(), 1);
    rich_spend
}

const INBOX: &str = "SELECT COUNT(*) FROM processed_events WHERE consumer = 'segmentation'";

/// Polls `dead` (the poison events' dead letters: (event id, reason)) until all
/// of `feed`'s poison ones are there and `inbox` events are in the inbox, for a
/// minute at most.
async fn poll_until_consumed<F, Fut>(
    svc: &TestService,
    feed: &PoisonFeed,
    inbox: i64,
    mut dead: F,
) -> Vec<(String, String)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Vec<(String, String)>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let buried = dead().await;
        let applied = svc.count(INBOX).await.unwrap();
        if (buried.len() >= feed.poison.len() && applied >= inbox)
            || tokio::time::Instant::now() >= deadline
        {
            return buried;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What the feed must leave: every poison event dead-lettered once with its
/// reason and nothing of it applied; every ordinary purchase folded once.
async fn check_poison_feed(
    svc: &TestService,
    feed: &PoisonFeed,
    inbox: i64,
    dead: &[(String, String)],
    rich_spend: &str,
) {
    let count = |sql: String| async move { svc.count(&sql).await.unwrap() };
    assert_eq!(
        count(INBOX.into()).await,
        inbox,
        "every ordinary event in the inbox, the poison ones not"
    );
    let mut ids: Vec<&str> = dead.iter().map(|(id, _)| id.as_str()).collect();
    ids.sort_unstable();
    let mut expected: Vec<&str> = feed.poison.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(
        ids, expected,
        "each poison event dead-lettered, once: {dead:?}"
    );
    for (id, reason) in dead {
        feed.check_reason(id, reason);
    }

    // The ordinary purchases all folded, once each.
    let list = feed
        .ordinary
        .iter()
        .map(|c| format!("'{c}'"))
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(
        count(format!(
            "SELECT COUNT(*) FROM features WHERE customer_id IN ({list}) \
             AND data LIKE '%\"purchases\":1,%' AND data LIKE '%\"spend_minor\":2000,%' \
             AND data LIKE '%\"margin_minor\":500,%'"
        ))
        .await,
        ORDINARY as i64
    );
    assert_eq!(
        count(format!(
            "SELECT COUNT(*) FROM purchases WHERE customer_id IN ({list})"
        ))
        .await,
        ORDINARY as i64
    );
    // Nothing of the poison ones.
    for table in ["features", "purchases"] {
        assert_eq!(
            count(format!(
                "SELECT COUNT(*) FROM {table} WHERE customer_id = '{}'",
                feed.poisoned
            ))
            .await,
            0,
            "{table} of the customer whose purchases were poison"
        );
    }
    assert_eq!(count(rich_spend.into()).await, 1, "the spend as it was");
    assert_eq!(
        count(format!(
            "SELECT COUNT(*) FROM purchases WHERE customer_id = '{}'",
            feed.rich
        ))
        .await,
        1,
        "the refused purchase is not recorded"
    );
}

/// Poison purchases fed on the Redis stream directly, among 1,000 ordinary ones
/// of other customers (see [`PoisonFeed`]), published in pipelined `XADD`s as
/// the relays do: each poison one is dead-lettered with a reason naming its
/// customer and field, nothing of it is applied, and every ordinary purchase
/// (many in the same batches) is folded.
#[tokio::test]
async fn poison_purchases_are_dead_lettered_and_the_rest_of_the_batch_is_folded() {
    let mut app = TestApp::spawn(Backend::Postgres).await;
    let profile = retention_segmentation::events::PROFILE_STREAM;

    let rich = new_id();
    app.publish(profile, &priced_purchase(&rich, 1_000, 100))
        .await;
    app.settle().await;
    let rich_spend = near_max_spend(&app.inner, &rich).await;

    let feed = PoisonFeed::new(&rich);
    let settings = &app.inner.settings;
    let client = redis::Client::open(settings.redis.url.as_str()).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let key = retention_events::stream_key(&settings.redis.namespace, profile);
    for chunk in feed.events.chunks(200) {
        let mut pipe = redis::pipe();
        for env in chunk {
            let bytes = prost::Message::encode_to_vec(env);
            pipe.xadd(
                &key,
                "*",
                &[
                    ("id", env.event_id.as_bytes()),
                    ("type", env.event_type.as_bytes()),
                    ("envelope", bytes.as_slice()),
                ],
            )
            .ignore();
        }
        let () = pipe.query_async(&mut redis).await.unwrap();
        app.feeder.published += chunk.len() as i64;
    }

    let inbox = app.feeder.published - feed.poison.len() as i64;
    let dead = poll_until_consumed(&app.inner, &feed, inbox, || dead_letters(&app)).await;
    check_poison_feed(&app.inner, &feed, inbox, &dead, &rich_spend).await;
    app.stop().await;
}

/// The same on the embedded bus: the service on SQLite with an in-process bus,
/// the feed published on the bus's profile stream directly; the poison events
/// are in the bus's dead letters with their reasons.
#[tokio::test]
async fn poison_purchases_are_dead_lettered_on_the_embedded_bus_and_the_rest_folded() {
    use retention_events::{EventBus, InProcessBus, Publisher};
    use retention_segmentation::events::{CONSUMER, PROFILE_STREAM};

    let bus = InProcessBus::new();
    // Whatever is published before the consumer joins waits for it.
    bus.declare(PROFILE_STREAM, &[CONSUMER.to_string()]);
    let svc = TestService::start::<Segmentation>(
        Backend::Sqlite,
        false,
        |_| {},
        Some(EventBus::InProcess(bus.clone())),
    )
    .await
    .expect("spawn segmentation on the in-process bus");
    let publish = |env: &EventEnvelope| {
        let bus = bus.clone();
        let (id, bytes) = (env.event_id.clone(), prost::Message::encode_to_vec(env));
        async move { bus.publish(PROFILE_STREAM, &id, &bytes).await.unwrap() }
    };
    let dead = || {
        let bus = bus.clone();
        async move {
            bus.dead_letters()
                .into_iter()
                .filter(|d| d.stream == PROFILE_STREAM && d.group == CONSUMER)
                .map(|d| (d.event_id, d.reason))
                .collect::<Vec<_>>()
        }
    };

    let rich = new_id();
    publish(&priced_purchase(&rich, 1_000, 100)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while svc.count(INBOX).await.unwrap() < 1 {
        assert!(tokio::time::Instant::now() < deadline, "never consumed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rich_spend = near_max_spend(&svc, &rich).await;

    let feed = PoisonFeed::new(&rich);
    for env in &feed.events {
        publish(env).await;
    }

    let inbox = 1 + ORDINARY as i64;
    let buried = poll_until_consumed(&svc, &feed, inbox, dead).await;
    check_poison_feed(&svc, &feed, inbox, &buried, &rich_spend).await;
    svc.stop().await.expect("clean shutdown");
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
