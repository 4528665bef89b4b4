//! The page at the edges of its input: from ten customers to ten million, the
//! longest windows the API gives (60 periods, years of weekly backtest points)
//! and hundreds of campaigns, it stays small and carries its data intact.

use super::*;

fn level(level: &str, customers: i64, margin_share: f64) -> Level {
    Level {
        level: level.into(),
        customers,
        margin_share,
    }
}

/// A Pareto curve as the portfolio report gives it: 20 points, concave.
fn curve() -> Vec<spb::ParetoPoint> {
    (1..=20)
        .map(|k| {
            let x = f64::from(k) / 20.0;
            spb::ParetoPoint {
                customer_share: x,
                profit_share: 1.0 - (1.0 - x).powi(4),
            }
        })
        .collect()
}

fn arm(targets: i64, won_back: i64) -> Arm {
    let (ci_low, ci_high) = wilson(won_back, targets);
    Arm {
        targets,
        won_back,
        win_back_rate: won_back as f64 / targets as f64,
        ci_low,
        ci_high,
        recovered_margin: won_back * 4_500,
        repeat_rate: 0.4,
    }
}

/// A portfolio of `n` customers (a twentieth platinum, as the pyramid ranks
/// them), `periods` cohorts, `weeks` backtest points and `campaigns` campaigns.
fn report(n: i64, periods: usize, weeks: usize, campaigns: usize) -> Report {
    let platinum = (n / 20).max(1);
    let gold = n * 3 / 20;
    let value_tiers = vec![
        level("PLATINUM", platinum, 0.4),
        level("GOLD", gold, 0.35),
        level("IRON", n - platinum - gold, 0.25),
        level("LEAD", 0, 0.0),
    ];
    let day = |i: usize| format!("2020-01-01T00:00:00Z{i}");
    Report {
        header: Header {
            read_at: "2026-12-07T00:00:00Z".into(),
            report_time: Some("2026-12-07T00:00:00Z".into()),
            endpoints: vec![],
            scoring_run: Some("scoringRuns/1".into()),
            model_fit_time: None,
        },
        pareto: Pareto {
            pareto_share: 0.76,
            points: pareto_points(&curve()),
        },
        pyramid: Pyramid {
            management_tiers: value_tiers.clone(),
            value_tiers: value_tiers.clone(),
        },
        lifecycle: Lifecycle {
            lifecycle_stages: value_tiers.clone(),
            churn_risks: value_tiers,
        },
        cohorts: Cohorts {
            cohorts: (0..periods)
                .map(|f| Cohort {
                    start: day(f),
                    size: (n / periods as i64).max(1),
                    retained: (1..periods - f).map(|j| 0.5 / j as f64).collect(),
                })
                .collect(),
            rates: (0..periods)
                .map(|b| Rate {
                    start: day(b),
                    churn_rate: 0.6,
                    retention_rate: 0.4,
                })
                .collect(),
        },
        model: Some(Model {
            scoring_run: "scoringRuns/1".into(),
            customers: n,
            bg_nbd_log_likelihood: -1.0,
            gamma_gamma_log_likelihood: -2.0,
            estimates: vec![Estimate {
                model: "BG/NBD".into(),
                name: "r".into(),
                value: 0.5,
                standard_error: 0.01,
                lower_95: 0.48,
                upper_95: 0.52,
            }],
        }),
        backtest: Some(Backtest {
            run: "scoringRuns/2".into(),
            observation_end: Some("2026-06-01T00:00:00Z".into()),
            holdout_end: Some("2026-12-01T00:00:00Z".into()),
            customers: n,
            predicted_repeat_occasions: n as f64 * 0.9,
            actual_repeat_occasions: n,
            estimates: vec![],
            by_frequency: (0..8)
                .map(|f| Bucket {
                    calibration_repeat_occasions: f,
                    and_more: f == 7,
                    customers: n / 8,
                    mean_actual: f as f64 * 0.2,
                    mean_predicted: f as f64 * 0.21,
                })
                .collect(),
            cumulative: (0..weeks)
                .map(|w| CumulativePoint {
                    end_time: Some(day(w)),
                    actual: (w as i64 * n / 100) as f64,
                    predicted: (w as i64 * n / 99) as f64,
                })
                .collect(),
        }),
        projection: None,
        projection_missing: Some("none".into()),
        campaigns: (0..campaigns)
            .map(|i| CampaignRow {
                name: format!("campaigns/{i}"),
                display_name: format!("Campaign <{i}> & \"friends\""),
                strategy: "PRICE_PROMOTION".into(),
                state: "RUNNING".into(),
                treated: arm((n / 10).max(1), (n / 40).max(1)),
                control: arm((n / 30).max(1), n / 200),
                uplift: 0.2,
                uplift_ci_low: 0.1,
                uplift_ci_high: 0.3,
                spend: 1_000,
                incremental_margin: 3_000,
                roi: 2.0,
            })
            .collect(),
        strategies: vec![],
    }
}

