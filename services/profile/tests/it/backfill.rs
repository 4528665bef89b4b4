//! BackfillEvents: the current state of a range of customers replayed through the
//! outbox for one consumer group, a page per call; bad requests name their fields;
//! only `profile.admin` may ask.

use std::collections::BTreeMap;

use prost::Message;
use retention_proto::common::EventEnvelope;
use retention_proto::profile as pb;
use retention_testkit::{Backend, on_both_backends};
use sea_orm::{ConnectionTrait, Statement};
use tonic::Code;

use crate::harness::*;

fn request(group: &str) -> pb::BackfillEventsRequest {
    pb::BackfillEventsRequest {
        consumer_group: group.into(),
        ..Default::default()
    }
}

/// Every outbox envelope, in outbox order.
async fn envelopes(app: &TestApp) -> Vec<EventEnvelope> {
    let db = app.database().await;
    db.query_all_raw(Statement::from_string(
        db.get_database_backend(),
        "SELECT envelope FROM outbox_events ORDER BY seq".to_string(),
    ))
    .await
    .unwrap()
    .iter()
    .map(|r| {
        let bytes: Vec<u8> = r.try_get_by_index(0).unwrap();
        EventEnvelope::decode(bytes.as_slice()).unwrap()
    })
    .collect()
}

fn short(event_type: &str) -> &str {
    event_type.trim_start_matches("retention.profile.v1.")
}

/// Calls BackfillEvents until the range is done; the summed counts, and the calls made.
async fn backfill_all(
    app: &mut TestApp,
    mut req: pb::BackfillEventsRequest,
) -> (i64, BTreeMap<String, i64>, usize) {
    let (mut customers, mut events, mut calls) = (0, BTreeMap::new(), 0);
    loop {
        let r = app
            .client
            .backfill_events(app.req(req.clone()))
            .await
            .expect("backfill")
            .into_inner();
        calls += 1;
        customers += r.customer_count;
        for (t, n) in r.event_counts {
            *events.entry(short(&t).to_string()).or_default() += n;
        }
        if r.next_page_token.is_empty() {
            return (customers, events, calls);
        }
        req.page_token = r.next_page_token;
    }
}

fn counts(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
    pairs.iter().map(|(t, n)| (t.to_string(), *n)).collect()
}

