//! Campaigns: validation, idempotent creates, etags, scopes, the state machine
//! through the API, launching with exclusions, budget and holdout, triggered
//! enrolment, and launches that fail cleanly when segmentation cannot answer.

use retention_proto::profile as ppb;
use retention_proto::segmentation as spb;
use retention_proto::winback as pb;
use retention_testkit::Backend;
use tonic::Code;

use crate::harness::*;

#[tokio::test]
async fn bad_campaigns_are_refused_with_every_field_named() {
    let mut app = TestApp::spawn(Backend::Sqlite).await;
    let mut c = TestApp::campaign(&new_id());
    c.display_name = " ".into();
    c.kind = 0;
    c.channel = "PIGEON".into();
    c.holdout_share = 0.7;
    c.max_cost_share_of_value = 0.0;
    c.win_window_days = 0;
    c.budget = Some(retention_proto::common::Money {
        currency_code: "USD".into(),
        minor_units: 0,
    });
    c.target_filter = "churn_probability > 0.5".into();
    c.triggered = true;
    c.target_segment = String::new();
    let req = app.req(pb::CreateCampaignRequest {
        campaign: Some(c),
        request_id: "not valid!".into(),
    });
    let err = app.client.create_campaign(req).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let fields = violated_fields(&err);
    for f in [
        "request_id",
        "campaign.display_name",
        "campaign.kind",
        "campaign.channel",
        "campaign.holdout_share",
        "campaign.max_cost_share_of_value",
        "campaign.win_window_days",
        "campaign.budget",
        "campaign.budget.currency_code",
        "campaign.triggered",
    ] {
        assert!(
            fields.contains(&f.to_string()),
            "{f} missing from {fields:?}"
        );
    }
    // Both a segment and a filter: exactly one is allowed.
    let mut both = TestApp::campaign(&new_id());
    both.target_filter = "churn_probability > 0.5".into();
    let req = app.req(pb::CreateCampaignRequest {
        campaign: Some(both),
        request_id: new_id(),
    });
    let err = app.client.create_campaign(req).await.unwrap_err();
    assert_eq!(violated_fields(&err), vec!["campaign.target_segment"]);
    assert_eq!(app.count("SELECT COUNT(*) FROM campaigns").await, 0);
    app.stop().await;
}

