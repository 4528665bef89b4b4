//! Events -> feature store -> scoring run -> insights, model parameters, listing
//! with filter and order, the cache, and the portfolio report.

use std::collections::HashSet;

use redis::AsyncCommands;
use retention_proto::segmentation as pb;
use retention_testkit::{Backend, on_both_backends};

use crate::harness::*;

on_both_backends!(scoring_run_end_to_end, scoring_run_end_to_end_on);

async fn scoring_run_end_to_end_on(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let ids = app.population(120, 400).await;

    let before = app.insight(&ids[0]).await.unwrap_err();
    assert_eq!(
        before.code(),
        tonic::Code::FailedPrecondition,
        "known but not scored before the first run"
    );
    let unknown = app.insight(&new_id()).await.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    let run = app.run_scoring().await;
    assert_eq!(run.state, pb::ScoringRunState::Succeeded as i32, "{run:?}");
    assert_eq!(run.percent_complete, 100);
    assert_eq!(run.customers_scored, 120);

    let req = app.req(pb::GetModelParametersRequest {});
    let params = app
        .client
        .get_model_parameters(req)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(params.customers, 120, "every customer has a purchase");
    assert_eq!(params.scoring_run, run.name);
    let bg = params.bg_nbd.unwrap();
    for v in [bg.r, bg.alpha, bg.a, bg.b] {
        assert!(v.is_finite() && v > 0.0, "{bg:?}");
    }
    assert!(params.bg_nbd_log_likelihood < 0.0);
    let gg = params.gamma_gamma.unwrap();
    assert!(gg.p > 0.0 && gg.q > 0.0 && gg.gamma > 0.0, "{gg:?}");

    let i = app.insight(&ids[3]).await.unwrap();
    assert_eq!(i.customer, format!("customers/{}", ids[3]));
    assert_eq!(i.scoring_run, run.name);
    assert!((i.p_alive + i.churn_probability - 1.0).abs() < 1e-9);
    assert_ne!(i.value_tier, pb::ValueTier::Unspecified as i32);
    assert_ne!(i.lifecycle_stage, pb::LifecycleStage::Unspecified as i32);
    assert!(i.rfm.as_ref().is_some_and(|r| (1..=5).contains(&r.recency)));
    let explained: HashSet<&str> = i.explanations.iter().map(|e| e.field.as_str()).collect();
    for field in [
        "rfm",
        "value_tier",
        "lifecycle_stage",
        "churn_risk",
        "predicted_clv",
        "retained_clv",
    ] {
        assert!(
            explained.contains(field),
            "{field} explained: {explained:?}"
        );
    }
    let rows = app.count("SELECT COUNT(*) FROM insights").await;
    assert_eq!(rows, 120);

    // Filtered, ordered by predicted CLV, paged: every match once, in order.
    let filter = "churn_probability < 0.5 && purchases >= 2".to_string();
    let expected = app
        .count("SELECT COUNT(*) FROM insights WHERE churn_probability < 0.5 AND purchases >= 2")
        .await;
    assert!(expected > 5, "the fixture has enough matches ({expected})");
    let mut token = String::new();
    let mut seen: Vec<(i64, String)> = Vec::new();
    loop {
        let req = app.req(pb::ListCustomerInsightsRequest {
            page_size: 7,
            page_token: token.clone(),
            filter: filter.clone(),
            order_by: "predicted_clv desc".into(),
        });
        let page = app
            .client
            .list_customer_insights(req)
            .await
            .unwrap()
            .into_inner();
        assert!(page.insights.len() <= 7);
        seen.extend(page.insights.iter().map(|i| {
            (
                i.predicted_clv.as_ref().unwrap().minor_units,
                i.customer.clone(),
            )
        }));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen.len() as i64, expected);
    let distinct: HashSet<&String> = seen.iter().map(|(_, c)| c).collect();
    assert_eq!(distinct.len(), seen.len(), "no customer twice across pages");
    assert!(
        seen.windows(2)
            .all(|w| w[0].0 > w[1].0 || (w[0].0 == w[1].0 && w[0].1 < w[1].1)),
        "predicted CLV descending, ties by id"
    );

    // The value if retained: a stored, filterable and sortable column, never
    // below the P(alive)-weighted value, and far above it for some lapsed ones.
    let below = app
        .count("SELECT COUNT(*) FROM insights WHERE predicted_clv > 0 AND retained_clv < predicted_clv")
        .await;
    assert_eq!(below, 0);
    let req = app.req(pb::ListCustomerInsightsRequest {
        page_size: 200,
        page_token: String::new(),
        filter: "retained_clv > 0 && churn_probability > 0.5".into(),
        order_by: "retained_clv desc".into(),
    });
    let lapsed = app
        .client
        .list_customer_insights(req)
        .await
        .unwrap()
        .into_inner()
        .insights;
    let values: Vec<(i64, i64)> = lapsed
        .iter()
        .map(|i| {
            (
                i.retained_clv.as_ref().unwrap().minor_units,
                i.predicted_clv.as_ref().unwrap().minor_units,
            )
        })
        .collect();
    assert!(!values.is_empty(), "the fixture has customers likely gone");
    assert!(values.windows(2).all(|w| w[0].0 >= w[1].0), "{values:?}");
    assert!(
        values
            .iter()
            .all(|(retained, predicted)| 2 * predicted <= retained + 1),
        "P(alive) < 0.5 at least halves the value: {values:?}"
    );

    // Portfolio report over the scored population.
    let req = app.req(pb::GetPortfolioReportRequest {
        period_days: 30,
        periods: 6,
    });
    let report = app
        .client
        .get_portfolio_report(req)
        .await
        .unwrap()
        .into_inner();
    let total: i64 = report.value_tiers.iter().map(|l| l.customers).sum();
    assert_eq!(total, 120);
    assert_eq!(report.value_tiers.len(), 4, "every pyramid level listed");
    let share: f64 = report.lifecycle_stages.iter().map(|l| l.profit_share).sum();
    assert!((share - 1.0).abs() < 1e-6, "profit shares add up: {share}");
    assert!(report.pareto_share > 0.2 && report.pareto_share <= 1.0);
    assert_eq!(report.pareto_curve.len(), 20);
    assert_eq!(report.pareto_curve[3].customer_share, 0.2);
    assert_eq!(report.pareto_curve[3].profit_share, report.pareto_share);
    assert!(
        report
            .pareto_curve
            .windows(2)
            .all(|w| w[0].profit_share <= w[1].profit_share)
    );
    assert_eq!(report.pareto_curve[19].profit_share, 1.0);
    assert_eq!(report.rates.len(), 6);
    app.stop().await;
}

