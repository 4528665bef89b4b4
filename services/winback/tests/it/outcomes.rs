//! Outcomes: won-back attribution from profile's purchases, contact outcomes, the
//! results against the holdout on a hand-computed fixture, and the comparison of
//! strategies.

use chrono::{DateTime, Duration, Utc};
use retention_proto::winback as pb;
use retention_testkit::Backend;
use retention_winback::domain::targeting::in_holdout;
use tonic::Code;

use crate::harness::*;

/// Customer ids the seed-42, 50% holdout puts `treated` in the treated arm and
/// `control` in the control group (the split is a pure function of seed and id).
fn split_ids(treated: usize, control: usize) -> (Vec<String>, Vec<String>) {
    let (mut t, mut c) = (Vec::new(), Vec::new());
    while t.len() < treated || c.len() < control {
        let id = new_id();
        if in_holdout(42, &id, 0.5) {
            if c.len() < control {
                c.push(id);
            }
        } else if t.len() < treated {
            t.push(id);
        }
    }
    (t, c)
}

/// A campaign launched on `treated` + `control` customers split by [`split_ids`]:
/// (treated ids, control ids, campaign name, launch time).
async fn launch_split(
    app: &mut TestApp,
    treated: usize,
    control: usize,
    strategy: pb::Strategy,
) -> (Vec<String>, Vec<String>, String, DateTime<Utc>) {
    let (t, c) = split_ids(treated, control);
    let all: Vec<String> = t.iter().chain(&c).cloned().collect();
    let (name, launched) = launch_on(app, &all, strategy).await;
    (t, c, name, launched)
}

async fn launch_on(
    app: &mut TestApp,
    ids: &[String],
    strategy: pb::Strategy,
) -> (String, DateTime<Utc>) {
    let segment = new_id();
    app.seg.with(|s| {
        for id in ids {
            s.insights.insert(id.clone(), insight(id, 100_000));
        }
        s.segments.insert(segment.clone(), ids.to_vec());
    });
    let mut spec = TestApp::campaign(&segment);
    spec.holdout_share = 0.5;
    spec.strategy = strategy as i32;
    spec.offer.as_mut().unwrap().cost = money(500);
    let c = app.create(spec).await;
    let launched = app.launch(&c.name).await.unwrap();
    let t = launched.launch_time.unwrap();
    (
        c.name,
        DateTime::from_timestamp(t.seconds, t.nanos as u32).unwrap(),
    )
}

#[tokio::test]
async fn purchases_inside_the_window_win_customers_back_and_outside_do_not() {
    let mut app = TestApp::spawn(Backend::Postgres).await;
    let (treated, control, name, launched) =
        launch_split(&mut app, 4, 1, pb::Strategy::PricePromotion).await;

    let won = app
        .purchase(&treated[0], launched + Duration::days(1), 3_000)
        .await;
    app.purchase(&treated[1], launched + Duration::days(31), 3_000)
        .await;
    app.purchase(&treated[2], launched - Duration::days(1), 3_000)
        .await;
    app.purchase(&control[0], launched + Duration::days(2), 1_000)
        .await;
    // A later purchase of a won-back customer is a repeat, not a second win.
    app.purchase(&treated[0], launched + Duration::days(5), 500)
        .await;
    app.settle().await;
    // The first purchase delivered again changes nothing.
    app.redeliver("retention.profile.events", &won).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    let targets = app.targets(&name).await;
    let won_at = |id: &String| targets[id].won_back_time.map(|t| t.seconds);
    assert_eq!(
        won_at(&treated[0]),
        Some((launched + Duration::days(1)).timestamp())
    );
    assert_eq!(
        targets[&treated[0]]
            .recovered_margin
            .clone()
            .unwrap()
            .minor_units,
        3_000
    );
    assert_eq!(won_at(&treated[1]), None, "a purchase after the window won");
    assert_eq!(won_at(&treated[2]), None, "a purchase before the offer won");
    assert_eq!(won_at(&treated[3]), None);
    assert_eq!(targets[&control[0]].arm, pb::Arm::Control as i32);
    assert_eq!(
        won_at(&control[0]),
        Some((launched + Duration::days(2)).timestamp())
    );

    let events: Vec<pb::CustomerWonBackEvent> = app.outbox().await;
    let mut arms: Vec<(String, i32)> = events
        .iter()
        .map(|e| (e.customer_id.clone(), e.arm))
        .collect();
    arms.sort();
    let mut expected = vec![
        (treated[0].clone(), pb::Arm::Treated as i32),
        (control[0].clone(), pb::Arm::Control as i32),
    ];
    expected.sort();
    assert_eq!(arms, expected);

    let r = app.results(&name).await;
    let t = r.treated.unwrap();
    assert_eq!((t.targets, t.won_back), (4, 1));
    assert_eq!(t.recovered_margin.unwrap().minor_units, 3_000);
    assert!((t.mean_days_to_win_back - 1.0).abs() < 1e-6);
    assert_eq!(t.repeat_rate, 1.0);
    let c = r.control.unwrap();
    assert_eq!((c.targets, c.won_back), (1, 1));
    assert_eq!(c.repeat_rate, 0.0);
    app.stop().await;
}

