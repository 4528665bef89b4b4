//! `retention-cli demo` against the four services in embedded mode: a synthetic
//! population is loaded, scored, segmented, targeted by one campaign per strategy,
//! and the simulated responses show up in the results and the comparison.

use retention_events::EventBus;
use retention_proto::segmentation as spb;
use retention_proto::winback as wpb;
use retention_suite::cli::demo;
use retention_suite::cli::synth::SynthOptions;

use super::{Mode, clients, four_services};

#[tokio::test]
async fn the_demo_runs_the_whole_retention_loop() {
    let bus = EventBus::in_process_for_suite();
    let [profile, interactions, segmentation, winback] = four_services(&Mode::Embedded(bus)).await;
    let clients = clients(&profile, &interactions, &segmentation, &winback).await;

    let mut printed = String::new();
    let summary = demo::demo(
        &clients,
        &SynthOptions {
            customers: 400,
            quiet: true,
            ..Default::default()
        },
        &mut |s: &str| printed.push_str(s),
    )
    .await
    .unwrap();

    assert_eq!(summary.loaded.customers.len(), 400);
    assert!(
        summary.loaded.purchases > 400,
        "every customer buys at least once"
    );
    assert!(summary.loaded.complaints > 0 && summary.loaded.surveys > 0);
    assert_eq!(summary.scored, 400);
    assert_eq!(summary.campaigns.len(), 2);
    let arms = |r: &wpb::CampaignResults| {
        (
            r.treated.clone().unwrap_or_default(),
            r.control.clone().unwrap_or_default(),
        )
    };
    let mut won = 0;
    for r in &summary.campaigns {
        let (t, c) = arms(r);
        assert!(t.targets > 0, "{} reached nobody", r.campaign);
        won += t.won_back + c.won_back;
    }
    assert!(won > 0, "no simulated response was attributed");
    let strategies: Vec<i32> = summary.strategies.iter().map(|s| s.strategy).collect();
    assert_eq!(strategies.len(), 2);
    assert!(strategies.contains(&(wpb::Strategy::PricePromotion as i32)));
    assert!(strategies.contains(&(wpb::Strategy::RelationshipInvestment as i32)));
    // The valuable campaign ranks and caps by the value if retained. Its lapsed
    // platinum and gold members (P(alive) < 0.2: their expected value is nearly
    // gone) are reached, though most of the segment would be excluded as
    // OVER_VALUE_SHARE on the expected value.
    let valuable = summary
        .reach
        .iter()
        .find(|r| r.segment == "Valuable customers at risk")
        .unwrap();
    assert_eq!(
        valuable.campaign.value_basis,
        wpb::ValueBasis::IfRetained as i32
    );
    let cost = valuable
        .campaign
        .offer
        .as_ref()
        .unwrap()
        .cost
        .as_ref()
        .unwrap()
        .minor_units as f64;
    let share = valuable.campaign.max_cost_share_of_value;
    let minor =
        |m: &Option<retention_proto::common::Money>| m.as_ref().map_or(0, |m| m.minor_units);
    let capped = |value: i64| cost > share * value.max(0) as f64;
    let members = &valuable.members;
    let reached: std::collections::HashSet<&str> = valuable
        .targets
        .iter()
        .map(|t| t.customer.as_str())
        .collect();
    let on_expected = members
        .iter()
        .filter(|m| capped(minor(&m.predicted_clv)))
        .count();
    let on_retained = members
        .iter()
        .filter(|m| capped(minor(&m.retained_clv)))
        .count();
    let lapsed: Vec<_> = members.iter().filter(|m| m.p_alive < 0.2).collect();
    let lapsed_reached = lapsed
        .iter()
        .filter(|m| reached.contains(m.customer.as_str()))
        .count();
    let numbers = format!(
        "{} members, {} reached; over the value share on the expected value {on_expected}, \
         on the value if retained {on_retained}; {} lapsed, {lapsed_reached} reached",
        members.len(),
        reached.len(),
        lapsed.len()
    );
    assert!(
        2 * on_expected > members.len(),
        "the expected value would exclude most: {numbers}"
    );
    assert!(
        2 * on_retained < members.len(),
        "the value if retained excludes few: {numbers}"
    );
    assert!(2 * reached.len() > members.len(), "{numbers}");
    assert!(
        !lapsed.is_empty() && 2 * lapsed_reached > lapsed.len(),
        "most lapsed valuable members are reached: {numbers}"
    );
    assert!(
        lapsed.iter().any(|m| reached.contains(m.customer.as_str())
            && capped(minor(&m.predicted_clv))
            && matches!(
                spb::ValueTier::try_from(m.value_tier),
                Ok(spb::ValueTier::Platinum | spb::ValueTier::Gold)
            )),
        "a lapsed platinum or gold member the expected value capped is reached: {numbers}"
    );
    assert!(
        printed.contains("ranked and capped by CLV if retained"),
        "{printed}"
    );

    for heading in [
        "Model parameters of scoringRuns/",
        "95 % interval",
        "Backtest scoringRuns/",
        "calibration repeats",
        "cumulative predicted",
        "Contractual retention (shifted-beta-geometric): alpha 0.70",
        "Value pyramid",
        "Segment \"Valuable customers at risk\"",
        "Strategies compared",
    ] {
        assert!(
            printed.contains(heading),
            "{heading} missing from:\n{printed}"
        );
    }

    // CSV files load too: quoted names, and purchases keyed by the file's own ids.
    let dir = std::env::temp_dir().join(format!("retention-cli-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let customers = dir.join("customers.csv");
    let purchases = dir.join("purchases.csv");
    std::fs::write(
        &customers,
        "id,display_name,email,consent
c1,\"Li, Lei\",li@example.com,EMAIL;SMS
c2,Han Meimei,,\n",
    )
    .unwrap();
    std::fs::write(
        &purchases,
        "customer_id,order_id,occur_time,amount,gross_margin,currency,category
\
         c1,o-1,2026-01-05T10:00:00Z,12000,3000,CNY,tea
\
         c1,o-2,2026-03-05T10:00:00Z,8000,2000,CNY,tea
\
         c2,o-3,2026-02-01T09:30:00+08:00,5000,1500,,teaware
",
    )
    .unwrap();
    let loaded = retention_suite::cli::synth::load_csv(
        &clients,
        customers.to_str().unwrap(),
        Some(purchases.to_str().unwrap()),
        true,
    )
    .await
    .unwrap();
    assert_eq!((loaded.customers.len(), loaded.purchases), (2, 3));
    // The consent column is recorded as granted consent per channel.
    let consents = |name: String| {
        let mut pc = clients.profile.clone();
        let req = clients.req(retention_proto::profile::GetCustomerRequest { name });
        async move {
            let mut v: Vec<(i32, i32)> = pc
                .get_customer(req)
                .await
                .unwrap()
                .into_inner()
                .consents
                .iter()
                .map(|c| (c.channel, c.status))
                .collect();
            v.sort();
            v
        }
    };
    let granted = retention_proto::profile::ConsentStatus::Granted as i32;
    assert_eq!(
        consents(loaded.customers[0].clone()).await,
        vec![
            (
                retention_proto::profile::ContactChannel::Email as i32,
                granted
            ),
            (
                retention_proto::profile::ContactChannel::Sms as i32,
                granted
            ),
        ]
    );
    assert!(consents(loaded.customers[1].clone()).await.is_empty());
    let bad = dir.join("bad.csv");
    std::fs::write(
        &bad,
        "customer_id,order_id,occur_time,amount,gross_margin
c9,o,x,1,1
",
    )
    .unwrap();
    let err = retention_suite::cli::synth::load_csv(
        &clients,
        customers.to_str().unwrap(),
        Some(bad.to_str().unwrap()),
        true,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("row 2"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);

    // The backlog once the pipeline is quiet: every service answers, each stream
    // lists its declared groups, and none holds a producer back.
    let mut backlogs = Vec::new();
    for _ in 0..200 {
        backlogs = retention_suite::cli::backlog::backlogs(&clients)
            .await
            .unwrap();
        if backlogs.iter().all(|(_, b)| b.outbox_rows == 0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let groups = |service: &str| -> Vec<String> {
        let (_, b) = backlogs.iter().find(|(s, _)| *s == service).unwrap();
        let mut g: Vec<String> = b.groups.iter().map(|g| g.group.clone()).collect();
        g.sort();
        g
    };
    assert_eq!(
        groups("profile"),
        ["interactions", "segmentation", "winback"]
    );
    assert_eq!(groups("interactions"), ["segmentation", "winback"]);
    assert_eq!(groups("segmentation"), ["interactions", "winback"]);
    assert!(groups("winback").is_empty());
    for (service, b) in &backlogs {
        assert_eq!(b.outbox_rows, 0, "{service}: {b:?}");
        assert!(!b.held_back, "{service}: {b:?}");
        assert!(b.groups.iter().all(|g| g.lag == 0), "{service}: {b:?}");
    }
    let printed = retention_suite::cli::backlog::report(&backlogs);
    assert!(printed.contains("segmentation 0"), "{printed}");

    for s in [profile, interactions, segmentation, winback] {
        s.stop().await.unwrap();
    }
}
