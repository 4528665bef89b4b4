//! The page's sections on what the models and the campaigns say: the fitted
//! parameters and the backtest, the retention projection, every campaign and
//! the strategy comparison.

use super::charts::{self, BLUE, Intervals, ORANGE, Series};
use super::html::{data_block, day, escape, inline, missing, reading, table};
use super::{Arm, Report, ReportError};
use crate::cli::show::{money, pct};

type Result<T> = std::result::Result<T, ReportError>;

fn estimate_table(rows: &[super::Estimate]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|e| {
            vec![
                e.model.clone(),
                e.name.clone(),
                format!("{:.4}", e.value),
                format!("{:.4}", e.standard_error),
                format!("{:.4} .. {:.4}", e.lower_95, e.upper_95),
            ]
        })
        .collect();
    table(
        &["model", "parameter", "value", "std. error", "95 % interval"],
        &rows,
    )
}

pub fn model(r: &Report) -> Result<String> {
    let mut s = String::from("<section id=\"model\"><h2>5. The model</h2>\n");
    match &r.model {
        None => s.push_str(&missing(
            "model",
            "No model fitted yet. Run a scoring run (<code>retention-cli score</code>; \
             segmentation's RunScoring), then GetModelParameters answers.",
        )),
        Some(m) => {
            s.push_str(&reading(&format!(
                "BG/NBD and Gamma-Gamma fitted on {} customers by {} (log-likelihood {:.2} and {:.2}).",
                m.customers, m.scoring_run, m.bg_nbd_log_likelihood, m.gamma_gamma_log_likelihood
            )));
            if m.estimates.is_empty() {
                s.push_str(&missing(
                    "estimates",
                    "No standard errors: the fit's log-likelihood is not curved at its optimum.",
                ));
            } else {
                s.push_str(&estimate_table(&m.estimates));
            }
        }
    }
    s.push_str(&data_block("model", &r.model)?);
    s.push_str("<h3>Backtest</h3>\n");
    match &r.backtest {
        None => s.push_str(&missing(
            "backtest",
            "No backtest yet. Run one (<code>retention-cli backtest --observation-end \
             YYYY-MM-DD</code>; segmentation's RunScoring with observation_end) and name it \
             with <code>retention-cli report --html FILE --backtest scoringRuns/ID</code>.",
        )),
        Some(b) => {
            let off = if b.actual_repeat_occasions > 0 {
                (b.predicted_repeat_occasions / b.actual_repeat_occasions as f64 - 1.0) * 100.0
            } else {
                0.0
            };
            s.push_str(&reading(&format!(
                "Fitted up to {}, the models predicted {:.1} repeat purchase occasions until {} \
                 against {} actual ({off:+.1} %), {} customers.",
                day(b.observation_end.as_deref().unwrap_or("-")),
                b.predicted_repeat_occasions,
                day(b.holdout_end.as_deref().unwrap_or("-")),
                b.actual_repeat_occasions,
                b.customers
            )));
            let labels: Vec<String> = b
                .by_frequency
                .iter()
                .map(|f| {
                    format!(
                        "{}{}",
                        f.calibration_repeat_occasions,
                        if f.and_more { "+" } else { "" }
                    )
                })
                .collect();
            let svg = charts::bars(
                "backtest by frequency",
                &labels,
                &[
                    Series {
                        name: "actual",
                        color: BLUE,
                        values: b.by_frequency.iter().map(|f| f.mean_actual).collect(),
                    },
                    Series {
                        name: "predicted",
                        color: ORANGE,
                        values: b.by_frequency.iter().map(|f| f.mean_predicted).collect(),
                    },
                ],
                false,
            )?;
            let rows: Vec<Vec<String>> = b
                .by_frequency
                .iter()
                .zip(&labels)
                .map(|(f, l)| {
                    vec![
                        l.clone(),
                        f.customers.to_string(),
                        format!("{:.3}", f.mean_actual),
                        format!("{:.3}", f.mean_predicted),
                    ]
                })
                .collect();
            s.push_str("<p>Mean holdout repeat occasions per customer, by repeat occasions in the calibration period:</p>");
            s.push_str(&format!(
                "<div class=\"pair\">{}{}</div>\n",
                inline(svg),
                table(
                    &[
                        "calibration repeats",
                        "customers",
                        "mean actual",
                        "mean predicted"
                    ],
                    &rows
                )
            ));
            let weeks: Vec<String> = b
                .cumulative
                .iter()
                .map(|p| day(p.end_time.as_deref().unwrap_or("")))
                .collect();
            let svg = charts::lines(
                "backtest cumulative",
                &weeks,
                &[
                    Series {
                        name: "actual",
                        color: BLUE,
                        values: b.cumulative.iter().map(|p| p.actual).collect(),
                    },
                    Series {
                        name: "predicted",
                        color: ORANGE,
                        values: b.cumulative.iter().map(|p| p.predicted).collect(),
                    },
                ],
                false,
            )?;
            // Every fourth week in the table: the chart has them all, the JSON too.
            let n = b.cumulative.len();
            let rows: Vec<Vec<String>> = b
                .cumulative
                .iter()
                .zip(&weeks)
                .enumerate()
                .filter(|(i, _)| i % 4 == 3 || i + 1 == n)
                .map(|(_, (p, w))| {
                    vec![
                        w.clone(),
                        format!("{:.0}", p.actual),
                        format!("{:.1}", p.predicted),
                    ]
                })
                .collect();
            s.push_str("<p>Cumulative repeat purchase occasions, week by week:</p>");
            s.push_str(&format!(
                "<div class=\"pair\">{}{}</div>\n",
                inline(svg),
                table(&["before", "actual", "predicted"], &rows)
            ));
            s.push_str("<p>The parameters fitted on the calibration period:</p>");
            s.push_str(&estimate_table(&b.estimates));
        }
    }
    s.push_str(&data_block("backtest", &r.backtest)?);
    s.push_str("</section>\n");
    Ok(s)
}