#[tokio::test]
async fn insights_are_cached_and_invalidated_on_rescoring() {
    let (mut app, ids) = TestApp::scored(Backend::Postgres, 60, 300).await;
    let who = ids[5].clone();
    let first = app.insight(&who).await.unwrap();
    let key = format!("{}:insight:{who}", app.inner.settings.redis.namespace);
    let client = redis::Client::open(app.inner.settings.redis.url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let cached: bool = conn.exists(&key).await.unwrap();
    assert!(cached, "the read filled the Redis cache");

    app.purchase(&who, 299, 9_000, 4_000).await;
    app.settle().await;
    // The entry is dropped right after the rescoring commits, which is after the
    // inbox row `settle` waits for became visible.
    let mut cached = true;
    for _ in 0..100 {
        cached = conn.exists(&key).await.unwrap();
        if !cached {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(!cached, "rescoring invalidated the entry");
    let second = app.insight(&who).await.unwrap();
    assert_ne!(
        first.historical_margin.unwrap().minor_units,
        second.historical_margin.unwrap().minor_units,
        "the new purchase is in the served insight"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_redelivered_event_changes_nothing() {
    let mut app = TestApp::spawn(Backend::Postgres).await;
    let who = new_id();
    let env = envelope(&retention_proto::profile::PurchaseRecordedEvent {
        customer_id: who.clone(),
        purchase_id: new_id(),
        occur_time: Some(ts(epoch())),
        ..Default::default()
    });
    app.publish("retention.profile.events", &env).await;
    app.publish("retention.profile.events", &env).await;
    app.feeder.published -= 1; // one inbox row for two deliveries
    app.settle().await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM purchases WHERE customer_id = '{who}'"
        ))
        .await,
        1
    );
    let data = app
        .count(&format!(
            "SELECT COUNT(*) FROM features WHERE customer_id = '{who}' AND data LIKE '%\"purchases\":1,%'"
        ))
        .await;
    assert_eq!(data, 1, "folded once");
    app.stop().await;
}

/// A run larger than one page is scored in several disjoint pages at once: each
/// customer exactly once, none left out at the page boundaries.
#[tokio::test]
async fn a_run_scores_every_customer_of_many_pages_once() {
    use sea_orm::ConnectionTrait;

    let mut app = TestApp::spawn(Backend::Postgres).await;
    app.population(30, 400).await;
    // 100 copies of each feature row under new ids: 3,030 customers, four pages.
    app.inner
        .database()
        .await
        .unwrap()
        .execute_unprepared(
            "INSERT INTO features (customer_id, data, update_time) \
             SELECT md5(f.customer_id || '-' || g), f.data, f.update_time \
             FROM features f CROSS JOIN generate_series(1, 100) g",
        )
        .await
        .unwrap();
    let run = app.run_scoring().await;
    assert_eq!(run.state, pb::ScoringRunState::Succeeded as i32, "{run:?}");
    assert_eq!(run.customers_scored, 3_030);
    assert_eq!(app.count("SELECT COUNT(*) FROM insights").await, 3_030);
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM insights WHERE scoring_run = '{}'",
            run.name.trim_start_matches("scoringRuns/")
        ))
        .await,
        3_030,
        "every insight comes from this run"
    );
    app.stop().await;
}

