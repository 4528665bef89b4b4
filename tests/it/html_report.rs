//! `retention-cli report --html`: the page written for a suite with known data
//! charts exactly what the services answer (each section's embedded JSON is
//! compared with the gRPC answers fetched here), loads nothing from elsewhere,
//! and a new deployment or a single customer gives a page that says what is
//! missing and which call fills it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use retention_events::EventBus;
use retention_proto::profile as ppb;
use retention_proto::segmentation as spb;
use retention_proto::winback as wpb;
use retention_suite::cli::Clients;
use retention_suite::cli::html_report::{self, HtmlOptions, Report};
use retention_suite::cli::synth::{SynthOptions, cny, create_customer, record_purchases, ts};
use retention_suite::cli::{backlog, demo, scoring};
use serde_json::Value;

use super::{Mode, clients, four_services};

/// Writes the page to a fresh file and reads it back.
async fn write_page(c: &Clients, o: &HtmlOptions) -> String {
    let dir = std::env::temp_dir().join(format!("retention-html-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("report.html");
    html_report::write(c, o, path.to_str().unwrap())
        .await
        .unwrap();
    let html = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    html
}

/// The JSON block `data-{id}` of the page, parsed.
fn data(html: &str, id: &str) -> Value {
    let open = format!("<script type=\"application/json\" id=\"data-{id}\">");
    let start = html
        .find(&open)
        .unwrap_or_else(|| panic!("no data block {id}"))
        + open.len();
    let end = start + html[start..].find("</script>").unwrap();
    serde_json::from_str(&html[start..end]).unwrap_or_else(|e| panic!("data-{id}: {e}"))
}

/// Every section's data, parsed back into the report's own types.
fn parse(html: &str) -> Report {
    let as_ = |id: &str| data(html, id);
    serde_json::from_value(serde_json::json!({
        "header": as_("header"),
        "pyramid": as_("pyramid"),
        "pareto": as_("pareto"),
        "lifecycle": as_("lifecycle"),
        "cohorts": as_("cohorts"),
        "model": as_("model"),
        "backtest": as_("backtest"),
        "projection": as_("projection"),
        "projection_missing": Value::Null,
        "campaigns": as_("campaigns"),
        "strategies": as_("strategies"),
    }))
    .unwrap()
}

/// Offline and self-contained: no resource is fetched from anywhere (the
/// endpoints in the header are text), no script runs.
fn assert_self_contained(html: &str) {
    assert!(html.len() < 2 * 1024 * 1024, "{} bytes", html.len());
    let lower = html.to_lowercase();
    for needle in [
        "src=", "href=", "<link", "@import", "url(", "<iframe", "<img", "<object",
    ] {
        assert!(!lower.contains(needle), "the page has {needle}");
    }
    let scripts = lower.matches("<script").count();
    let data_blocks = lower.matches("<script type=\"application/json\"").count();
    assert_eq!(scripts, data_blocks, "a script that is not a data block");
    for m in lower.match_indices("http") {
        let around = &lower[m.0.saturating_sub(40)..(m.0 + 40).min(lower.len())];
        assert!(
            around.contains("127.0.0.1") || around.contains("localhost"),
            "a reference off this machine: {around}"
        );
    }
}

fn assert_levels(page: &[html_report::Level], answer: &[spb::LevelShare], html: &str) {
    assert_eq!(page.len(), answer.len());
    for (p, a) in page.iter().zip(answer) {
        assert_eq!(
            (p.level.as_str(), p.customers, p.margin_share),
            (a.level.as_str(), a.customers, a.profit_share)
        );
        // The table beside the chart shows the same figures.
        assert!(
            html.contains(&format!("<td>{}</td><td>{}</td>", a.level, a.customers)),
            "no table row for {}",
            a.level
        );
    }
}

fn instant(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn answer_time(t: &Option<prost_types::Timestamp>) -> DateTime<Utc> {
    let t = t.as_ref().unwrap();
    DateTime::from_timestamp(t.seconds, t.nanos as u32).unwrap()
}

fn assert_arm(page: &html_report::Arm, answer: &Option<wpb::ArmResults>) {
    let a = answer.clone().unwrap_or_default();
    assert_eq!(
        (
            page.targets,
            page.won_back,
            page.win_back_rate,
            page.repeat_rate
        ),
        (a.targets, a.won_back, a.win_back_rate, a.repeat_rate)
    );
    assert_eq!(
        page.recovered_margin,
        a.recovered_margin.map_or(0, |m| m.minor_units)
    );
    // The interval brackets the rate and stays a probability.
    assert!(0.0 <= page.ci_low && page.ci_low <= page.win_back_rate + 1e-12);
    assert!(page.win_back_rate <= page.ci_high + 1e-12 && page.ci_high <= 1.0);
    if a.targets > 0 {
        assert!(page.ci_high > page.ci_low);
    }
}

#[tokio::test]
async fn the_html_report_charts_exactly_what_the_services_answer() {
    let bus = EventBus::in_process_for_suite();
    let [profile, interactions, segmentation, winback] = four_services(&Mode::Embedded(bus)).await;
    let c = clients(&profile, &interactions, &segmentation, &winback).await;
    let summary = demo::demo(
        &c,
        &SynthOptions {
            customers: 300,
            seed: 11,
            quiet: true,
            ..Default::default()
        },
        &mut |_: &str| {},
    )
    .await
    .unwrap();

    let html = write_page(
        &c,
        &HtmlOptions {
            backtest: Some(summary.backtest.clone()),
            survivors: Some(demo::EXAMPLE_COHORT.to_vec()),
            ..Default::default()
        },
    )
    .await;
    let page = parse(&html);
    assert_self_contained(&html);
    assert_eq!(html.matches("<svg").count(), 12, "every chart is drawn");

    let seg = c.segmentation.clone();
    let portfolio = seg
        .clone()
        .get_portfolio_report(c.req(spb::GetPortfolioReportRequest::default()))
        .await
        .unwrap()
        .into_inner();
    // 1-3: the levels.
    assert_levels(&page.pyramid.value_tiers, &portfolio.value_tiers, &html);
    assert_levels(
        &page.pyramid.management_tiers,
        &portfolio.management_tiers,
        &html,
    );
    assert_levels(
        &page.lifecycle.lifecycle_stages,
        &portfolio.lifecycle_stages,
        &html,
    );
    assert_levels(&page.lifecycle.churn_risks, &portfolio.churn_risks, &html);
    assert_eq!(page.pareto.pareto_share, portfolio.pareto_share);
    // The curve is the report's, from the origin, to everyone and all of the
    // positive margin; its 20 % point is the Pareto share.
    let total: i64 = portfolio.value_tiers.iter().map(|l| l.customers).sum();
    assert_eq!(total, 300);
    assert_eq!(portfolio.pareto_curve.len(), 20);
    assert_eq!(page.pareto.points.len(), 21);
    assert_eq!(
        (
            page.pareto.points[0].customer_share,
            page.pareto.points[0].margin_share
        ),
        (0.0, 0.0)
    );
    for (p, q) in page.pareto.points[1..].iter().zip(&portfolio.pareto_curve) {
        assert_eq!(
            (p.customer_share, p.margin_share),
            (q.customer_share, q.profit_share)
        );
    }
    assert_eq!(page.pareto.points[4].margin_share, portfolio.pareto_share);
    let end = page.pareto.points.last().unwrap();
    assert_eq!((end.customer_share, end.margin_share), (1.0, 1.0));
    assert!(html.contains("top 20 %"));

    // 4: cohorts and rates. Each report's periods end when it is asked for, so
    // the starts differ by the seconds between the two calls.
    assert_eq!(page.cohorts.cohorts.len(), portfolio.cohorts.len());
    let read = instant(&page.header.read_at);
    let close = |a: DateTime<Utc>, b: DateTime<Utc>| (a - b).num_seconds().abs() <= 300;
    for (p, a) in page.cohorts.cohorts.iter().zip(&portfolio.cohorts) {
        assert!(close(instant(&p.start), answer_time(&a.cohort_start)));
        assert_eq!((p.size, &p.retained), (a.size, &a.retained));
    }
    assert!(page.cohorts.cohorts.iter().any(|c| c.size > 0));
    assert_eq!(page.cohorts.rates.len(), portfolio.rates.len());
    for (p, a) in page.cohorts.rates.iter().zip(&portfolio.rates) {
        assert!(close(instant(&p.start), answer_time(&a.period_start)));
        assert_eq!(
            (p.churn_rate, p.retention_rate),
            (a.churn_rate, a.retention_rate)
        );
    }

    // 5: the model and the backtest.
    let m = seg
        .clone()
        .get_model_parameters(c.req(spb::GetModelParametersRequest {}))
        .await
        .unwrap()
        .into_inner();
    let model = page
        .model
        .as_ref()
        .expect("a model after the demo's scoring");
    assert_eq!(
        page.header.scoring_run.as_deref(),
        Some(m.scoring_run.as_str())
    );
    assert_eq!(
        (model.scoring_run.as_str(), model.customers),
        (m.scoring_run.as_str(), m.customers)
    );
    let answered: Vec<(String, f64, f64, f64, f64)> = m
        .bg_nbd_estimates
        .iter()
        .chain(&m.gamma_gamma_estimates)
        .map(|e| {
            (
                e.name.clone(),
                e.value,
                e.standard_error,
                e.lower_95,
                e.upper_95,
            )
        })
        .collect();
    let shown: Vec<(String, f64, f64, f64, f64)> = model
        .estimates
        .iter()
        .map(|e| {
            (
                e.name.clone(),
                e.value,
                e.standard_error,
                e.lower_95,
                e.upper_95,
            )
        })
        .collect();
    assert_eq!(shown, answered);
    assert!(!shown.is_empty());
    let run = seg
        .clone()
        .get_scoring_run(c.req(spb::GetScoringRunRequest {
            name: summary.backtest.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    let b = run.backtest.unwrap();
    let shown = page.backtest.as_ref().expect("the demo's backtest");
    assert_eq!(shown.run, summary.backtest);
    assert_eq!(
        (
            shown.customers,
            shown.predicted_repeat_occasions,
            shown.actual_repeat_occasions
        ),
        (
            b.customers,
            b.predicted_repeat_occasions,
            b.actual_repeat_occasions
        )
    );
    let buckets: Vec<(i32, bool, i64, f64, f64)> = b
        .by_frequency
        .iter()
        .map(|f| {
            (
                f.calibration_repeat_occasions,
                f.and_more,
                f.customers,
                f.mean_actual,
                f.mean_predicted,
            )
        })
        .collect();
    let shown_buckets: Vec<(i32, bool, i64, f64, f64)> = shown
        .by_frequency
        .iter()
        .map(|f| {
            (
                f.calibration_repeat_occasions,
                f.and_more,
                f.customers,
                f.mean_actual,
                f.mean_predicted,
            )
        })
        .collect();
    assert_eq!(shown_buckets, buckets);
    assert!(!buckets.is_empty());
    assert_eq!(shown.cumulative.len(), b.cumulative.len());
    for (p, a) in shown.cumulative.iter().zip(&b.cumulative) {
        assert_eq!((p.actual, p.predicted), (a.actual, a.predicted));
        assert_eq!(
            instant(p.end_time.as_deref().unwrap()),
            answer_time(&a.end_time)
        );
    }

    // 6: the projection of the cohort given.
    let projected = seg
        .clone()
        .project_retention(c.req(spb::ProjectRetentionRequest {
            cohorts: vec![spb::CohortSurvivors {
                survivors: demo::EXAMPLE_COHORT.to_vec(),
            }],
            periods: 12,
            discount_rate: 0.10,
        }))
        .await
        .unwrap()
        .into_inner();
    let shown = page.projection.as_ref().expect("a projection");
    assert_eq!(shown.survivors, demo::EXAMPLE_COHORT.to_vec());
    assert_eq!((shown.alpha, shown.beta), (projected.alpha, projected.beta));
    let periods: Vec<(i32, f64, f64)> = projected
        .projection
        .iter()
        .map(|p| (p.period, p.survival, p.retention_rate))
        .collect();
    let shown_periods: Vec<(i32, f64, f64)> = shown
        .periods
        .iter()
        .map(|p| (p.period, p.survival, p.retention_rate))
        .collect();
    assert_eq!(shown_periods, periods);

    // 7: every campaign and the strategy comparison.
    let campaigns = c
        .winback
        .clone()
        .list_campaigns(c.req(wpb::ListCampaignsRequest {
            page_size: 100,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .campaigns;
    assert_eq!(campaigns.len(), 2);
    assert_eq!(page.campaigns.len(), campaigns.len());
    for (p, camp) in page.campaigns.iter().zip(&campaigns) {
        let r = c
            .winback
            .clone()
            .get_campaign_results(c.req(wpb::GetCampaignResultsRequest {
                name: camp.name.clone(),
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (p.name.as_str(), p.display_name.as_str()),
            (camp.name.as_str(), camp.display_name.as_str())
        );
        assert_arm(&p.treated, &r.treated);
        assert_arm(&p.control, &r.control);
        assert_eq!(
            (p.uplift, p.uplift_ci_low, p.uplift_ci_high, p.roi),
            (r.uplift, r.uplift_ci_low, r.uplift_ci_high, r.roi)
        );
        assert_eq!(p.spend, r.spend.map_or(0, |m| m.minor_units));
        assert!(html.contains(&html_report::escape(&camp.display_name)));
    }
    let strategies = c
        .winback
        .clone()
        .compare_strategies(c.req(wpb::CompareStrategiesRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .strategies;
    assert_eq!(page.strategies.len(), 2);
    for (p, a) in page.strategies.iter().zip(&strategies) {
        assert_eq!(p.strategy, html_report::strategy_name(a.strategy));
        assert_eq!(p.campaigns, a.campaigns);
        assert_arm(&p.treated, &a.treated);
        assert_arm(&p.control, &a.control);
        assert_eq!((p.uplift, p.roi), (a.uplift, a.roi));
    }

    // 8: the header.
    assert!(close(read, Utc::now()));
    let urls: Vec<&str> = page
        .header
        .endpoints
        .iter()
        .map(|e| e.url.as_str())
        .collect();
    assert_eq!(urls.len(), 2);
    // A scoring run that is not a backtest is not shown as one.
    let err = html_report::gather(
        &c,
        &HtmlOptions {
            backtest: Some(m.scoring_run.clone()),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, html_report::ReportError::NotABacktest(_)),
        "{err}"
    );
    // Nothing says data is missing on a loaded suite.
    assert!(
        !html.contains("data-missing="),
        "a section reports missing data"
    );
}

/// The sections a page without data explains, with a call or command that
/// fills each.
const EXPLAINED: [(&str, &str); 8] = [
    ("pyramid", "RunScoring"),
    ("pareto", "RunScoring"),
    ("lifecycle", "RunScoring"),
    ("model", "RunScoring"),
    ("backtest", "retention-cli backtest"),
    ("projection", "ProjectRetention"),
    ("campaigns", "CreateCampaign"),
    ("strategies", "CompareStrategies"),
];

fn explanation<'a>(html: &'a str, what: &str) -> Option<&'a str> {
    let open = format!("data-missing=\"{what}\">");
    let start = html.find(&open)? + open.len();
    Some(&html[start..start + html[start..].find("</p>")?])
}

#[tokio::test]
async fn a_new_deployment_gets_a_page_saying_what_is_missing() {
    let bus = EventBus::in_process_for_suite();
    let [profile, interactions, segmentation, winback] = four_services(&Mode::Embedded(bus)).await;
    let c = clients(&profile, &interactions, &segmentation, &winback).await;
    let html = write_page(&c, &HtmlOptions::default()).await;
    assert_self_contained(&html);
    let page = parse(&html);
    assert!(page.model.is_none() && page.backtest.is_none() && page.projection.is_none());
    assert!(page.campaigns.is_empty() && page.strategies.is_empty());
    for (what, call) in EXPLAINED.iter().chain(&[("cohorts", "RecordPurchase")]) {
        let text = explanation(&html, what).unwrap_or_else(|| panic!("{what} not explained"));
        assert!(text.contains(call), "{what}: {text}");
    }
    assert_eq!(html.matches("<svg").count(), 0, "no chart of nothing");
}

#[tokio::test]
async fn a_single_customer_gets_a_page_with_their_purchase() {
    let bus = EventBus::in_process_for_suite();
    let [profile, interactions, segmentation, winback] = four_services(&Mode::Embedded(bus)).await;
    let c = clients(&profile, &interactions, &segmentation, &winback).await;
    let customer = create_customer(&c, "Li Lei").await.unwrap();
    let bought = Utc::now() - chrono::Duration::days(3);
    record_purchases(
        &c,
        vec![ppb::Purchase {
            customer,
            order_id: "o-1".into(),
            occur_time: ts(bought),
            amount: cny(12_000),
            gross_margin: cny(3_000),
            product_category: "tea".into(),
            channel: "online".into(),
            ..Default::default()
        }],
        true,
    )
    .await
    .unwrap();
    // Segmentation learns of the purchase from profile's event.
    let mut page = None;
    for _ in 0..100 {
        backlog::wait_quiet(&c, Duration::from_secs(10))
            .await
            .unwrap();
        let html = write_page(&c, &HtmlOptions::default()).await;
        let parsed = parse(&html);
        if parsed.cohorts.cohorts.iter().any(|c| c.size == 1) {
            page = Some((html, parsed));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (html, parsed) = page.expect("the purchase reached segmentation's cohorts");
    assert_self_contained(&html);
    assert_eq!(
        parsed.cohorts.cohorts.iter().map(|c| c.size).sum::<i64>(),
        1
    );
    // One purchase: a cohort without a later period, no model to fit, no campaign.
    for (what, call) in EXPLAINED {
        let text = explanation(&html, what).unwrap_or_else(|| panic!("{what} not explained"));
        assert!(text.contains(call), "{what}: {text}");
    }
    assert!(explanation(&html, "cohorts").is_none());
    assert!(
        html.matches("<svg").count() >= 2,
        "the cohort heatmap and the rates"
    );

    // A scoring run on one customer with one purchase: today the Gamma-Gamma fit
    // has nobody who repeated and the run fails. Either way the page renders and
    // explains what it lacks.
    let scored = scoring::score(&c, true).await;
    let html = write_page(&c, &HtmlOptions::default()).await;
    assert_self_contained(&html);
    let parsed = parse(&html);
    match scored {
        Err(_) => {
            assert!(parsed.model.is_none());
            assert!(explanation(&html, "model").unwrap().contains("RunScoring"));
        }
        Ok(_) => {
            let customers: i64 = parsed.pyramid.value_tiers.iter().map(|l| l.customers).sum();
            assert_eq!(customers, 1);
            assert!(explanation(&html, "pyramid").is_none());
        }
    }
}