pub fn projection(r: &Report) -> Result<String> {
    let mut s = String::from(
        "<section id=\"projection\"><h2>6. Retention projection (shifted-beta-geometric)</h2>\n",
    );
    match &r.projection {
        None => s.push_str(&missing(
            "projection",
            &escape(
                r.projection_missing
                    .as_deref()
                    .unwrap_or("no cohort to project"),
            ),
        )),
        Some(p) => {
            let last = p.periods.last();
            s.push_str(&reading(&format!(
                "Projected from {}: {} of the cohort still customers after {} periods \
                 (alpha {:.3}, beta {:.3}).",
                p.source,
                pct(last.map_or(0.0, |l| l.survival)),
                last.map_or(0, |l| l.period),
                p.alpha,
                p.beta
            )));
            let size = p.survivors.first().copied().unwrap_or(0.0);
            let projected: Vec<(f64, f64)> = [(0.0, 1.0)]
                .into_iter()
                .chain(p.periods.iter().map(|q| (q.period as f64, q.survival)))
                .collect();
            let observed: Vec<(f64, f64)> = p
                .survivors
                .iter()
                .enumerate()
                .filter(|_| size > 0.0)
                .map(|(i, v)| (i as f64, v / size))
                .collect();
            let rows: Vec<Vec<String>> = p
                .periods
                .iter()
                .map(|q| {
                    vec![
                        q.period.to_string(),
                        pct(q.survival),
                        pct(q.retention_rate),
                        format!("{:.2}", q.discounted_expected_residual_lifetime),
                        observed
                            .get(q.period as usize)
                            .map(|o| pct(o.1))
                            .unwrap_or_default(),
                    ]
                })
                .collect();
            s.push_str(&format!(
                "<div class=\"pair\">{}{}</div>\n",
                inline(charts::projection("projection", &projected, &observed)?),
                table(
                    &["period", "survival", "retention rate", "DERL", "observed"],
                    &rows
                )
            ));
        }
    }
    s.push_str(&data_block("projection", &r.projection)?);
    s.push_str("</section>\n");
    Ok(s)
}

fn arm_interval(a: &Arm) -> (f64, f64, f64) {
    (a.ci_low, a.win_back_rate, a.ci_high)
}

fn short(name: &str) -> String {
    let mut s: String = name.chars().take(28).collect();
    if name.chars().count() > 28 {
        s.push('…');
    }
    s
}

/// At most this many campaigns in the chart (the table lists every one):
/// beyond it the error bars would touch.
const CHARTED_CAMPAIGNS: usize = 12;