/// A customer's feature row, as stored.
async fn feature_row(db: &sea_orm::DatabaseConnection, customer: &str) -> serde_json::Value {
    use sea_orm::{ConnectionTrait, Statement};
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            format!("SELECT data FROM features WHERE customer_id = '{customer}'"),
        ))
        .await
        .unwrap()
        .unwrap();
    let data: String = row.try_get("", "data").unwrap();
    serde_json::from_str(&data).unwrap()
}

on_both_backends!(
    rows_folded_before_occasions_are_rederived_by_the_next_run,
    rows_folded_before_occasions_are_rederived_by_the_next_run_on
);

/// A feature row and purchases as an older version left them (orders counted,
/// no occasions, no margins in the purchases table) are re-derived by the next
/// scoring run: two orders on one day become one occasion.
async fn rows_folded_before_occasions_are_rederived_by_the_next_run_on(backend: Backend) {
    use sea_orm::ConnectionTrait;
    let mut app = TestApp::spawn(backend).await;
    let ids = app.population(30, 300).await;
    let who = ids[0].clone();
    let before = app
        .count(&format!(
            "SELECT COUNT(*) FROM purchases WHERE customer_id = '{who}'"
        ))
        .await;
    app.purchase(&who, 310, 1_000, 400).await;
    app.purchase(&who, 310, 500, 100).await;
    app.settle().await;

    let db = app.inner.database().await.unwrap();
    let mut json = feature_row(&db, &who).await;
    let live_occasions = json["occasions"].as_array().unwrap().len() as i64;
    assert_eq!(
        live_occasions,
        before + 1,
        "the population's purchases are on distinct days; day 310's two orders are one more"
    );
    for key in ["occasions", "first_occasion_margin_minor", "occasion_clock"] {
        json.as_object_mut().unwrap().remove(key);
    }
    let legacy = json.to_string().replace('\'', "''");
    db.execute_unprepared(&format!(
        "UPDATE features SET data = '{legacy}' WHERE customer_id = '{who}'"
    ))
    .await
    .unwrap();
    db.execute_unprepared("UPDATE purchases SET margin_minor = NULL")
        .await
        .unwrap();

    app.run_scoring().await;
    let json = feature_row(&db, &who).await;
    assert_eq!(json["occasion_clock"], "day@UTC");
    assert_eq!(
        json["occasions"].as_array().unwrap().len() as i64,
        live_occasions,
        "re-derived from the purchases table as the live fold had them"
    );
    assert_eq!(
        json["purchases"].as_i64().unwrap(),
        before + 2,
        "orders are still counted as orders"
    );
}

