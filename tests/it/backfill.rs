//! Issue #16's done-when for backfills: segmentation's read model, fed live through
//! the public APIs, emptied on purpose, is rebuilt by `retention-cli backfill
//! segmentation` (profile's and interactions' BackfillEvents, a page at a time)
//! and equals the one fed live. Embedded mode: SQLite per service, one bus.

use std::collections::BTreeMap;
use std::time::Duration;

use retention_events::EventBus;
use retention_proto::interactions as ipb;
use retention_proto::profile as ppb;
use retention_segmentation::domain::features::Features;
use retention_suite::cli::backfill::{self, BackfillPlan, Owner};
use retention_suite::cli::synth::{self, SynthOptions};
use retention_testkit::TestService;
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};

use super::{Mode, clients, four_services};

/// What segmentation holds of the customers: each feature row's folded data
/// (parsed, so equal values compare equal whatever their JSON spelling) and each
/// purchase it recorded with its owner and time. Left out on purpose: the
/// `update_time` of feature rows, the time the fold last changed the row, which
/// a rebuild sets to when it ran (the only time of application in the model).
#[derive(Debug, Clone, PartialEq)]
struct ReadModel {
    features: BTreeMap<String, Features>,
    purchases: BTreeMap<String, (String, String)>,
}

async fn rows(db: &DatabaseConnection, sql: &str) -> Vec<sea_orm::QueryResult> {
    db.query_all_raw(Statement::from_string(
        db.get_database_backend(),
        sql.to_string(),
    ))
    .await
    .unwrap()
}

async fn read_model(db: &DatabaseConnection) -> ReadModel {
    let mut features = BTreeMap::new();
    for r in rows(db, "SELECT customer_id, data FROM features").await {
        let id: String = r.try_get("", "customer_id").unwrap();
        let data: String = r.try_get("", "data").unwrap();
        features.insert(id, serde_json::from_str(&data).unwrap());
    }
    let mut purchases = BTreeMap::new();
    for r in rows(
        db,
        "SELECT purchase_id, customer_id, CAST(occur_time AS TEXT) AS t FROM purchases",
    )
    .await
    {
        purchases.insert(
            r.try_get("", "purchase_id").unwrap(),
            (
                r.try_get("", "customer_id").unwrap(),
                r.try_get("", "t").unwrap(),
            ),
        );
    }
    ReadModel {
        features,
        purchases,
    }
}

/// The event types segmentation applies (and records in its inbox); a status
/// change only when it is a reopening.
const FOLDED: &[&str] = &[
    "retention.profile.v1.CustomerCreatedEvent",
    "retention.profile.v1.CustomerUpdatedEvent",
    "retention.profile.v1.PurchaseRecordedEvent",
    "retention.profile.v1.ReferralRecordedEvent",
    "retention.profile.v1.CustomerMergedEvent",
    "retention.profile.v1.CustomerErasedEvent",
    "retention.interactions.v1.ComplaintOpenedEvent",
    "retention.interactions.v1.ComplaintResolvedEvent",
    "retention.interactions.v1.ComplaintSlaBreachedEvent",
    "retention.interactions.v1.ComplaintSlaAtRiskEvent",
    "retention.interactions.v1.SurveyRecordedEvent",
];

async fn folded_in_outbox(service: &TestService) -> i64 {
    let types: Vec<String> = FOLDED.iter().map(|t| format!("'{t}'")).collect();
    service
        .count(&format!(
            "SELECT COUNT(*) FROM outbox_events WHERE event_type IN ({})",
            types.join(", ")
        ))
        .await
        .unwrap()
}