async fn replays_the_current_state_for_one_group(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    // a: two consents (one changed twice), two purchases, a referral of b.
    // b: absorbed d (and d's purchase). c: erased.
    let a = app.create("Ann").await;
    let b = app.create("Bob").await;
    let c = app.create("Cai").await;
    let d = app.create("Dan").await;
    for (channel, status) in [
        (pb::ContactChannel::Sms, pb::ConsentStatus::Granted),
        (pb::ContactChannel::Email, pb::ConsentStatus::Granted),
        (pb::ContactChannel::Email, pb::ConsentStatus::Withdrawn),
    ] {
        app.consent(&a.name, channel, status, "form").await;
    }
    for (who, order) in [(&a, "a-1"), (&a, "a-2"), (&d, "d-1")] {
        app.record(purchase(&who.name, order, 1_000)).await;
    }
    app.refer(&a.name, &b.name).await;
    app.merge(&b.name, &d.name).await;
    app.erase(&c.name).await;
    let live = envelopes(&app).await;
    assert!(live.iter().all(|e| e.target_group.is_empty()));

    let (customers, events, calls) = backfill_all(&mut app, request("segmentation")).await;
    assert_eq!(
        (customers, calls),
        (3, 1),
        "a, b and c's tombstone; d is b now"
    );
    assert_eq!(
        events,
        counts(&[
            ("CustomerCreatedEvent", 2),
            ("CustomerMergedEvent", 1),
            ("ConsentChangedEvent", 2),
            ("PurchaseRecordedEvent", 3),
            ("ReferralRecordedEvent", 1),
            ("CustomerErasedEvent", 1),
        ])
    );
    let all = envelopes(&app).await;
    let replay = &all[live.len()..];
    assert_eq!(replay.len(), 10);
    assert!(
        replay.iter().all(|e| e.target_group == "segmentation"),
        "every replayed event is for the group alone"
    );
    let ids = |envs: &[EventEnvelope]| -> Vec<String> {
        let mut v: Vec<String> = envs
            .iter()
            .filter_map(|e| {
                retention_events::decode_payload::<pb::PurchaseRecordedEvent>(e)
                    .unwrap()
                    .map(|p| format!("{}/{}", p.customer_id, p.purchase_id))
            })
            .collect();
        v.sort();
        v
    };
    let bid = b.name.trim_start_matches("customers/");
    let mut expected: Vec<String> = ids(&live)
        .into_iter()
        .map(|s| {
            // d's purchase was recorded under d and moved to b by the merge.
            let did = d.name.trim_start_matches("customers/");
            s.replace(did, bid)
        })
        .collect();
    expected.sort();
    assert_eq!(ids(replay), expected, "the purchase ids recorded live");
    let consents: Vec<(i32, i32)> = replay
        .iter()
        .filter_map(|e| {
            retention_events::decode_payload::<pb::ConsentChangedEvent>(e)
                .unwrap()
                .map(|c| (c.channel, c.status))
        })
        .collect();
    assert!(consents.contains(&(
        pb::ContactChannel::Email as i32,
        pb::ConsentStatus::Withdrawn as i32
    )));
    let merged: Vec<pb::CustomerMergedEvent> = replay
        .iter()
        .filter_map(|e| retention_events::decode_payload(e).unwrap())
        .collect();
    assert_eq!(merged.len(), 1);
    assert_eq!(format!("customers/{}", merged[0].survivor_id), b.name);
    assert_eq!(format!("customers/{}", merged[0].merged_id), d.name);
    let created: Vec<pb::CustomerCreatedEvent> = replay
        .iter()
        .filter_map(|e| retention_events::decode_payload(e).unwrap())
        .collect();
    assert_eq!(created[0].customer.as_ref().unwrap().tags, vec!["vip"]);

    // One customer at a time: three calls, the same counts.
    let mut paged = request("late-joiner");
    paged.page_size = 1;
    let (n, by_type, calls) = backfill_all(&mut app, paged).await;
    assert_eq!((n, calls), (3, 3));
    assert_eq!(by_type, events);

    // [b, c): b alone, with d merged into it and d's purchase.
    let mut ranged = request("segmentation");
    ranged.customer_id_from = bid.to_string();
    ranged.customer_id_to = c.name.trim_start_matches("customers/").to_string();
    let (n, by_type, _) = backfill_all(&mut app, ranged).await;
    assert_eq!(n, 1);
    assert_eq!(
        by_type,
        counts(&[
            ("CustomerCreatedEvent", 1),
            ("CustomerMergedEvent", 1),
            ("PurchaseRecordedEvent", 1),
        ])
    );
    app.stop().await;
}
on_both_backends!(backfill_replays, replays_the_current_state_for_one_group);

#[tokio::test]
async fn bad_backfills_name_their_fields_and_need_the_admin_scope() {
    let mut app = TestApp::spawn(Backend::Sqlite).await;
    app.create("Ann").await;
    let cases = [
        (request(""), "consumer_group"),
        (request("Segmentation!"), "consumer_group"),
        (
            pb::BackfillEventsRequest {
                customer_id_from: "b".into(),
                customer_id_to: "a".into(),
                ..request("segmentation")
            },
            "customer_id_to",
        ),
        (
            pb::BackfillEventsRequest {
                page_size: 1001,
                ..request("segmentation")
            },
            "page_size",
        ),
        (
            pb::BackfillEventsRequest {
                page_token: "not-a-token".into(),
                ..request("segmentation")
            },
            "page_token",
        ),
    ];
    for (req, field) in cases {
        let err = app
            .client
            .backfill_events(app.req(req.clone()))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{req:?}");
        assert_eq!(violated_fields(&err), vec![field], "{req:?}");
    }
    // A token continues only the range and group it was issued for.
    let mut first = request("segmentation");
    first.page_size = 1;
    app.create("Bob").await;
    let token = app
        .client
        .backfill_events(app.req(first))
        .await
        .unwrap()
        .into_inner()
        .next_page_token;
    assert!(!token.is_empty());
    let err = app
        .client
        .backfill_events(app.req(pb::BackfillEventsRequest {
            page_token: token,
            ..request("winback")
        }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), vec!["page_token"]);

    let before = app.count("SELECT COUNT(*) FROM outbox_events").await;
    let err = app
        .client
        .backfill_events(
            app.req_scopes(request("segmentation"), &["profile.read", "profile.write"]),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM outbox_events").await,
        before,
        "nothing replayed"
    );
    let ok = app
        .client
        .backfill_events(app.req_scopes(request("segmentation"), &["profile.admin"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.customer_count, 2);
    app.stop().await;
}