/// Rows of everything a live run writes.
async fn live_rows(app: &TestApp) -> Vec<i64> {
    let mut counts = Vec::new();
    for table in [
        "insights",
        "segment_members",
        "calibrations",
        "outbox_events",
        "features",
    ] {
        counts.push(app.count(&format!("SELECT COUNT(*) FROM {table}")).await);
    }
    counts
}

on_both_backends!(
    a_backtest_changes_nothing_live,
    a_backtest_changes_nothing_live_on
);

/// A backtest reports on its run and leaves the live model alone: insights,
/// segment members, the calibration GetModelParameters returns and the outbox
/// are as they were. An observation end in the future is refused by field.
async fn a_backtest_changes_nothing_live_on(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let ids = app.population(90, 400).await;
    let live_run = app.run_scoring().await;
    let segment = crate::segments::create(&mut app, "purchases >= 2").await;
    app.settle().await;
    let counts = live_rows(&app).await;
    let params = |app: &mut TestApp| {
        let req = app.req(pb::GetModelParametersRequest {});
        let mut client = app.client.clone();
        async move { client.get_model_parameters(req).await.unwrap().into_inner() }
    };
    let before_params = params(&mut app).await;
    let mut before = Vec::new();
    for id in &ids[..10] {
        before.push(app.insight(id).await.unwrap());
    }

    let req = app.req(pb::RunScoringRequest {
        request_id: new_id(),
        observation_end: Some(ts(epoch() + chrono::Duration::days(200))),
    });
    let started = app.client.run_scoring(req).await.unwrap().into_inner();
    let run = app.wait_run(&started.name).await;
    assert_eq!(
        run.state,
        pb::ScoringRunState::Succeeded as i32,
        "{}",
        run.error
    );
    assert_ne!(run.name, live_run.name);
    let report = run.backtest.expect("the report on the run");
    assert!(report.customers > 0 && report.customers <= 90);
    assert!(
        report.actual_repeat_occasions > 0,
        "the population buys after day 200"
    );
    assert!(report.predicted_repeat_occasions > 0.0);
    assert!(!report.cumulative.is_empty());
    assert_eq!(
        report.by_frequency.iter().map(|b| b.customers).sum::<i64>(),
        report.customers
    );
    // And the report is kept: reading the run again returns it.
    let again = app.wait_run(&started.name).await;
    assert_eq!(again.backtest, Some(report));

    assert_eq!(live_rows(&app).await, counts, "no row written live");
    assert_eq!(
        params(&mut app).await,
        before_params,
        "the live calibration"
    );
    for (id, was) in ids[..10].iter().zip(before) {
        assert_eq!(app.insight(id).await.unwrap(), was, "insight of {id}");
    }
    let members = app
        .count(&format!(
            "SELECT COUNT(*) FROM segment_members WHERE segment_id = '{}'",
            segment.name.trim_start_matches("segments/")
        ))
        .await;
    assert!(members > 0, "the segment kept its members");

    let req = app.req(pb::RunScoringRequest {
        request_id: new_id(),
        observation_end: Some(ts(chrono::Utc::now() + chrono::Duration::days(1))),
    });
    let refused = app.client.run_scoring(req).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert_eq!(violated_fields(&refused), vec!["observation_end"]);
}

on_both_backends!(
    a_page_written_in_bulk_keeps_the_rows_and_events,
    a_page_written_in_bulk_keeps_the_rows_and_events_on
);