/// The page's data blocks read back into a report.
fn read_back(html: &str) -> Report {
    let block = |id: &str| -> serde_json::Value {
        let open = format!("<script type=\"application/json\" id=\"data-{id}\">");
        let start = html.find(&open).unwrap() + open.len();
        let end = start + html[start..].find("</script>").unwrap();
        serde_json::from_str(&html[start..end]).unwrap()
    };
    serde_json::from_value(serde_json::json!({
        "header": block("header"),
        "pyramid": block("pyramid"),
        "pareto": block("pareto"),
        "lifecycle": block("lifecycle"),
        "cohorts": block("cohorts"),
        "model": block("model"),
        "backtest": block("backtest"),
        "projection": block("projection"),
        "projection_missing": "none",
        "campaigns": block("campaigns"),
        "strategies": block("strategies"),
    }))
    .unwrap()
}

#[test]
fn the_page_stays_small_from_ten_customers_to_ten_million() {
    for n in [10, 10_000, 10_000_000] {
        // The API's longest window (60 periods), ten years of weekly backtest
        // points, and 300 campaigns.
        let r = report(n, 60, 520, 300);
        let html = render(&r).unwrap();
        assert!(html.len() < 2 * 1024 * 1024, "{n}: {} bytes", html.len());
        // Levels, management, Pareto, stages, risk, heatmap, rates, backtest
        // (two), campaigns; no strategies or projection here.
        assert_eq!(html.matches("<svg").count(), 10, "{n}");
        // A display name cannot open an element or end a data block.
        assert!(!html.contains("Campaign <"));
        let mut back = read_back(&html);
        back.projection_missing = r.projection_missing.clone();
        assert_eq!(back, r, "{n}");
    }
}

#[test]
fn the_pareto_curve_starts_at_the_origin_and_keeps_the_reports_points() {
    let points = pareto_points(&curve());
    assert_eq!(points.len(), 21);
    assert_eq!(
        (points[0].customer_share, points[0].margin_share),
        (0.0, 0.0)
    );
    for (p, q) in points[1..].iter().zip(curve()) {
        assert_eq!(
            (p.customer_share, p.margin_share),
            (q.customer_share, q.profit_share)
        );
    }
    assert_eq!(
        pareto_points(&[]).len(),
        1,
        "only the origin without customers"
    );
}

#[test]
fn wilson_intervals_bracket_the_rate_within_zero_and_one() {
    assert_eq!(wilson(0, 0), (0.0, 0.0));
    let (lo, hi) = wilson(0, 10);
    assert!(lo == 0.0 && hi > 0.2 && hi < 0.35, "{lo} {hi}");
    let (lo, hi) = wilson(10, 10);
    assert!(hi == 1.0 && lo > 0.65, "{lo} {hi}");
    // 50 of 100: about 0.404 to 0.596.
    let (lo, hi) = wilson(50, 100);
    assert!(
        (lo - 0.4038).abs() < 1e-3 && (hi - 0.5962).abs() < 1e-3,
        "{lo} {hi}"
    );
}

#[test]
fn survivors_of_a_cohort_only_fall() {
    let cohorts = vec![
        Cohort {
            start: "2026-01-01T00:00:00Z".into(),
            size: 0,
            retained: vec![0.0, 0.0, 0.0],
        },
        Cohort {
            start: "2026-02-01T00:00:00Z".into(),
            size: 100,
            retained: vec![0.4, 0.5, 0.3],
        },
    ];
    let (source, survivors) = cohort_survivors(&cohorts).unwrap();
    assert_eq!(survivors, vec![100.0, 40.0, 40.0, 30.0]);
    assert!(source.contains("2026-02-01"), "{source}");
    assert!(cohort_survivors(&cohorts[..1]).is_none());
}
