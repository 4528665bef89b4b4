//! The commands behind the CLI, and `demo`: load a synthetic population, score it,
//! segment the customers at risk, run a campaign per strategy with a holdout,
//! simulate who comes back, and show what each strategy achieved — the whole
//! retention loop in under a minute.

use std::time::Duration;

use chrono::Utc;
use retention_domain::sim::Rng;
use retention_proto::profile as ppb;
use retention_proto::segmentation as spb;
use retention_proto::winback as wpb;

use super::client::Clients;
use super::scoring::{backtest, model, print_backtest, score};
use super::show::{money, pct, table};
use super::synth::{Loaded, SynthOptions, cny, load_synthetic, record_purchases, ts};

pub use super::show::Out;

fn enum_name(full: &str) -> String {
    // "VALUE_TIER_PLATINUM" -> "PLATINUM" for the prefixes this CLI prints.
    for prefix in [
        "VALUE_TIER_",
        "MANAGEMENT_TIER_",
        "LIFECYCLE_STAGE_",
        "CHURN_RISK_",
        "STRATEGY_",
        "CAMPAIGN_STATE_",
        "ARM_",
    ] {
        if let Some(rest) = full.strip_prefix(prefix) {
            return rest.to_string();
        }
    }
    full.to_string()
}

/// Every insight matching `filter`, all pages.
pub async fn insights(c: &Clients, filter: &str) -> anyhow::Result<Vec<spb::CustomerInsight>> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let r = c
            .segmentation
            .clone()
            .list_customer_insights(c.req(spb::ListCustomerInsightsRequest {
                page_size: 1000,
                page_token: token,
                filter: filter.into(),
                order_by: "predicted_clv desc".into(),
            }))
            .await?
            .into_inner();
        out.extend(r.insights);
        if r.next_page_token.is_empty() {
            return Ok(out);
        }
        token = r.next_page_token;
    }
}

/// A segment's members, all pages.
pub async fn segment_members(
    c: &Clients,
    segment: &str,
) -> anyhow::Result<Vec<spb::CustomerInsight>> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let r = c
            .segmentation
            .clone()
            .list_segment_members(c.req(spb::ListSegmentMembersRequest {
                segment: segment.into(),
                page_size: 1000,
                page_token: token,
            }))
            .await?
            .into_inner();
        out.extend(r.members);
        if r.next_page_token.is_empty() {
            return Ok(out);
        }
        token = r.next_page_token;
    }
}

pub async fn report(c: &Clients, out: Out<'_>) -> anyhow::Result<spb::PortfolioReport> {
    let r = c
        .segmentation
        .clone()
        .get_portfolio_report(c.req(spb::GetPortfolioReportRequest::default()))
        .await?
        .into_inner();
    let levels = |title: &str, rows: &[spb::LevelShare]| {
        let rows: Vec<Vec<String>> = rows
            .iter()
            .map(|l| {
                vec![
                    enum_name(&l.level),
                    l.customers.to_string(),
                    pct(l.profit_share),
                ]
            })
            .collect();
        format!(
            "{title}\n{}",
            table(&["level", "customers", "margin share"], &rows)
        )
    };
    out(&format!(
        "\nPortfolio\n=========\nTop 20% of customers earn {} of the margin.\n\n{}\n{}\n{}",
        pct(r.pareto_share),
        levels("Value pyramid", &r.value_tiers),
        levels("Lifecycle stage", &r.lifecycle_stages),
        levels("Churn risk", &r.churn_risks),
    ));
    Ok(r)
}

pub fn insight_rows(items: &[spb::CustomerInsight]) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|i| {
            vec![
                i.customer.clone(),
                enum_name(
                    spb::ValueTier::try_from(i.value_tier)
                        .unwrap_or_default()
                        .as_str_name(),
                ),
                enum_name(
                    spb::LifecycleStage::try_from(i.lifecycle_stage)
                        .unwrap_or_default()
                        .as_str_name(),
                ),
                enum_name(
                    spb::ChurnRisk::try_from(i.churn_risk)
                        .unwrap_or_default()
                        .as_str_name(),
                ),
                format!("{:.2}", i.p_alive),
                money(i.predicted_clv.as_ref().map_or(0, |m| m.minor_units)),
                money(i.retained_clv.as_ref().map_or(0, |m| m.minor_units)),
            ]
        })
        .collect();
    table(
        &[
            "customer",
            "value",
            "stage",
            "risk",
            "P(alive)",
            "predicted CLV",
            "CLV if retained",
        ],
        &rows,
    )
}