/// Profile's backfill replays every purchase under a new event id with its
/// purchase id as recorded: one that won a customer back or counted as a repeat
/// must not count again.
#[tokio::test]
async fn a_replayed_purchase_counts_once() {
    let mut app = TestApp::spawn(Backend::Postgres).await;
    let (treated, _) = split_ids(1, 0);
    let (name, launched) = launch_on(&mut app, &treated, pb::Strategy::PricePromotion).await;
    let bought = |days: i64, margin: i64| retention_proto::profile::PurchaseRecordedEvent {
        customer_id: treated[0].clone(),
        purchase_id: new_id(),
        order_id: new_id(),
        occur_time: Some(ts(launched + Duration::days(days))),
        gross_margin: money(margin),
        ..Default::default()
    };
    let (win, repeat) = (bought(1, 3_000), bought(5, 500));
    for p in [&win, &repeat] {
        app.publish("retention.profile.events", p).await;
    }
    app.settle().await;
    let repeats = format!(
        "SELECT COUNT(*) FROM campaign_targets WHERE customer_id = '{}' AND repeat_purchases = 1",
        treated[0]
    );
    assert_eq!(app.count(&repeats).await, 1);
    // The replay: both purchases again, under new event ids.
    for p in [&win, &repeat] {
        app.publish("retention.profile.events", p).await;
    }
    app.settle().await;
    assert_eq!(
        app.count(&repeats).await,
        1,
        "the replayed repeat purchase counted again"
    );
    let targets = app.targets(&name).await;
    assert_eq!(
        targets[&treated[0]].won_back_time.map(|t| t.seconds),
        Some((launched + Duration::days(1)).timestamp())
    );
    let events: Vec<pb::CustomerWonBackEvent> = app.outbox().await;
    assert_eq!(events.len(), 1, "won back once");
    app.stop().await;
}