pub fn campaigns(r: &Report) -> Result<String> {
    let mut s = String::from("<section id=\"campaigns\"><h2>7. Campaigns</h2>\n");
    if r.campaigns.is_empty() {
        s.push_str(&missing(
            "campaigns",
            "No campaigns yet. Create and launch one (<code>retention-cli campaign create</code> \
             and <code>retention-cli campaign launch</code>; winback's CreateCampaign and \
             LaunchCampaign); results come as targets buy again.",
        ));
    } else {
        if let Some(best) = r
            .campaigns
            .iter()
            .max_by(|a, b| a.uplift.total_cmp(&b.uplift))
        {
            s.push_str(&reading(&format!(
                "{} campaign(s); the largest uplift is {}'s: {} over its control group \
                 (95 % interval {} to {}), ROI {}.",
                r.campaigns.len(),
                best.display_name,
                pct(best.uplift),
                pct(best.uplift_ci_low),
                pct(best.uplift_ci_high),
                pct(best.roi)
            )));
        }
        let charted = &r.campaigns[r.campaigns.len().saturating_sub(CHARTED_CAMPAIGNS)..];
        if charted.len() < r.campaigns.len() {
            s.push_str(&format!(
                "<p>The chart shows the last {CHARTED_CAMPAIGNS} campaigns; the table all {}.</p>",
                r.campaigns.len()
            ));
        }
        let names: Vec<String> = charted.iter().map(|c| short(&c.display_name)).collect();
        let svg = charts::intervals(
            "campaigns",
            &names,
            &[
                Intervals {
                    name: "treated",
                    color: BLUE,
                    values: charted.iter().map(|c| arm_interval(&c.treated)).collect(),
                },
                Intervals {
                    name: "control",
                    color: GREY_ARM,
                    values: charted.iter().map(|c| arm_interval(&c.control)).collect(),
                },
            ],
        )?;
        let rows: Vec<Vec<String>> = r
            .campaigns
            .iter()
            .map(|c| {
                vec![
                    c.display_name.clone(),
                    c.strategy.clone(),
                    c.state.clone(),
                    format!(
                        "{}/{} ({})",
                        c.treated.won_back,
                        c.treated.targets,
                        pct(c.treated.win_back_rate)
                    ),
                    format!(
                        "{}/{} ({})",
                        c.control.won_back,
                        c.control.targets,
                        pct(c.control.win_back_rate)
                    ),
                    format!(
                        "{} ({} .. {})",
                        pct(c.uplift),
                        pct(c.uplift_ci_low),
                        pct(c.uplift_ci_high)
                    ),
                    money(c.treated.recovered_margin),
                    money(c.spend),
                    pct(c.roi),
                ]
            })
            .collect();
        s.push_str(&inline(svg));
        s.push_str(&table(
            &[
                "campaign",
                "strategy",
                "state",
                "treated won",
                "control won",
                "uplift (95 %)",
                "recovered margin",
                "spend",
                "ROI",
            ],
            &rows,
        ));
    }
    s.push_str(&data_block("campaigns", &r.campaigns)?);
    s.push_str("<h3>Strategies compared</h3>\n");
    if r.strategies.is_empty() {
        s.push_str(&missing(
            "strategies",
            "No launched campaign to compare strategies with (winback's CompareStrategies \
             pools launched campaigns by strategy).",
        ));
    } else {
        let text: Vec<String> = r
            .strategies
            .iter()
            .map(|x| {
                format!(
                    "{} wins back {} against {} untreated (ROI {})",
                    x.strategy,
                    pct(x.treated.win_back_rate),
                    pct(x.control.win_back_rate),
                    pct(x.roi)
                )
            })
            .collect();
        s.push_str(&reading(&format!("{}.", text.join("; "))));
        let names: Vec<String> = r.strategies.iter().map(|x| x.strategy.clone()).collect();
        let svg = charts::intervals(
            "strategies",
            &names,
            &[
                Intervals {
                    name: "treated",
                    color: BLUE,
                    values: r
                        .strategies
                        .iter()
                        .map(|x| arm_interval(&x.treated))
                        .collect(),
                },
                Intervals {
                    name: "control",
                    color: GREY_ARM,
                    values: r
                        .strategies
                        .iter()
                        .map(|x| arm_interval(&x.control))
                        .collect(),
                },
            ],
        )?;
        let rows: Vec<Vec<String>> = r
            .strategies
            .iter()
            .map(|x| {
                vec![
                    x.strategy.clone(),
                    x.campaigns.to_string(),
                    pct(x.treated.win_back_rate),
                    pct(x.control.win_back_rate),
                    format!(
                        "{} ({} .. {})",
                        pct(x.uplift),
                        pct(x.uplift_ci_low),
                        pct(x.uplift_ci_high)
                    ),
                    pct(x.treated.repeat_rate),
                    money(x.treated.recovered_margin),
                    money(x.spend),
                    pct(x.roi),
                ]
            })
            .collect();
        s.push_str(&format!(
            "<div class=\"pair\">{}{}</div>\n",
            inline(svg),
            table(
                &[
                    "strategy",
                    "campaigns",
                    "treated",
                    "control",
                    "uplift (95 %)",
                    "bought again",
                    "recovered margin",
                    "spend",
                    "ROI"
                ],
                &rows
            )
        ));
    }
    s.push_str(&data_block("strategies", &r.strategies)?);
    s.push_str("</section>\n");
    Ok(s)
}

const GREY_ARM: plotters::style::RGBColor = plotters::style::RGBColor(120, 120, 120);
