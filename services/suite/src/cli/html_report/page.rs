//! The HTML page around the charts: one file with its styles inline and no
//! script to run, so it opens offline in any browser and prints as it shows.
//! Each section embeds the data it charts as a JSON block
//! (`<script type="application/json" id="data-...">`, never executed) and shows
//! the same figures in a table beside the chart.

use super::charts::{self, BLUE, GREEN, ORANGE, RED, Series};
use super::html::{STYLE, data_block, day, inline, missing, reading, table};
use super::results::{campaigns, model, projection};
use super::{Level, Report, ReportError};
use crate::cli::show::pct;

type Result<T> = std::result::Result<T, ReportError>;

fn level_rows(levels: &[Level]) -> Vec<Vec<String>> {
    let total: i64 = levels.iter().map(|l| l.customers).sum();
    levels
        .iter()
        .map(|l| {
            vec![
                l.level.clone(),
                l.customers.to_string(),
                pct(share(l.customers, total)),
                pct(l.margin_share),
            ]
        })
        .collect()
}

fn share(part: i64, total: i64) -> f64 {
    if total > 0 {
        part as f64 / total as f64
    } else {
        0.0
    }
}

/// A level chart (customers and margin share per level) with its table.
fn level_chart(chart: &str, levels: &[Level]) -> Result<String> {
    let total: i64 = levels.iter().map(|l| l.customers).sum();
    let names: Vec<String> = levels.iter().map(|l| l.level.clone()).collect();
    let svg = charts::bars(
        chart,
        &names,
        &[
            Series {
                name: "customers",
                color: BLUE,
                values: levels.iter().map(|l| share(l.customers, total)).collect(),
            },
            Series {
                name: "margin",
                color: ORANGE,
                values: levels.iter().map(|l| l.margin_share).collect(),
            },
        ],
        true,
    )?;
    Ok(format!(
        "<div class=\"pair\">{}{}</div>\n",
        inline(svg),
        table(
            &["level", "customers", "customer share", "margin share"],
            &level_rows(levels)
        )
    ))
}

const NO_CUSTOMERS: &str = "No scored customers yet. Load customers and purchases \
    (<code>retention-cli load synthetic</code> or <code>retention-cli load csv</code>; \
    profile's CreateCustomer and RecordPurchase), then score them \
    (<code>retention-cli score</code>; segmentation's RunScoring).";

fn largest(levels: &[Level]) -> Option<&Level> {
    levels.iter().max_by_key(|l| l.customers)
}

fn header(r: &Report) -> Result<String> {
    let h = &r.header;
    let rows = vec![
        vec!["data read".to_string(), h.read_at.clone()],
        vec![
            "portfolio report time".to_string(),
            h.report_time.clone().unwrap_or_else(|| "-".into()),
        ],
        vec![
            "scoring run".to_string(),
            h.scoring_run
                .clone()
                .unwrap_or_else(|| "none yet (retention-cli score)".into()),
        ],
        vec![
            "model fitted".to_string(),
            h.model_fit_time.clone().unwrap_or_else(|| "-".into()),
        ],
    ];
    let endpoints: Vec<Vec<String>> = h
        .endpoints
        .iter()
        .map(|e| vec![e.service.clone(), e.url.clone(), e.calls.join(", ")])
        .collect();
    Ok(format!(
        "<header><h1>Retention report</h1>\n<div class=\"pair meta\">{}{}</div>\n{}</header>\n",
        table(&[], &rows),
        table(&["service", "endpoint", "calls"], &endpoints),
        data_block("header", h)?
    ))
}

fn pyramid(r: &Report) -> Result<String> {
    let p = &r.pyramid;
    let mut s =
        String::from("<section id=\"pyramid\"><h2>1. Value pyramid and management tiers</h2>\n");
    let total: i64 = p.value_tiers.iter().map(|l| l.customers).sum();
    if total == 0 {
        s.push_str(&missing("pyramid", NO_CUSTOMERS));
    } else {
        if let Some(top) = p.value_tiers.first() {
            s.push_str(&reading(&format!(
                "{} customers ({} of {}) earn {} of the margin.",
                top.level.clone(),
                pct(share(top.customers, total)),
                total,
                pct(top.margin_share)
            )));
        }
        s.push_str("<h3>Value pyramid</h3>\n");
        s.push_str(&level_chart("value pyramid", &p.value_tiers)?);
        s.push_str("<h3>Management tiers</h3>\n");
        if let Some(l) = largest(&p.management_tiers) {
            s.push_str(&reading(&format!(
                "The largest tier is {} ({} of the customers, {} of the margin).",
                l.level.clone(),
                pct(share(l.customers, total)),
                pct(l.margin_share)
            )));
        }
        s.push_str(&level_chart("management tiers", &p.management_tiers)?);
    }
    s.push_str(&data_block("pyramid", p)?);
    s.push_str("</section>\n");
    Ok(s)
}

fn pareto(r: &Report) -> Result<String> {
    let p = &r.pareto;
    let mut s = String::from("<section id=\"pareto\"><h2>2. Pareto curve</h2>\n");
    if p.points.len() < 2 {
        s.push_str(&missing("pareto", NO_CUSTOMERS));
    } else {
        s.push_str(&reading(&format!(
            "The top 20 % of customers earn {} of the positive margin (customers ranked \
             by lifetime margin, most profitable first).",
            pct(p.pareto_share)
        )));
        let points: Vec<(String, f64, f64)> = p
            .points
            .iter()
            .map(|q| (String::new(), q.customer_share, q.margin_share))
            .collect();
        // Every other point (10 % steps) keeps the table short; the data block
        // holds them all.
        let rows: Vec<Vec<String>> = p
            .points
            .iter()
            .skip(1)
            .filter(|q| ((q.customer_share * 100.0).round() as i64) % 10 == 0)
            .map(|q| {
                let top = if (q.customer_share - 0.2).abs() < 1e-9 {
                    "top 20 %".to_string()
                } else {
                    format!("top {}", pct(q.customer_share))
                };
                vec![top, pct(q.margin_share)]
            })
            .collect();
        s.push_str(&format!(
            "<div class=\"pair\">{}{}</div>\n",
            inline(charts::pareto("pareto", &points, p.pareto_share)?),
            table(&["customers", "cumulative margin"], &rows)
        ));
    }
    s.push_str(&data_block("pareto", p)?);
    s.push_str("</section>\n");
    Ok(s)
}