#[tokio::test]
async fn creates_are_idempotent_and_etags_guard_changes() {
    let audit = retention_testkit::AuditCapture::install();
    let mut app = TestApp::spawn(Backend::Postgres).await;
    let (segment, _) = app.segment(&[100_000]);
    let request_id = new_id();
    let mut first = None;
    for _ in 0..2 {
        let req = app.req(pb::CreateCampaignRequest {
            campaign: Some(TestApp::campaign(&segment)),
            request_id: request_id.clone(),
        });
        let c = app.client.create_campaign(req).await.unwrap().into_inner();
        assert_eq!(c.state, pb::CampaignState::Draft as i32);
        assert_eq!(first.get_or_insert_with(|| c.clone()).name, c.name);
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM campaigns").await, 1);
    let c = first.unwrap();
    let req = app.req(pb::LaunchCampaignRequest {
        name: c.name.clone(),
        etag: "\"99\"".into(),
    });
    let err = app.client.launch_campaign(req).await.unwrap_err();
    assert_eq!(err.code(), Code::Aborted);
    let req = app.req(pb::LaunchCampaignRequest {
        name: c.name.clone(),
        etag: c.etag.clone(),
    });
    let launched = app.client.launch_campaign(req).await.unwrap().into_inner();
    assert_eq!(launched.state, pb::CampaignState::Running as i32);
    assert_ne!(launched.etag, c.etag);
    let launches: Vec<_> = audit
        .take()
        .into_iter()
        .filter(|r| r["action"] == "campaign.launch")
        .map(|r| (r["who"].clone(), r["resources"].clone()))
        .collect();
    assert_eq!(
        launches,
        vec![("test-user".to_string(), c.name.clone())],
        "the launch that happened is audited, the refused one is not"
    );
    app.stop().await;
}

#[tokio::test]
async fn launching_needs_the_admin_scope_and_reading_needs_read() {
    let mut app = TestApp::spawn(Backend::Sqlite).await;
    let (segment, _) = app.segment(&[100_000]);
    let c = app.create(TestApp::campaign(&segment)).await;
    let req = app.inner.req(
        pb::LaunchCampaignRequest {
            name: c.name.clone(),
            etag: String::new(),
        },
        &["winback.read", "winback.write"],
    );
    let err = app.client.launch_campaign(req).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let req = app.inner.req(
        pb::GetCampaignRequest {
            name: c.name.clone(),
        },
        &["winback.write"],
    );
    assert_eq!(
        app.client.get_campaign(req).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    assert_eq!(
        app.get(&c.name).await.state,
        pb::CampaignState::Draft as i32
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM campaign_targets").await, 0);
    app.stop().await;
}

#[tokio::test]
async fn every_illegal_transition_is_refused_through_the_api() {
    let mut app = TestApp::spawn(Backend::Sqlite).await;
    let (segment, _) = app.segment(&[100_000]);
    let name = app.create(TestApp::campaign(&segment)).await.name;
    type Call = fn(
        &mut TestApp,
        String,
    ) -> futures::future::BoxFuture<'_, Result<pb::Campaign, tonic::Status>>;
    let pause: Call = |a, n| Box::pin(async move { a.pause(&n).await });
    let complete: Call = |a, n| Box::pin(async move { a.complete(&n).await });
    let cancel: Call = |a, n| Box::pin(async move { a.cancel(&n).await });
    let launch: Call = |a, n| Box::pin(async move { a.launch(&n).await });
    let refused = |r: Result<pb::Campaign, tonic::Status>| {
        let e = r.expect_err("an illegal transition was accepted");
        assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    };
    // DRAFT: pause and complete are illegal.
    refused(pause(&mut app, name.clone()).await);
    refused(complete(&mut app, name.clone()).await);
    assert_eq!(app.get(&name).await.state, pb::CampaignState::Draft as i32);
    // RUNNING: launch again is illegal; PAUSED: pause again is illegal.
    launch(&mut app, name.clone()).await.unwrap();
    refused(launch(&mut app, name.clone()).await);
    pause(&mut app, name.clone()).await.unwrap();
    refused(pause(&mut app, name.clone()).await);
    // LaunchCampaign on a paused campaign resumes it.
    assert_eq!(
        launch(&mut app, name.clone()).await.unwrap().state,
        pb::CampaignState::Running as i32
    );
    let done = complete(&mut app, name.clone()).await.unwrap();
    assert_eq!(done.state, pb::CampaignState::Completed as i32);
    assert!(done.end_time.is_some());
    // COMPLETED is final: nothing moves it.
    for call in [pause, complete, cancel, launch] {
        refused(call(&mut app, name.clone()).await);
    }
    // CANCELLED is final too.
    let other = app.create(TestApp::campaign(&segment)).await.name;
    cancel(&mut app, other.clone()).await.unwrap();
    for call in [pause, complete, cancel, launch] {
        refused(call(&mut app, other.clone()).await);
    }
    assert_eq!(
        app.get(&other).await.state,
        pb::CampaignState::Cancelled as i32
    );
    app.stop().await;
}

#[tokio::test]
async fn exclusions_and_the_budget_are_honoured_at_launch() {
    let mut app = TestApp::spawn(Backend::Postgres).await;
    let clvs = [
        500_000, 400_000, 300_000, 4_000, 200_000, 190_000, 180_000, 170_000, 160_000, 150_000,
    ];
    let (segment, ids) = app.segment(&clvs);
    // ids[0] churned maliciously, ids[1] withdrew e-mail consent, ids[2] is in
    // another running campaign, ids[3] is worth too little for a 1,000 offer at 20%.
    let req = app.req(pb::RecordChurnRequest {
        churn_record: Some(pb::ChurnRecord {
            customer: format!("customers/{}", ids[0]),
            churn_type: pb::ChurnType::Malicious as i32,
            reason_codes: vec![pb::ReasonCode::EthicalProblems as i32],
            evidence: "chargeback fraud".into(),
            ..Default::default()
        }),
        request_id: new_id(),
    });
    app.client.record_churn(req).await.unwrap();
    app.publish(
        "retention.profile.events",
        &ppb::ConsentChangedEvent {
            customer_id: ids[1].clone(),
            channel: ppb::ContactChannel::Email as i32,
            status: ppb::ConsentStatus::Withdrawn as i32,
        },
    )
    .await;
    app.settle().await;
    let other_segment = new_id();
    app.seg.with(|s| {
        s.segments
            .insert(other_segment.clone(), vec![ids[2].clone()])
    });
    let other = app.create(TestApp::campaign(&other_segment)).await;
    app.launch(&other.name).await.unwrap();

    let mut spec = TestApp::campaign(&segment);
    spec.budget = money(3_500);
    let c = app.create(spec).await;
    let launched = app.launch(&c.name).await.unwrap();
    assert_eq!(launched.state, pb::CampaignState::Running as i32);

    let targets = app.targets(&c.name).await;
    let mut treated: Vec<&String> = targets.keys().collect();
    treated.sort_by_key(|id| ids.iter().position(|i| i == *id));
    // The budget buys three offers: the three most valuable eligible customers.
    assert_eq!(treated, vec![&ids[4], &ids[5], &ids[6]]);
    assert!(targets.values().all(|t| t.arm == pb::Arm::Treated as i32));
    let excluded = app.exclusions(&c.name).await;
    let reason = |i: usize| excluded.get(&ids[i]).map(String::as_str);
    assert_eq!(reason(0), Some("MALICIOUS_CHURN"));
    assert_eq!(reason(1), Some("OPTED_OUT"));
    assert_eq!(reason(2), Some("IN_LIVE_CAMPAIGN"));
    assert_eq!(reason(3), Some("OVER_VALUE_SHARE"));
    for i in 7..10 {
        assert_eq!(reason(i), Some("OVER_BUDGET"));
    }
    let offers: Vec<pb::OfferDispatchedEvent> = app.outbox().await;
    let mine: Vec<_> = offers
        .iter()
        .filter(|o| c.name.ends_with(&o.campaign_id))
        .collect();
    assert_eq!(mine.len(), 3);
    for o in &mine {
        let sent = o.dispatch_time.unwrap().seconds;
        assert_eq!(o.win_deadline.unwrap().seconds - sent, 30 * 86_400);
        assert_eq!(o.channel, "EMAIL");
    }
    let results = app.results(&c.name).await;
    assert_eq!(results.spend.unwrap().minor_units, 3_000);
    let launches: Vec<pb::CampaignLaunchedEvent> = app.outbox().await;
    let last = launches.last().unwrap();
    assert_eq!((last.treated, last.control), (3, 0));
    // The call to segmentation carried a deadline and a service token.
    let (timeout, auth) = app
        .seg
        .with(|s| (s.last_timeout.clone(), s.last_authorization.clone()));
    assert!(
        timeout.is_some(),
        "no grpc-timeout on the call to segmentation"
    );
    assert!(auth.is_some_and(|a| a.starts_with("Bearer ")));

    // A cool-down: the other campaign contacted ids[2] just now.
    app.complete(&other.name).await.unwrap();
    let mut again = TestApp::campaign(&other_segment);
    again.cool_down_days = 14;
    let again = app.create(again).await;
    app.launch(&again.name).await.unwrap();
    assert!(app.targets(&again.name).await.is_empty());
    assert_eq!(
        app.exclusions(&again.name)
            .await
            .get(&ids[2])
            .map(String::as_str),
        Some("COOL_DOWN")
    );
    app.stop().await;
}

/// DESIGN §8: consent policy per channel, applied when targeting. Under opt-in
/// (the default for e-mail) only a granted consent makes a customer contactable;
/// under opt-out (set here for SMS) everyone but those who withdrew is. Consent
/// for another channel counts for nothing, and only targets get an offer.
#[tokio::test]
async fn consent_is_honoured_at_launch_under_both_policies() {
    let seg = Fake::default();
    let server = TestApp::spawn_segmentation(&seg, None).await;
    let endpoint = server.endpoint();
    let mut app = TestApp::spawn_configured(Backend::Postgres, endpoint, seg, Some(server), |s| {
        s.consent = retention_config::ConsentSettings {
            sms: retention_config::ConsentPolicy::OptOut,
            ..Default::default()
        };
    })
    .await;
    use ppb::ConsentStatus::{Granted, Withdrawn};
    use ppb::ContactChannel::{Email, Sms};
    // E-mail (opt-in): [no record but SMS granted, granted, withdrawn].
    let (email_segment, e) = app.segment(&[100_000, 100_000, 100_000]);
    // SMS (opt-out): [no record but e-mail granted, granted, withdrawn].
    let (sms_segment, m) = app.segment(&[100_000, 100_000, 100_000]);
    for (customer, channel, status) in [
        (&e[0], Sms, Granted),
        (&e[1], Email, Granted),
        (&e[2], Email, Granted),
        (&e[2], Email, Withdrawn),
        (&m[0], Email, Granted),
        (&m[1], Sms, Granted),
        (&m[2], Sms, Withdrawn),
    ] {
        app.consent(customer, channel, status).await;
    }
    app.settle().await;

    let mut launch = async |segment: &str, channel: &str| {
        let mut spec = TestApp::campaign(segment);
        spec.channel = channel.into();
        let c = app.create(spec).await;
        app.launch(&c.name).await.unwrap();
        let mut targets: Vec<String> = app.targets(&c.name).await.into_keys().collect();
        targets.sort();
        let excluded = app.exclusions(&c.name).await;
        (c.name, targets, excluded)
    };
    let sorted = |ids: &[&String]| {
        let mut v: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    };

    let (email, targets, excluded) = launch(&email_segment, "EMAIL").await;
    assert_eq!(targets, sorted(&[&e[1]]), "opt-in: only the granted");
    assert_eq!(excluded.get(&e[0]).map(String::as_str), Some("NO_CONSENT"));
    assert_eq!(excluded.get(&e[2]).map(String::as_str), Some("OPTED_OUT"));

    let (sms, targets, excluded) = launch(&sms_segment, "SMS").await;
    assert_eq!(
        targets,
        sorted(&[&m[0], &m[1]]),
        "opt-out: all but the withdrawn"
    );
    assert_eq!(excluded.len(), 1);
    assert_eq!(excluded.get(&m[2]).map(String::as_str), Some("OPTED_OUT"));

    // Offers go to the delivery system for the contactable targets only.
    let offers: Vec<pb::OfferDispatchedEvent> = app.outbox().await;
    let offered = |campaign: &str| {
        let mut v: Vec<String> = offers
            .iter()
            .filter(|o| campaign.ends_with(&o.campaign_id))
            .map(|o| o.customer_id.clone())
            .collect();
        v.sort();
        v
    };
    assert_eq!(offered(&email), sorted(&[&e[1]]));
    assert_eq!(offered(&sms), sorted(&[&m[0], &m[1]]));
    let launches: Vec<pb::CampaignLaunchedEvent> = app.outbox().await;
    let treated: Vec<i64> = launches.iter().map(|l| l.treated).collect();
    assert_eq!(treated, vec![1, 2]);
    app.stop().await;
}

/// DOMAIN §9: win back the most profitable lost customers. A lapsed high-margin
/// customer has almost no expected value (P(alive) ≈ 0) but a high value if won
/// back; an active small one is worth little either way.
#[tokio::test]
async fn win_back_ranks_and_caps_by_the_value_if_retained() {
    let mut app = TestApp::spawn(Backend::Postgres).await;
    let (lapsed, small, valuable) = (new_id(), new_id(), new_id());
    let segment = new_id();
    app.seg.with(|s| {
        for (id, predicted, retained, p_alive) in [
            (&lapsed, 300, 500_000, 0.0006),
            (&small, 3_000, 3_200, 0.94),
            (&valuable, 100_000, 105_000, 0.95),
        ] {
            let mut i = insight(id, predicted);
            i.retained_clv = money(retained);
            i.p_alive = p_alive;
            s.insights.insert(id.clone(), i);
        }
        s.segments.insert(
            segment.clone(),
            vec![lapsed.clone(), small.clone(), valuable.clone()],
        );
    });
    let complete = |name: &str| pb::CompleteCampaignRequest {
        name: name.into(),
        etag: String::new(),
    };

    // The expected value (chosen explicitly): a 1,000 offer at most 20 % of it
    // needs 5,000, so the lapsed customer is capped with the small one.
    let mut spec = TestApp::campaign(&segment);
    spec.value_basis = pb::ValueBasis::Expected as i32;
    let expected = app.create(spec).await;
    assert_eq!(expected.value_basis, pb::ValueBasis::Expected as i32);
    app.launch(&expected.name).await.unwrap();
    let targets = app.targets(&expected.name).await;
    assert_eq!(targets.keys().collect::<Vec<_>>(), vec![&valuable]);
    let excluded = app.exclusions(&expected.name).await;
    assert_eq!(
        excluded.get(&lapsed).map(String::as_str),
        Some("OVER_VALUE_SHARE")
    );
    assert_eq!(
        excluded.get(&small).map(String::as_str),
        Some("OVER_VALUE_SHARE")
    );
    let req = app.req(complete(&expected.name));
    app.client.complete_campaign(req).await.unwrap();

    // A win-back campaign's default: the value if retained. The lapsed customer
    // is reached (first: budget for one offer), the small active one is still capped.
    let mut spec = TestApp::campaign(&segment);
    spec.budget = money(1_000);
    let winback = app.create(spec).await;
    assert_eq!(winback.value_basis, pb::ValueBasis::IfRetained as i32);
    app.launch(&winback.name).await.unwrap();
    let targets = app.targets(&winback.name).await;
    assert_eq!(targets.keys().collect::<Vec<_>>(), vec![&lapsed]);
    let t = &targets[&lapsed];
    assert_eq!(t.arm, pb::Arm::Treated as i32);
    assert_eq!(t.predicted_clv.as_ref().unwrap().minor_units, 300);
    assert_eq!(t.retained_clv.as_ref().unwrap().minor_units, 500_000);
    let excluded = app.exclusions(&winback.name).await;
    assert_eq!(
        excluded.get(&small).map(String::as_str),
        Some("OVER_VALUE_SHARE")
    );
    assert_eq!(
        excluded.get(&valuable).map(String::as_str),
        Some("OVER_BUDGET")
    );

    // Won back: the results count the value on the campaign's basis.
    let launched = chrono::Utc::now();
    app.purchase(&lapsed, launched + chrono::Duration::days(2), 4_000)
        .await;
    app.settle().await;
    let r = app.results(&winback.name).await;
    assert_eq!(r.value_basis, pb::ValueBasis::IfRetained as i32);
    let treated = r.treated.unwrap();
    assert_eq!(treated.won_back, 1);
    assert_eq!(treated.recovered_margin.unwrap().minor_units, 4_000);
    assert_eq!(treated.recovered_value.unwrap().minor_units, 500_000);
    assert_eq!(
        r.incremental_value.unwrap().minor_units,
        500_000,
        "no control group"
    );

    // Retention (prevention for active customers) keeps the expected value; the
    // basis is a filter field; an unknown basis is refused.
    let mut spec = TestApp::campaign(&segment);
    spec.kind = pb::CampaignKind::Retention as i32;
    let retention = app.create(spec).await;
    assert_eq!(retention.value_basis, pb::ValueBasis::Expected as i32);
    let req = app.req(pb::ListCampaignsRequest {
        filter: "value_basis == \"IF_RETAINED\"".into(),
        ..Default::default()
    });
    let listed = app.client.list_campaigns(req).await.unwrap().into_inner();
    let names: Vec<&str> = listed.campaigns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, vec![winback.name.as_str()]);
    let mut bad = TestApp::campaign(&segment);
    bad.value_basis = 99;
    let req = app.req(pb::CreateCampaignRequest {
        campaign: Some(bad),
        request_id: new_id(),
    });
    let err = app.client.create_campaign(req).await.unwrap_err();
    assert_eq!(violated_fields(&err), vec!["campaign.value_basis"]);
    app.stop().await;
}

#[tokio::test]
async fn the_holdout_split_is_deterministic_and_near_its_share() {
    let mut app = TestApp::spawn(Backend::Sqlite).await;
    let n = 400;
    let (segment, _) = app.segment(&vec![1_000_000; n]);
    let share = 0.3;
    let arms = |t: &std::collections::HashMap<String, pb::CampaignTarget>| {
        let mut v: Vec<(String, i32)> = t.iter().map(|(k, t)| (k.clone(), t.arm)).collect();
        v.sort();
        v
    };
    let mut split = Vec::new();
    for seed in [7, 7, 8] {
        let mut spec = TestApp::campaign(&segment);
        spec.holdout_share = share;
        spec.seed = seed;
        let c = app.create(spec).await;
        app.launch(&c.name).await.unwrap();
        split.push(arms(&app.targets(&c.name).await));
        // Completed, so the next campaign may take the same customers.
        app.complete(&c.name).await.unwrap();
    }
    assert_eq!(split[0].len(), n);
    assert_eq!(split[0], split[1], "same seed, different split");
    assert_ne!(split[0], split[2], "another seed gave the same split");
    let control = split[0]
        .iter()
        .filter(|(_, a)| *a == pb::Arm::Control as i32)
        .count() as f64;
    let sd = (share * (1.0 - share) / n as f64).sqrt();
    let observed = control / n as f64;
    assert!(
        (observed - share).abs() < 4.0 * sd,
        "control share {observed} too far from {share}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_launch_without_segmentation_fails_cleanly_and_leaves_nothing_behind() {
    let mut app = TestApp::spawn(Backend::Postgres).await;
    let (segment, _) = app.segment(&vec![100_000; 1_500]);
    let c = app.create(TestApp::campaign(&segment)).await;

    app.seg.with(|s| s.down = true);
    let started = std::time::Instant::now();
    let err = app.launch(&c.name).await.unwrap_err();
    let down_after = started.elapsed();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(
        err.message().contains("nothing was changed"),
        "{}",
        err.message()
    );
    assert_eq!(
        app.get(&c.name).await.state,
        pb::CampaignState::Draft as i32
    );
    assert_eq!(app.launch_traces().await, (0, 0, 0));

    // Up again, but it fails on the second of two pages: still nothing launched.
    app.seg.with(|s| {
        s.down = false;
        s.pages_served = 0;
        s.fail_page = Some(1);
    });
    let started = std::time::Instant::now();
    let err = app.launch(&c.name).await.unwrap_err();
    let mid_target_after = started.elapsed();
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(
        app.get(&c.name).await.state,
        pb::CampaignState::Draft as i32
    );
    assert_eq!(app.launch_traces().await, (0, 0, 0));
    println!(
        "segmentation down: UNAVAILABLE after {down_after:?}; gone after the first of two \
         pages of 1,500 candidates: UNAVAILABLE after {mid_target_after:?}; \
         targets, exclusions, events left: {:?}",
        app.launch_traces().await
    );

    // A target segmentation does not know, and a filter it refuses.
    let mut unknown = TestApp::campaign(&new_id());
    unknown.display_name = "unknown segment".into();
    let unknown = app.create(unknown).await;
    let err = app.launch(&unknown.name).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let mut bad = TestApp::campaign(&segment);
    bad.target_segment = String::new();
    bad.target_filter = "no_such_field > 1".into();
    let bad = app.create(bad).await;
    let err = app.launch(&bad.name).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&err), vec!["campaign.target_filter"]);
    assert_eq!(app.launch_traces().await, (0, 0, 0));

    // Once segmentation answers, the same draft launches completely.
    app.seg.with(|s| s.fail_page = None);
    app.launch(&c.name).await.unwrap();
    // All 1,500 read: the budget buys 1,000 offers, the rest are over budget.
    let (targets, excluded, _) = app.launch_traces().await;
    assert_eq!((targets, excluded), (1_000, 500));
    app.stop().await;
}

#[tokio::test]
async fn a_segmentation_nobody_serves_gives_unavailable_not_a_hang() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let mut app = TestApp::spawn_with(Backend::Sqlite, closed, Fake::default(), None).await;
    let c = app.create(TestApp::campaign(&new_id())).await;
    let started = std::time::Instant::now();
    let err = app.launch(&c.name).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    println!(
        "segmentation port closed: UNAVAILABLE after {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(
        app.get(&c.name).await.state,
        pb::CampaignState::Draft as i32
    );
    assert_eq!(app.launch_traces().await, (0, 0, 0));
    // Reads that need no peer keep working.
    let req = app.req(pb::ListCampaignsRequest {
        filter: "state == \"DRAFT\"".into(),
        ..Default::default()
    });
    let list = app.client.list_campaigns(req).await.unwrap().into_inner();
    assert_eq!(list.campaigns.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn triggered_campaigns_enrol_customers_entering_their_segment_once() {
    let mut app = TestApp::spawn(Backend::Postgres).await;
    let (segment, ids) = app.segment(&[100_000]);
    // A plain campaign on the same segment takes the first member at its launch.
    let plain = app.create(TestApp::campaign(&segment)).await;
    app.launch(&plain.name).await.unwrap();
    let mut spec = TestApp::campaign(&segment);
    spec.triggered = true;
    let triggered = app.create(spec).await;
    app.launch(&triggered.name).await.unwrap();
    assert!(app.targets(&triggered.name).await.is_empty());

    let newcomer = new_id();
    app.seg.with(|s| {
        s.insights
            .insert(newcomer.clone(), insight(&newcomer, 80_000))
    });
    let env = app
        .publish(
            "retention.segmentation.events",
            &spb::SegmentMembershipChangedEvent {
                segment_id: segment.clone(),
                customer_id: newcomer.clone(),
                entered: true,
                change_time: None,
            },
        )
        .await;
    // In the same read, a customer entering a segment no triggered campaign
    // watches: claimed with the others, enrolled nowhere.
    let bystander = new_id();
    let unwatched = app
        .publish(
            "retention.segmentation.events",
            &spb::SegmentMembershipChangedEvent {
                segment_id: "segments/nobody-watches".into(),
                customer_id: bystander.clone(),
                entered: true,
                change_time: None,
            },
        )
        .await;
    app.settle().await;
    for e in [&env, &unwatched] {
        assert_eq!(
            app.count(&format!(
                "SELECT COUNT(*) FROM processed_events WHERE event_id = '{}'",
                e.event_id
            ))
            .await,
            1,
            "each membership event is claimed once"
        );
    }
    // Redelivered: no second enrolment, no second offer.
    app.redeliver("retention.segmentation.events", &env).await;
    app.settle().await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let targets = app.targets(&triggered.name).await;
    assert_eq!(targets.keys().collect::<Vec<_>>(), vec![&newcomer]);
    let offers: Vec<pb::OfferDispatchedEvent> = app.outbox().await;
    assert_eq!(
        offers.iter().filter(|o| o.customer_id == newcomer).count(),
        1
    );
    assert_eq!(
        app.results(&triggered.name)
            .await
            .spend
            .unwrap()
            .minor_units,
        1_000
    );
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM campaign_targets WHERE customer_id = '{bystander}'"
        ))
        .await,
        0
    );
    // Only triggered campaigns enrol newcomers.
    let plain_targets = app.targets(&plain.name).await;
    assert_eq!(plain_targets.keys().collect::<Vec<_>>(), vec![&ids[0]]);
    app.stop().await;
}

#[tokio::test]
async fn a_scheduled_campaign_launches_itself_when_due() {
    let mut app = TestApp::spawn(Backend::Sqlite).await;
    let (segment, _) = app.segment(&[100_000, 90_000]);
    let mut spec = TestApp::campaign(&segment);
    spec.schedule_time = Some(ts(chrono::Utc::now() + chrono::Duration::seconds(2)));
    let c = app.create(spec).await;
    let scheduled = app.launch(&c.name).await.unwrap();
    assert_eq!(scheduled.state, pb::CampaignState::Scheduled as i32);
    assert!(app.targets(&c.name).await.is_empty());
    let mut state = scheduled.state;
    for _ in 0..100 {
        state = app.get(&c.name).await.state;
        if state == pb::CampaignState::Running as i32 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(state, pb::CampaignState::Running as i32);
    assert_eq!(app.targets(&c.name).await.len(), 2);
    app.stop().await;
}
