//! `retention-cli dead-letters` against the four services in embedded mode:
//! poison purchases the segmentation service refuses are listed (as a table),
//! shown, discarded (gone) and replayed (refused again: buried anew, listed
//! once); the other consuming services have none.

use std::time::Duration;

use retention_events::EventBus;
use retention_proto::common::{DeadLetter, EventEnvelope, Money};
use retention_proto::profile as ppb;
use retention_suite::cli::audit::{self, AuditQuery, Audited};
use retention_suite::cli::dead_letters::{self, Consumer};

use super::{Mode, clients, four_services};

const PROFILE: &str = "retention.profile.events";

/// A purchase segmentation refuses for good: a margin past the bound.
pub(super) fn poison(customer: &str) -> EventEnvelope {
    let money = |minor_units| {
        Some(Money {
            currency_code: "CNY".into(),
            minor_units,
        })
    };
    let mut env = retention_testkit::envelope(&ppb::PurchaseRecordedEvent {
        customer_id: customer.into(),
        purchase_id: uuid::Uuid::now_v7().to_string(),
        order_id: uuid::Uuid::now_v7().to_string(),
        occur_time: Some(prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        }),
        amount: money(2_000),
        gross_margin: money(-retention_domain::MAX_MINOR_UNITS - 1),
        discount: money(0),
        product_category: "tea".into(),
        channel: "store".into(),
    });
    env.customer_id = customer.into();
    env
}

fn code(e: &anyhow::Error) -> Option<tonic::Code> {
    e.downcast_ref::<tonic::Status>().map(tonic::Status::code)
}

#[tokio::test]
async fn the_cli_lists_shows_discards_and_replays_dead_letters() {
    let bus = EventBus::in_process_for_suite();
    let services = four_services(&Mode::Embedded(bus.clone())).await;
    let [profile, interactions, segmentation, winback] = &services;
    let clients = clients(profile, interactions, segmentation, winback).await;
    let seg = Consumer::Segmentation;

    for service in Consumer::NAMES.map(|n| Consumer::parse(n).unwrap()) {
        assert!(
            dead_letters::list(&clients, service)
                .await
                .unwrap()
                .is_empty()
        );
    }
    assert_eq!(
        dead_letters::report(&[]),
        "no dead letters\n",
        "an empty list says so"
    );

    let publisher = bus.publisher();
    let (a, b) = ("dl-cli-a", "dl-cli-b");
    let (pa, pb) = (poison(a), poison(b));
    for env in [&pa, &pb] {
        publisher
            .publish(PROFILE, &env.event_id, &prost::Message::encode_to_vec(env))
            .await
            .unwrap();
    }
    let until = async |done: &dyn Fn(&[DeadLetter]) -> bool| {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let letters = dead_letters::list(&clients, seg).await.unwrap();
            if done(&letters) || tokio::time::Instant::now() > deadline {
                return letters;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let letters = until(&|l| l.len() >= 2).await;
    let events: Vec<&str> = letters.iter().map(|d| d.event_id.as_str()).collect();
    assert_eq!(events, [pa.event_id.as_str(), pb.event_id.as_str()]);
    let table = dead_letters::report(&letters);
    for d in &letters {
        assert!(table.contains(&d.id), "{table}");
    }
    assert!(table.contains("PurchaseRecordedEvent") && table.contains(a) && table.contains(b));
    assert!(table.contains("margin_minor"), "{table}");
    // The other consumers are not concerned.
    assert!(
        dead_letters::list(&clients, Consumer::Winback)
            .await
            .unwrap()
            .is_empty()
    );

    let shown = dead_letters::show(&clients, seg, &letters[0].id)
        .await
        .unwrap();
    assert!(!shown.envelope.is_empty());
    let detail = dead_letters::detail(&shown);
    assert!(
        detail.contains(&pa.event_id) && detail.contains("segmentation"),
        "{detail}"
    );

    // Discard: gone; once more, NOT_FOUND.
    let gone = dead_letters::discard(&clients, seg, &letters[0].id)
        .await
        .unwrap();
    assert_eq!(gone.event_id, pa.event_id);
    let left = dead_letters::list(&clients, seg).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, letters[1].id);
    let e = dead_letters::discard(&clients, seg, &letters[0].id)
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(tonic::Code::NotFound), "{e}");
    // Not one of winback's.
    let e = dead_letters::show(&clients, Consumer::Winback, &letters[1].id)
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(tonic::Code::NotFound), "{e}");

    // Replay: the poison is refused again, buried anew, listed once.
    let replayed = dead_letters::replay(&clients, seg, &letters[1].id)
        .await
        .unwrap();
    assert_eq!(replayed.event_id, pb.event_id);
    let again = until(&|l| l.len() == 1 && l[0].id != letters[1].id).await;
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0].event_id, pb.event_id);
    assert_ne!(again[0].id, letters[1].id);
    let e = dead_letters::replay(&clients, seg, &letters[1].id)
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(tonic::Code::NotFound), "{e}");
    dead_letters::discard(&clients, seg, &again[0].id)
        .await
        .unwrap();
    assert!(dead_letters::list(&clients, seg).await.unwrap().is_empty());

    // Each replay and discard that happened is a row of segmentation's audit
    // trail (the refused ones are not), and the chain verifies.
    let rows = audit::list(&clients, Audited::Segmentation, &AuditQuery::default())
        .await
        .unwrap();
    let actions: Vec<&str> = rows.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "events.dead_letter.discard",
            "events.dead_letter.replay",
            "events.dead_letter.discard"
        ]
    );
    assert_eq!(rows[0].resources, ["segmentation", letters[0].id.as_str()]);
    assert_eq!(rows[1].resources, ["segmentation", letters[1].id.as_str()]);
    assert!(
        audit::verify(&clients, Audited::Segmentation)
            .await
            .unwrap()
            .ok()
    );

    for s in services {
        s.stop().await.unwrap();
    }
}