fn lifecycle(r: &Report) -> Result<String> {
    let l = &r.lifecycle;
    let mut s =
        String::from("<section id=\"lifecycle\"><h2>3. Lifecycle stages and churn risk</h2>\n");
    let total: i64 = l.lifecycle_stages.iter().map(|l| l.customers).sum();
    if total == 0 {
        s.push_str(&missing("lifecycle", NO_CUSTOMERS));
    } else {
        if let Some(big) = largest(&l.lifecycle_stages) {
            s.push_str(&reading(&format!(
                "Most customers are in {} ({}, {} of the margin).",
                big.level,
                pct(share(big.customers, total)),
                pct(big.margin_share)
            )));
        }
        s.push_str("<h3>Lifecycle stage</h3>\n");
        s.push_str(&level_chart("lifecycle stages", &l.lifecycle_stages)?);
        let at_risk: f64 = l
            .churn_risks
            .iter()
            .filter(|r| matches!(r.level.as_str(), "HIGH" | "CRITICAL"))
            .map(|r| r.margin_share)
            .sum();
        s.push_str("<h3>Churn risk</h3>\n");
        s.push_str(&reading(&format!(
            "{} of the margin comes from customers at HIGH or CRITICAL churn risk.",
            pct(at_risk)
        )));
        s.push_str(&level_chart("churn risk", &l.churn_risks)?);
    }
    s.push_str(&data_block("lifecycle", l)?);
    s.push_str("</section>\n");
    Ok(s)
}

fn cohorts(r: &Report) -> Result<String> {
    let c = &r.cohorts;
    let mut s = String::from("<section id=\"cohorts\"><h2>4. Cohort retention</h2>\n");
    let sized: Vec<_> = c.cohorts.iter().filter(|c| c.size > 0).collect();
    if sized.is_empty() {
        s.push_str(&missing(
            "cohorts",
            "No first purchases in the report's window (12 periods of 30 days). Record \
             purchases (profile's RecordPurchase; <code>retention-cli load</code>).",
        ));
    } else {
        if let Some(first) = sized.iter().find(|c| !c.retained.is_empty()) {
            s.push_str(&reading(&format!(
                "Of the {} customers who first bought in the period from {}, {} bought again one period later.",
                first.size,
                day(&first.start),
                pct(first.retained[0])
            )));
        }
        let labels: Vec<String> = c.cohorts.iter().map(|c| day(&c.start)).collect();
        let cells: Vec<Option<Vec<f64>>> = c
            .cohorts
            .iter()
            .map(|c| (c.size > 0).then(|| c.retained.clone()))
            .collect();
        let rows: Vec<Vec<String>> = c
            .cohorts
            .iter()
            .map(|c| {
                vec![
                    day(&c.start),
                    c.size.to_string(),
                    c.retained.first().map(|v| pct(*v)).unwrap_or_default(),
                    c.retained.last().map(|v| pct(*v)).unwrap_or_default(),
                ]
            })
            .collect();
        s.push_str(&format!(
            "<div class=\"pair\">{}{}</div>\n",
            inline(charts::heatmap("cohort heatmap", &labels, &cells)?),
            table(&["cohort", "size", "+1", "latest"], &rows)
        ));
    }
    if !c.rates.is_empty() && !sized.is_empty() {
        let last = &c.rates[c.rates.len() - 1];
        s.push_str("<h3>Retention and churn per period</h3>\n");
        s.push_str(&reading(&format!(
            "In the latest period {} of the previous period's customers bought again (churn {}).",
            pct(last.retention_rate),
            pct(last.churn_rate)
        )));
        let labels: Vec<String> = c.rates.iter().map(|r| day(&r.start)).collect();
        let svg = charts::lines(
            "retention rates",
            &labels,
            &[
                Series {
                    name: "retention",
                    color: GREEN,
                    values: c.rates.iter().map(|r| r.retention_rate).collect(),
                },
                Series {
                    name: "churn",
                    color: RED,
                    values: c.rates.iter().map(|r| r.churn_rate).collect(),
                },
            ],
            true,
        )?;
        let rows: Vec<Vec<String>> = c
            .rates
            .iter()
            .map(|r| vec![day(&r.start), pct(r.retention_rate), pct(r.churn_rate)])
            .collect();
        s.push_str(&format!(
            "<div class=\"pair\">{}{}</div>\n",
            inline(svg),
            table(&["period from", "retention", "churn"], &rows)
        ));
    }
    s.push_str(&data_block("cohorts", c)?);
    s.push_str("</section>\n");
    Ok(s)
}

/// The whole page.
pub fn render(r: &Report) -> Result<String> {
    let mut body = header(r)?;
    for section in [
        pyramid, pareto, lifecycle, cohorts, model, projection, campaigns,
    ] {
        body.push_str(&section(r)?);
    }
    Ok(format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Retention report</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\
         <footer><p>Written by <code>retention-cli report --html</code>; amounts in the \
         currency's major units, shares of the whole portfolio.</p></footer>\n</body>\n</html>\n"
    ))
}