/// Waits until segmentation's inbox holds `n` events.
async fn wait_for_inbox(segmentation: &TestService, n: i64, what: &str) {
    let sql = "SELECT COUNT(*) FROM processed_events WHERE consumer = 'segmentation'";
    let mut seen = 0;
    for _ in 0..1200 {
        seen = segmentation.count(sql).await.unwrap();
        if seen >= n {
            assert_eq!(seen, n, "more events applied than {what} holds");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("segmentation applied {seen} of the {n} events of {what}");
}

fn complaint(customer: &str) -> ipb::OpenComplaintRequest {
    ipb::OpenComplaintRequest {
        complaint: Some(ipb::Complaint {
            customer: customer.into(),
            category: ipb::ComplaintCategory::Delivery as i32,
            severity: ipb::Severity::High as i32,
            subject: "late".into(),
            ..Default::default()
        }),
        request_id: String::new(),
    }
}

fn resolution(name: &str) -> ipb::ResolveComplaintRequest {
    ipb::ResolveComplaintRequest {
        name: name.into(),
        resolution: Some(ipb::Resolution {
            outcome: ipb::ResolutionOutcome::Fixed as i32,
            root_cause: "courier".into(),
            service_gap: ipb::ServiceGap::Procedure as i32,
            ..Default::default()
        }),
        etag: String::new(),
    }
}

#[tokio::test]
async fn an_emptied_read_model_is_rebuilt_by_a_backfill_and_equals_the_one_fed_live() {
    let [profile, interactions, segmentation, winback] =
        four_services(&Mode::Embedded(EventBus::in_process())).await;
    let c = clients(&profile, &interactions, &segmentation, &winback).await;

    // Fed live, through the public methods only: a synthetic population with
    // purchases, complaints and surveys ...
    let loaded = synth::load_synthetic(
        &c,
        &SynthOptions {
            customers: 40,
            seed: 16,
            quiet: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(loaded.purchases > 40 && loaded.complaints > 0 && loaded.surveys > 0);
    let who = &loaded.customers;
    let (mut pc, mut ic) = (c.profile.clone(), c.interactions.clone());
    // ... consents, referrals ...
    for (name, channel, status) in [
        (
            &who[0],
            ppb::ContactChannel::Sms,
            ppb::ConsentStatus::Granted,
        ),
        (
            &who[1],
            ppb::ContactChannel::Email,
            ppb::ConsentStatus::Withdrawn,
        ),
    ] {
        pc.update_consent(c.req(ppb::UpdateConsentRequest {
            name: name.clone(),
            channel: channel as i32,
            status: status as i32,
            source: "preference centre".into(),
        }))
        .await
        .unwrap();
    }
    for (a, b) in [(&who[0], &who[1]), (&who[2], &who[0])] {
        pc.record_referral(c.req(ppb::RecordReferralRequest {
            referral: Some(ppb::Referral {
                referrer: a.clone(),
                referred: b.clone(),
                occur_time: None,
            }),
        }))
        .await
        .unwrap();
    }
    // ... complaints through their life (closed, reopened, escalated) of a
    // customer who has no others, one of a customer merged away and one of a
    // customer erased later ...
    let kim = synth::create_customer(&c, "Kim").await.unwrap();
    let open = |customer: &str| {
        let req = c.req(complaint(customer));
        let mut ic = ic.clone();
        async move { ic.open_complaint(req).await.unwrap().into_inner().name }
    };
    let closed = open(&kim).await;
    let reopened = open(&kim).await;
    let escalated = open(&kim).await;
    let of_merged = open(&who[4]).await;
    open(&who[5]).await;
    for name in [&closed, &reopened] {
        ic.resolve_complaint(c.req(resolution(name))).await.unwrap();
    }
    ic.close_complaint(c.req(ipb::CloseComplaintRequest {
        name: closed.clone(),
        etag: String::new(),
    }))
    .await
    .unwrap();
    ic.reopen_complaint(c.req(ipb::ReopenComplaintRequest {
        name: reopened.clone(),
        reason: "still broken".into(),
        etag: String::new(),
    }))
    .await
    .unwrap();
    ic.escalate_complaint(c.req(ipb::EscalateComplaintRequest {
        name: escalated.clone(),
        reason: "VIP".into(),
        etag: String::new(),
    }))
    .await
    .unwrap();
    for (customer, about) in [(&kim, closed.as_str()), (&who[5], "")] {
        ic.record_survey(c.req(ipb::RecordSurveyRequest {
            survey: Some(ipb::Survey {
                customer: customer.clone(),
                complaint: about.into(),
                csat: 4,
                expectation: 6,
                perceived: 8,
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap();
    }
    // ... SLA breaches: the sweep a month from now, as another replica would run it ...
    let breaches = super::sweep_in_days(&interactions, 30).await;
    assert!(breaches > 0);
    // ... and a merge and an erasure.
    pc.merge_customers(c.req(ppb::MergeCustomersRequest {
        survivor: who[3].clone(),
        merged: who[4].clone(),
        ..Default::default()
    }))
    .await
    .unwrap();
    pc.erase_customer(c.req(ppb::EraseCustomerRequest {
        name: who[5].clone(),
        request_id: String::new(),
    }))
    .await
    .unwrap();
    // Interactions moved the merged customer's complaint to the survivor.
    for _ in 0..600 {
        let owner = ic
            .get_complaint(c.req(ipb::GetComplaintRequest {
                name: of_merged.clone(),
            }))
            .await
            .unwrap()
            .into_inner()
            .customer;
        if owner == who[3] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Everything folded: each applicable event the owners published is in
    // segmentation's inbox (plus the one reopening, a status change).
    let live = folded_in_outbox(&profile).await + folded_in_outbox(&interactions).await + 1;
    wait_for_inbox(&segmentation, live, "the live history").await;
    let sdb = segmentation.database().await.unwrap();
    let fed_live = read_model(&sdb).await;
    assert_eq!(
        fed_live.purchases.len() as i64,
        loaded.purchases - purchases_of(&profile, &who[5]).await,
        "all but the erased customer's"
    );
    let sum = |f: fn(&Features) -> u32| -> u32 { fed_live.features.values().map(f).sum() };
    assert_eq!(sum(|f| f.referrals_given), 2);
    assert!(sum(|f| f.complaints_breached) > 0 && sum(|f| f.csat_count) > 0);
    let id = |name: &str| name.trim_start_matches("customers/").to_string();
    let k = &fed_live.features[&id(&kim)];
    assert_eq!(
        (k.complaints_total, k.complaints_open, k.csat_count),
        (3, 2, 1),
        "closed, reopened and escalated: the latter two open"
    );
    assert!(!fed_live.features.contains_key(&id(&who[4])), "merged away");
    assert!(!fed_live.features.contains_key(&id(&who[5])), "erased");

    // Emptied on purpose.
    for table in ["features", "purchases"] {
        sdb.execute_unprepared(&format!("DELETE FROM {table}"))
            .await
            .unwrap();
    }
    assert!(read_model(&sdb).await.features.is_empty());

    // `retention-cli backfill segmentation`, a few customers per call.
    let plan = BackfillPlan {
        consumer: "segmentation".into(),
        page_size: 7,
        ..Default::default()
    };
    let owners = Owner::read_by("segmentation");
    let replayed = backfill::backfill(&c, &plan, &owners, true).await.unwrap();
    let [
        (Owner::Profile, from_profile),
        (Owner::Interactions, from_interactions),
    ] = replayed.as_slice()
    else {
        panic!("{replayed:?}");
    };
    assert_eq!(from_profile.customers, 40, "41 created, one merged away");
    assert!(from_profile.calls >= 6, "{from_profile:?}");
    let n = |r: &backfill::Replayed, t: &str| r.events.get(t).copied().unwrap_or_default();
    assert_eq!(
        n(from_profile, "retention.profile.v1.PurchaseRecordedEvent"),
        fed_live.purchases.len() as i64
    );
    assert_eq!(
        n(from_profile, "retention.profile.v1.CustomerErasedEvent"),
        1
    );
    // Every loaded customer's synthetic consents (two of them changed live
    // above), but for the merged and the erased customer's.
    assert_eq!(
        n(from_profile, "retention.profile.v1.ConsentChangedEvent"),
        (loaded.customers.len() as i64 - 2) * synth::SYNTHETIC_CONSENT.len() as i64
    );
    assert!(from_interactions.customers > 0);
    print!("{}", backfill::report("segmentation", &replayed));

    let replay: i64 = replayed
        .iter()
        .flat_map(|(_, r)| r.events.iter())
        .filter(|(t, _)| FOLDED.contains(&t.as_str()))
        .map(|(_, n)| n)
        .sum();
    wait_for_inbox(&segmentation, live + replay, "the replay").await;
    let rebuilt = read_model(&sdb).await;
    assert_eq!(
        rebuilt.purchases, fed_live.purchases,
        "the purchases recorded"
    );
    for (customer, live_features) in &fed_live.features {
        assert_eq!(
            rebuilt.features.get(customer),
            Some(live_features),
            "customer {customer}"
        );
    }
    assert_eq!(rebuilt, fed_live);

    // A second backfill over the rebuilt model changes nothing.
    backfill::backfill(&c, &plan, &owners, true).await.unwrap();
    wait_for_inbox(&segmentation, live + 2 * replay, "the second replay").await;
    assert_eq!(read_model(&sdb).await, fed_live);

    for s in [profile, interactions, segmentation, winback] {
        s.stop().await.unwrap();
    }
}

/// Purchases profile holds for `name` (kept after an erasure, anonymously).
async fn purchases_of(profile: &TestService, name: &str) -> i64 {
    profile
        .count(&format!(
            "SELECT COUNT(*) FROM purchases WHERE customer_id = '{}'",
            name.trim_start_matches("customers/")
        ))
        .await
        .unwrap()
}