#[tokio::test]
async fn results_match_a_hand_computed_fixture_and_strategies_compare() {
    let mut app = TestApp::spawn(Backend::Sqlite).await;
    let (treated, control, name, launched) =
        launch_split(&mut app, 4, 4, pb::Strategy::RelationshipInvestment).await;
    // 3 of 4 treated and 1 of 4 controls buy inside the window, 2,000 margin each.
    for id in treated[..3].iter().chain(&control[..1]) {
        app.purchase(id, launched + Duration::days(3), 2_000).await;
    }
    app.settle().await;

    // Contact outcomes: treated targets only.
    let req = app.req(pb::RecordContactOutcomeRequest {
        target: format!("{name}/targets/{}", treated[0]),
        outcome: pb::ContactOutcome::OfferRedeemed as i32,
        ..Default::default()
    });
    let t = app
        .client
        .record_contact_outcome(req)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(t.last_outcome, pb::ContactOutcome::OfferRedeemed as i32);
    let req = app.req(pb::RecordContactOutcomeRequest {
        target: format!("{name}/targets/{}", control[0]),
        outcome: pb::ContactOutcome::Contacted as i32,
        ..Default::default()
    });
    let err = app.client.record_contact_outcome(req).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    // By hand: p_t = 3/4, p_c = 1/4, uplift 0.5;
    // se = sqrt(.75 * .25 / 4 + .25 * .75 / 4) = 0.3061862;
    // 95% CI = 0.5 -/+ 1.959964 * 0.3061862 = [-0.1001140, 1.1001140].
    // Spend 4 x 500 = 2,000; incremental margin 6,000 - 2,000 / 4 * 4 = 4,000;
    // ROI (4,000 - 2,000) / 2,000 = 1.
    let r = app.results(&name).await;
    let (t, c) = (r.treated.unwrap(), r.control.unwrap());
    assert_eq!((t.targets, t.won_back, t.contacted), (4, 3, 1));
    assert_eq!((c.targets, c.won_back, c.contacted), (4, 1, 0));
    assert_eq!((t.win_back_rate, c.win_back_rate), (0.75, 0.25));
    assert!((r.uplift - 0.5).abs() < 1e-9);
    assert!(
        (r.uplift_ci_low - -0.100_114_0).abs() < 1e-6,
        "{}",
        r.uplift_ci_low
    );
    assert!(
        (r.uplift_ci_high - 1.100_114_0).abs() < 1e-6,
        "{}",
        r.uplift_ci_high
    );
    assert_eq!(r.spend.unwrap().minor_units, 2_000);
    assert_eq!(r.incremental_margin.unwrap().minor_units, 4_000);
    assert!((r.roi - 1.0).abs() < 1e-9);
    assert_eq!(r.strategy, pb::Strategy::RelationshipInvestment as i32);
    // Recovered value on the win-back default basis (the value if retained; the
    // stand-in sends only predicted CLVs, 100,000 each, which stand in for it):
    // treated 3 x 100,000, control 1 x 100,000; incremental 300,000 - 100,000.
    assert_eq!(r.value_basis, pb::ValueBasis::IfRetained as i32);
    assert_eq!(t.recovered_value.unwrap().minor_units, 300_000);
    assert_eq!(c.recovered_value.unwrap().minor_units, 100_000);
    assert_eq!(r.incremental_value.unwrap().minor_units, 200_000);

    // A price promotion that won nobody back ranks below it.
    launch_split(&mut app, 2, 2, pb::Strategy::PricePromotion).await;
    let req = app.req(pb::CompareStrategiesRequest::default());
    let rows = app
        .client
        .compare_strategies(req)
        .await
        .unwrap()
        .into_inner()
        .strategies;
    let order: Vec<i32> = rows.iter().map(|s| s.strategy).collect();
    assert_eq!(
        order,
        vec![
            pb::Strategy::RelationshipInvestment as i32,
            pb::Strategy::PricePromotion as i32
        ]
    );
    assert_eq!(rows[0].campaigns, 1);
    assert!((rows[0].uplift - 0.5).abs() < 1e-9);
    assert_eq!(rows[1].treated.clone().unwrap().targets, 2);
    assert_eq!(rows[1].uplift, 0.0);
    // Filtered to retention campaigns, there is nothing to compare.
    let req = app.req(pb::CompareStrategiesRequest {
        kind: pb::CampaignKind::Retention as i32,
        ..Default::default()
    });
    assert!(
        app.client
            .compare_strategies(req)
            .await
            .unwrap()
            .into_inner()
            .strategies
            .is_empty()
    );
    app.stop().await;
}

#[tokio::test]
async fn a_contact_outcome_retried_with_its_request_id_changes_nothing() {
    let mut app = TestApp::spawn(Backend::Sqlite).await;
    let (treated, _, name, _) =
        launch_split(&mut app, 2, 2, pb::Strategy::RelationshipInvestment).await;
    // A call with a request id, then its retry carrying another outcome: the retry
    // answers the target as it is and changes nothing.
    for (outcome, want) in [
        (pb::ContactOutcome::Responded, pb::ContactOutcome::Responded),
        (pb::ContactOutcome::Declined, pb::ContactOutcome::Responded),
    ] {
        let req = app.req(pb::RecordContactOutcomeRequest {
            target: format!("{name}/targets/{}", treated[0]),
            outcome: outcome as i32,
            request_id: "outcome-retry-1".into(),
            ..Default::default()
        });
        let t = app.client.record_contact_outcome(req).await.unwrap();
        assert_eq!(t.into_inner().last_outcome, want as i32);
    }
    let r = app.results(&name).await;
    assert_eq!(r.treated.unwrap().contacted, 1);
    app.stop().await;
}