pub async fn create_segment(c: &Clients, name: &str, filter: &str) -> anyhow::Result<spb::Segment> {
    Ok(c.segmentation
        .clone()
        .create_segment(c.req(spb::CreateSegmentRequest {
            segment: Some(spb::Segment {
                display_name: name.into(),
                filter: filter.into(),
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await?
        .into_inner())
}

/// What a demo or `campaign create` sets up.
#[derive(Debug, Clone)]
pub struct CampaignPlan {
    pub name: String,
    pub segment: String,
    pub strategy: wpb::Strategy,
    pub offer: wpb::OfferKind,
    pub offer_cost: i64,
    pub budget: i64,
    pub holdout_share: f64,
    pub channel: String,
    /// What ranks the customers and caps the offer cost; unspecified: the
    /// campaign kind's default (the expected value for these retention campaigns).
    pub value_basis: wpb::ValueBasis,
}

pub async fn create_campaign(c: &Clients, p: &CampaignPlan) -> anyhow::Result<wpb::Campaign> {
    Ok(c.winback
        .clone()
        .create_campaign(c.req(wpb::CreateCampaignRequest {
            campaign: Some(wpb::Campaign {
                display_name: p.name.clone(),
                kind: wpb::CampaignKind::Retention as i32,
                strategy: p.strategy as i32,
                offer: Some(wpb::Offer {
                    kind: p.offer as i32,
                    description: p.name.clone(),
                    cost: cny(p.offer_cost),
                }),
                channel: p.channel.clone(),
                target_segment: p.segment.clone(),
                budget: cny(p.budget),
                max_cost_share_of_value: 0.5,
                holdout_share: p.holdout_share,
                win_window_days: 30,
                value_basis: p.value_basis as i32,
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await?
        .into_inner())
}

pub async fn launch(c: &Clients, campaign: &str) -> anyhow::Result<wpb::Campaign> {
    Ok(c.winback
        .clone()
        .launch_campaign(c.req(wpb::LaunchCampaignRequest {
            name: campaign.into(),
            etag: String::new(),
        }))
        .await?
        .into_inner())
}

pub async fn targets(c: &Clients, campaign: &str) -> anyhow::Result<Vec<wpb::CampaignTarget>> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let r = c
            .winback
            .clone()
            .list_campaign_targets(c.req(wpb::ListCampaignTargetsRequest {
                campaign: campaign.into(),
                page_size: 1000,
                page_token: token,
            }))
            .await?
            .into_inner();
        out.extend(r.targets);
        if r.next_page_token.is_empty() {
            return Ok(out);
        }
        token = r.next_page_token;
    }
}

pub async fn results(c: &Clients, campaign: &str) -> anyhow::Result<wpb::CampaignResults> {
    Ok(c.winback
        .clone()
        .get_campaign_results(c.req(wpb::GetCampaignResultsRequest {
            name: campaign.into(),
        }))
        .await?
        .into_inner())
}

fn arm_row(label: &str, a: &wpb::ArmResults) -> Vec<String> {
    vec![
        label.into(),
        a.targets.to_string(),
        a.won_back.to_string(),
        pct(a.win_back_rate),
        money(a.recovered_margin.as_ref().map_or(0, |m| m.minor_units)),
        money(a.recovered_value.as_ref().map_or(0, |m| m.minor_units)),
        pct(a.repeat_rate),
    ]
}

pub fn results_table(r: &wpb::CampaignResults) -> String {
    let t = r.treated.clone().unwrap_or_default();
    let ctl = r.control.clone().unwrap_or_default();
    let basis = match wpb::ValueBasis::try_from(r.value_basis) {
        Ok(wpb::ValueBasis::IfRetained) => "CLV if retained",
        _ => "predicted CLV",
    };
    format!(
        "{}uplift {} (95% CI {} to {}), spend {}, incremental margin {}, ROI {}; \
         recovered value on {basis}, incremental {}\n",
        table(
            &[
                "arm",
                "targets",
                "won back",
                "rate",
                "recovered margin",
                "recovered value",
                "bought again"
            ],
            &[arm_row("treated", &t), arm_row("control", &ctl)],
        ),
        pct(r.uplift),
        pct(r.uplift_ci_low),
        pct(r.uplift_ci_high),
        money(r.spend.as_ref().map_or(0, |m| m.minor_units)),
        money(r.incremental_margin.as_ref().map_or(0, |m| m.minor_units)),
        pct(r.roi),
        money(r.incremental_value.as_ref().map_or(0, |m| m.minor_units)),
    )
}

pub async fn compare(c: &Clients, out: Out<'_>) -> anyhow::Result<Vec<wpb::StrategyOutcome>> {
    let rows = c
        .winback
        .clone()
        .compare_strategies(c.req(wpb::CompareStrategiesRequest::default()))
        .await?
        .into_inner()
        .strategies;
    let table_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|s| {
            let t = s.treated.clone().unwrap_or_default();
            let ctl = s.control.clone().unwrap_or_default();
            vec![
                enum_name(
                    wpb::Strategy::try_from(s.strategy)
                        .unwrap_or_default()
                        .as_str_name(),
                ),
                s.campaigns.to_string(),
                pct(t.win_back_rate),
                pct(ctl.win_back_rate),
                pct(s.uplift),
                pct(t.repeat_rate),
                pct(s.roi),
            ]
        })
        .collect();
    out(&format!(
        "\nStrategies compared\n===================\n{}",
        table(
            &[
                "strategy",
                "campaigns",
                "treated",
                "control",
                "uplift",
                "bought again",
                "ROI"
            ],
            &table_rows,
        )
    ));
    Ok(rows)
}

#[derive(Debug, Clone)]
pub struct DemoSummary {
    pub loaded: Loaded,
    pub scored: i64,
    pub campaigns: Vec<wpb::CampaignResults>,
    pub strategies: Vec<wpb::StrategyOutcome>,
    /// Per campaign, in launch order: its segment's members and whom it reached.
    pub reach: Vec<CampaignReach>,
    /// The backtest run ("scoringRuns/{id}") the demo made.
    pub backtest: String,
}

/// A demo campaign's segment and the customers its launch targeted (treated or
/// control); members not targeted were excluded.
#[derive(Debug, Clone)]
pub struct CampaignReach {
    pub segment: String,
    pub campaign: wpb::Campaign,
    pub members: Vec<spb::CustomerInsight>,
    pub targets: Vec<wpb::CampaignTarget>,
}

/// The subscription cohort the demo projects: the "regular" customers of
/// Fader & Hardie (2007), 1,000 acquired and their survivors over seven years.
pub const EXAMPLE_COHORT: [f64; 8] = [1000.0, 631.0, 468.0, 382.0, 326.0, 289.0, 262.0, 241.0];

/// The demo. Customers' responses are simulated: treated customers come back more
/// often than the control group, price promotions faster but relationship
/// investment more lastingly (DOMAIN §9's hotel case), so the comparison shows it.
pub async fn demo(c: &Clients, o: &SynthOptions, out: Out<'_>) -> anyhow::Result<DemoSummary> {
    let started = std::time::Instant::now();
    out(&format!(
        "Loading {} synthetic customers (seed {})...\n",
        o.customers, o.seed
    ));
    let loaded = load_synthetic(c, o).await?;
    out(&format!(
        "{} customers, {} purchases, {} complaints, {} surveys loaded.\n",
        loaded.customers.len(),
        loaded.purchases,
        loaded.complaints,
        loaded.surveys
    ));
    // Segmentation folds the events in as they arrive; a run scores whoever it has,
    // and any event after it rescores its customer. Score once every event is
    // applied (a token without the admin scopes cannot tell: then a pause).
    if !super::backlog::wait_quiet(c, Duration::from_secs(120)).await? {
        tokio::time::sleep(Duration::from_millis(1_500)).await;
    }
    let run = score(c, o.quiet).await?;
    let mut scored = insights(c, "").await?.len();
    for _ in 0..20 {
        if scored >= loaded.customers.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        scored = insights(c, "").await?.len();
    }
    out(&format!(
        "Scoring run {}: {} customers scored.\n",
        run.name, scored
    ));
    model(c, out).await?;
    // Could the models have foreseen the last quarter? A backtest as of 90 days ago.
    let bt = backtest(c, Utc::now() - chrono::Duration::days(90), o.quiet).await?;
    print_backtest(&bt, out);
    // Contract retention, for subscription businesses: an example cohort (the
    // "regular" customers of Fader & Hardie 2007), not the synthetic shop's.
    out("Example: a subscription cohort of 1,000 over seven years\n");
    let cohort = vec![EXAMPLE_COHORT.to_vec()];
    let p = super::retention::project(c, cohort.clone(), 12, 0.10).await?;
    super::retention::print(&p, &cohort, out);
    report(c, out).await?;

    // The valuable are ranked and capped by their value if retained: many of
    // them have lapsed, so P(alive) has taken their expected value to nearly 0,
    // yet they are the most profitable to win back (DOMAIN §9). The others keep
    // the retention campaign's default, the expected value.
    let plans = [
        (
            "Valuable customers at risk",
            "value_tier in [\"PLATINUM\", \"GOLD\"] && churn_risk in [\"MEDIUM\", \"HIGH\", \"CRITICAL\"]",
            wpb::Strategy::RelationshipInvestment,
            wpb::OfferKind::PersonalOutreach,
            "PHONE",
            1_500,
            wpb::ValueBasis::IfRetained,
        ),
        (
            "Other customers at risk",
            "value_tier == \"IRON\" && churn_risk in [\"MEDIUM\", \"HIGH\", \"CRITICAL\"]",
            wpb::Strategy::PricePromotion,
            wpb::OfferKind::Discount,
            "SMS",
            800,
            wpb::ValueBasis::Unspecified,
        ),
    ];
    let mut launched = Vec::new();
    let mut reach = Vec::new();
    for (name, filter, strategy, offer, channel, cost, value_basis) in plans {
        let segment = create_segment(c, name, filter).await?;
        out(&format!(
            "\nSegment \"{name}\": {} members ({filter})\n",
            segment.member_count
        ));
        let members = segment_members(c, &segment.name).await?;
        out(&insight_rows(&members[..members.len().min(5)]));
        let campaign = create_campaign(
            c,
            &CampaignPlan {
                name: format!(
                    "{name}: {}",
                    enum_name(strategy.as_str_name()).to_lowercase()
                ),
                segment: segment.name.clone(),
                strategy,
                offer,
                offer_cost: cost,
                budget: 10_000_000,
                holdout_share: 0.3,
                channel: channel.into(),
                value_basis,
            },
        )
        .await?;
        let campaign = launch(c, &campaign.name).await?;
        let enrolled = targets(c, &campaign.name).await?;
        let treated = enrolled
            .iter()
            .filter(|t| t.arm == wpb::Arm::Treated as i32)
            .count();
        let basis = match wpb::ValueBasis::try_from(campaign.value_basis) {
            Ok(wpb::ValueBasis::IfRetained) => "CLV if retained",
            _ => "predicted CLV",
        };
        out(&format!(
            "Campaign {} launched (ranked and capped by {basis}): {} treated, {} in the control group, {} of the {} members not reached.\n",
            campaign.name,
            treated,
            enrolled.len() - treated,
            members.len().saturating_sub(enrolled.len()),
            members.len()
        ));
        reach.push(CampaignReach {
            segment: name.to_string(),
            campaign: campaign.clone(),
            members,
            targets: enrolled.clone(),
        });
        launched.push((campaign, strategy, enrolled));
    }

    // Responses after the launch: a winning purchase, and for some a second one.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let win_at = Utc::now();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let again_at = Utc::now();
    let mut rng = Rng::new(o.seed ^ 0xB4C);
    let mut orders = Vec::new();
    let mut winners = 0;
    for (_, strategy, enrolled) in &launched {
        let (p_treated, p_repeat) = match strategy {
            wpb::Strategy::PricePromotion => (0.45, 0.2),
            _ => (0.32, 0.65),
        };
        for t in enrolled {
            let p = if t.arm == wpb::Arm::Treated as i32 {
                p_treated
            } else {
                0.12
            };
            if !rng.chance(p) {
                continue;
            }
            winners += 1;
            let amount = 15_000 + rng.below(30_000) as i64;
            let order = |at, tag: &str| ppb::Purchase {
                customer: t.customer.clone(),
                order_id: format!("demo-{tag}-{}", uuid::Uuid::now_v7()),
                occur_time: ts(at),
                amount: cny(amount),
                gross_margin: cny(amount * 3 / 10),
                product_category: "tea".into(),
                channel: "online".into(),
                ..Default::default()
            };
            orders.push(order(win_at, "back"));
            if rng.chance(p_repeat) {
                orders.push(order(again_at, "again"));
            }
        }
    }
    out(&format!(
        "\nSimulating responses: {} customers buy again.\n",
        winners
    ));
    record_purchases(c, orders, o.quiet).await?;
    // Attribution follows profile's events; wait until every win is counted.
    let mut campaigns = Vec::new();
    for _ in 0..100 {
        campaigns.clear();
        for (campaign, _, _) in &launched {
            campaigns.push(results(c, &campaign.name).await?);
        }
        let counted: i64 = campaigns
            .iter()
            .map(|r| {
                r.treated.as_ref().map_or(0, |a| a.won_back)
                    + r.control.as_ref().map_or(0, |a| a.won_back)
            })
            .sum();
        if counted >= winners {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for ((campaign, _, _), r) in launched.iter().zip(&campaigns) {
        out(&format!(
            "\nResults: {}\n{}",
            campaign.display_name,
            results_table(r)
        ));
    }
    let strategies = compare(c, out).await?;
    out(&format!(
        "\nDone in {:.1} s. Explore further with `retention-cli --help`.\n",
        started.elapsed().as_secs_f64()
    ));
    Ok(DemoSummary {
        loaded,
        scored: scored as i64,
        campaigns,
        strategies,
        reach,
        backtest: bt.name,
    })
}