/// A run's pages are written in bulk (one JSON-array statement per page on
/// PostgreSQL, bound multi-row inserts on SQLite): the rows equal those the
/// bound-values path writes for the same insights, both as inserts and as
/// updates; the stored classes read back for the change events are the
/// insights'; every first insight has its CustomerScored event carrying them;
/// and scoring the unchanged population again writes no change event.
async fn a_page_written_in_bulk_keeps_the_rows_and_events_on(backend: Backend) {
    use retention_segmentation::convert;
    use retention_segmentation::domain::scoring::Insight;
    use retention_segmentation::store::{entities::insight, repo};
    use sea_orm::{ConnectionTrait, EntityTrait, QueryOrder};

    let (mut app, ids) = TestApp::scored(backend, 60, 300).await;
    let db = app.inner.database().await.unwrap();
    let all = async |db: &sea_orm::DatabaseConnection| {
        insight::Entity::find()
            .order_by_asc(insight::Column::CustomerId)
            .all(db)
            .await
            .unwrap()
    };
    let insights: Vec<Insight> = all(&db)
        .await
        .iter()
        .map(|m| serde_json::from_str(&m.data).unwrap())
        .collect();
    assert_eq!(insights.len(), 60);

    // The same insights by both paths: equal rows, value for value.
    db.execute_unprepared("DELETE FROM insights").await.unwrap();
    repo::upsert_insights(&db, &insights).await.unwrap();
    let bulk = all(&db).await;
    assert_eq!(bulk.len(), 60);
    db.execute_unprepared("DELETE FROM insights").await.unwrap();
    repo::upsert_insights_bound(&db, &insights).await.unwrap();
    assert_eq!(all(&db).await, bulk, "inserted by bound values");
    // Updates (ON CONFLICT) of changed rows by both paths: equal too.
    let changed: Vec<Insight> = insights
        .iter()
        .map(|i| {
            let mut i = i.clone();
            i.p_alive /= 3.0;
            i.mean_csat = Some(1.0 / 7.0);
            i.scoring_run = "other-run".into();
            i.explanations.truncate(1);
            i
        })
        .collect();
    repo::upsert_insights(&db, &changed).await.unwrap();
    let bulk_updated = all(&db).await;
    repo::upsert_insights_bound(&db, &insights).await.unwrap();
    assert_eq!(all(&db).await, bulk, "back to the bound rows");
    repo::upsert_insights_bound(&db, &changed).await.unwrap();
    assert_eq!(all(&db).await, bulk_updated, "updated by bound values");
    repo::upsert_insights(&db, &insights).await.unwrap();
    assert_eq!(all(&db).await, bulk, "updated back in bulk");

    // The classes read back for the change events, one query for the page.
    let mut asked = ids.clone();
    asked.push(new_id());
    let classes = repo::classes_of(&db, &asked).await.unwrap();
    assert_eq!(classes.len(), 60, "unknown customers are absent");
    for i in &insights {
        assert_eq!(classes[&i.customer_id], i.classes(), "{}", i.customer_id);
    }

    // Events: one CustomerScored per first insight, with its classes and run.
    let by_id: std::collections::HashMap<&str, &Insight> = insights
        .iter()
        .map(|i| (i.customer_id.as_str(), i))
        .collect();
    let scored = app.outbox::<pb::CustomerScoredEvent>().await;
    assert_eq!(scored.len(), 60);
    for e in &scored {
        let i = by_id[e.customer_id.as_str()];
        let expected = pb::CustomerScoredEvent {
            customer_id: i.customer_id.clone(),
            value_tier: convert::value_tier(i.value_tier).into(),
            management_tier: convert::management_tier(i.management_tier).into(),
            lifecycle_stage: convert::lifecycle(i.lifecycle_stage).into(),
            churn_risk: convert::churn_risk(i.churn_risk).into(),
            scoring_run: i.scoring_run.clone(),
        };
        assert_eq!(e, &expected);
    }
    let risk_moves = app.outbox::<pb::ChurnRiskChangedEvent>().await.len();
    let memberships = app
        .outbox::<pb::SegmentMembershipChangedEvent>()
        .await
        .len();

    // The unchanged population scored again: new rows stamped with the new run,
    // no change event.
    let run = app.run_scoring().await;
    assert_eq!(run.state, pb::ScoringRunState::Succeeded as i32, "{run:?}");
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM insights WHERE scoring_run = '{}'",
            run.name.trim_start_matches("scoringRuns/")
        ))
        .await,
        60
    );
    assert_eq!(app.outbox::<pb::CustomerScoredEvent>().await.len(), 60);
    assert_eq!(
        app.outbox::<pb::ChurnRiskChangedEvent>().await.len(),
        risk_moves
    );
    assert_eq!(
        app.outbox::<pb::SegmentMembershipChangedEvent>()
            .await
            .len(),
        memberships
    );
    app.stop().await;
}
