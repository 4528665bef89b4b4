//! `retention-cli`: load data, score, inspect customers and segments, run campaigns
//! and read their results, against a running suite (`make run` by default).

use clap::{Args, Parser, Subcommand};
use retention_proto::segmentation as spb;
use retention_suite::cli::Clients;
use retention_suite::cli::audit::{self, AuditQuery, Audited};
use retention_suite::cli::backfill::{self, BackfillPlan, Owner};
use retention_suite::cli::client::Endpoints;
use retention_suite::cli::dead_letters::{self, Consumer};
use retention_suite::cli::demo::{self, CampaignPlan};
use retention_suite::cli::html_report::{self, HtmlOptions};
use retention_suite::cli::show::table;
use retention_suite::cli::synth::{self, SynthOptions};
use retention_suite::cli::{backlog, retention, scoring, sla};

#[derive(Parser)]
#[command(
    name = "retention-cli",
    version,
    about = "Try and operate the retention suite"
)]
struct Cli {
    #[command(flatten)]
    conn: Conn,
    /// No progress bars.
    #[arg(long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Conn {
    #[arg(
        long,
        env = "RETENTION_PROFILE_URL",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    profile: String,
    #[arg(
        long,
        env = "RETENTION_INTERACTIONS_URL",
        default_value = "http://127.0.0.1:50052",
        global = true
    )]
    interactions: String,
    #[arg(
        long,
        env = "RETENTION_SEGMENTATION_URL",
        default_value = "http://127.0.0.1:50053",
        global = true
    )]
    segmentation: String,
    #[arg(
        long,
        env = "RETENTION_WINBACK_URL",
        default_value = "http://127.0.0.1:50054",
        global = true
    )]
    winback: String,
    /// A bearer token; without one, a token is minted with the signing secret.
    #[arg(long, env = "TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// The suite's JWT secret (the development secret of `make run` by default).
    #[arg(long, env = "RETENTION_AUTH__JWT_SECRET", default_value = retention_config::DEV_JWT_SECRET, global = true, hide_env_values = true, hide_default_value = true)]
    jwt_secret: String,
    #[arg(
        long,
        env = "RETENTION_AUTH__ISSUER",
        default_value = "retention-suite",
        global = true
    )]
    issuer: String,
    #[arg(
        long,
        env = "RETENTION_AUTH__AUDIENCE",
        default_value = "retention-suite",
        global = true
    )]
    audience: String,
}

#[derive(Subcommand)]
enum Command {
    /// Load synthetic data, score, segment, run a campaign per strategy and compare.
    Demo {
        #[arg(long, default_value_t = 1000)]
        customers: usize,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Also write the report as one HTML page to FILE at the end.
        #[arg(long, value_name = "FILE")]
        html: Option<String>,
    },
    /// Load customers and purchases.
    #[command(subcommand)]
    Load(Load),
    /// Run a full scoring run and follow it.
    Score,
    /// The portfolio report: pyramid, lifecycle, risk, Pareto share.
    Report {
        /// Write one self-contained HTML page with the charts (portfolio, cohorts,
        /// model, backtest, projection, campaigns) to FILE instead.
        #[arg(long, value_name = "FILE")]
        html: Option<String>,
        /// The backtest run to show on the page ("scoringRuns/{id}", as
        /// `backtest` printed it).
        #[arg(long, requires = "html")]
        backtest: Option<String>,
        /// A cohort to project on the page: its size, then its survivors after
        /// each period (default: the portfolio's oldest cohort).
        #[arg(long, value_delimiter = ',', requires = "html")]
        survivors: Option<Vec<f64>>,
    },
    /// The fitted model parameters with standard errors and 95 % intervals.
    Model,
    /// Contractual retention (subscriptions): fit the shifted-beta-geometric
    /// model to cohorts' survivors per period and project survival, retention
    /// rates and the discounted expected residual lifetime.
    Retention {
        /// A cohort's size, then its survivors after each period, e.g.
        /// 1000,631,468,382.
        #[arg(long, value_delimiter = ',', required = true)]
        survivors: Vec<f64>,
        /// Periods to project.
        #[arg(long, default_value_t = 12)]
        periods: i32,
        /// Discount rate per period for the residual lifetime.
        #[arg(long, default_value_t = 0.10)]
        discount_rate: f64,
    },
    /// Fit the models on the purchases up to a date only and compare their
    /// predictions for the time since with what happened (changes nothing live).
    Backtest {
        /// End of the calibration period: a date (YYYY-MM-DD, end of that day in
        /// UTC) or an RFC 3339 time.
        #[arg(long)]
        observation_end: String,
    },
    /// One customer's insight with its explanations.
    Insight {
        /// "customers/{id}" or the id.
        customer: String,
    },
    #[command(subcommand)]
    Segment(Segment),
    #[command(subcommand)]
    Campaign(Campaign),
    /// What waits in each service's outbox and how far behind each consumer
    /// group is (GetEventBacklog on the four services).
    Backlog,
    /// The events a consuming service gave up on: list, show, replay (to that
    /// service's consumer group alone, applied at most once more) or discard them
    /// (ListDeadLetters, GetDeadLetter, ReplayDeadLetter, DiscardDeadLetter; the
    /// service's admin scope).
    DeadLetters {
        /// The consuming service whose dead letters these are.
        #[arg(long, value_parser = Consumer::NAMES)]
        service: String,
        #[command(subcommand)]
        action: DeadLetterAction,
    },
    /// Each service's audit trail (who erased, exported, merged, read unmasked
    /// personal data, launched, backfilled, replayed ...): list it, or verify its
    /// hash chain (ListAuditRecords; the audit.read scope).
    #[command(subcommand)]
    Audit(AuditAction),
    /// How the complaints opened in a period fared against their SLA targets:
    /// met, breached and still open per target, % met, and mean working hours to
    /// first response and to resolution (GetSlaReport).
    SlaReport {
        /// Start of the period: a date (YYYY-MM-DD, start of that day in UTC) or
        /// an RFC 3339 time.
        #[arg(long)]
        since: String,
        /// End of the period, exclusive (same forms); default: now.
        #[arg(long)]
        until: Option<String>,
        /// One row per priority, customer tier, assignee or team.
        #[arg(long, value_parser = sla::GROUPINGS, default_value = "none")]
        by: String,
        /// CSV (RFC 4180, a header and a total line) instead of a table.
        #[arg(long)]
        csv: bool,
    },
    /// Rebuild a consumer's read model: profile and interactions replay their
    /// current state (customers, consent, purchases, referrals; complaints,
    /// surveys) as events for that consumer group alone, which applies them
    /// idempotently. For a read model that lost events, or a consumer joining late.
    Backfill {
        /// The consumer group, e.g. segmentation, winback, interactions.
        consumer: String,
        /// First customer id replayed (inclusive); default: the first.
        #[arg(long)]
        from: Option<String>,
        /// Customer id to stop before (exclusive); default: through the last.
        #[arg(long)]
        to: Option<String>,
        /// Replay only this owner (repeatable): profile or interactions. Default:
        /// the owners the consumer reads (both for one the suite does not know).
        #[arg(long = "source", value_parser = ["profile", "interactions"])]
        sources: Vec<String>,
        /// Customers per call (1-1000; one call is one transaction).
        #[arg(long, default_value_t = 500)]
        page_size: i32,
    },
}

#[derive(Subcommand)]
enum AuditAction {
    /// The records matching the filters, oldest first.
    List {
        /// Only this service's records (default: every service's).
        #[arg(long, value_parser = Audited::NAMES)]
        service: Option<String>,
        /// Only records of this actor (token subject).
        #[arg(long)]
        actor: Option<String>,
        /// Only records of this action, e.g. customer.erase.
        #[arg(long)]
        action: Option<String>,
        /// Only records naming this resource, e.g. customers/{id}.
        #[arg(long)]
        resource: Option<String>,
        /// From this time on: a date (YYYY-MM-DD, start of that day in UTC) or
        /// an RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Before this time (same forms as --since).
        #[arg(long)]
        until: Option<String>,
    },
    /// Read every record and recompute the hash chain here; exits non-zero and
    /// names the first broken sequence number when a record was altered or
    /// removed.
    Verify {
        /// This service's chain (default: every service's).
        #[arg(long, value_parser = Audited::NAMES)]
        service: Option<String>,
    },
}

#[derive(Subcommand)]
enum DeadLetterAction {
    /// Every dead letter of the service, oldest first.
    List,
    /// One dead letter (an id from `list`).
    Show { id: String },
    /// Puts the event back for the service's consumer group alone.
    Replay { id: String },
    /// Removes the dead letter for good.
    Discard { id: String },
}

#[derive(Subcommand)]
enum Load {
    /// A synthetic population (BG/NBD purchases, complaints, surveys).
    Synthetic {
        #[arg(long, default_value_t = 300)]
        customers: usize,
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// customers.csv (`id,display_name[,email]`) and optionally purchases.csv
    /// (`customer_id,order_id,occur_time,amount,gross_margin[,currency][,category]`).
    Csv {
        #[arg(long)]
        customers: String,
        #[arg(long)]
        purchases: Option<String>,
    },
}

#[derive(Subcommand)]
enum Segment {
    /// Create a segment from a filter over insight fields.
    Create {
        #[arg(long)]
        name: String,
        /// e.g. 'churn_risk in ["HIGH", "CRITICAL"] && value_tier == "GOLD"'.
        #[arg(long)]
        filter: String,
    },
    /// A segment's members.
    Members { segment: String },
}

#[derive(Subcommand)]
enum Campaign {
    /// Create a retention campaign on a segment (DRAFT).
    Create {
        #[arg(long)]
        name: String,
        /// "segments/{id}".
        #[arg(long)]
        segment: String,
        /// PRICE_PROMOTION, RELATIONSHIP_INVESTMENT, SERVICE_RECOVERY or STRUCTURAL_TIE.
        #[arg(long, default_value = "RELATIONSHIP_INVESTMENT")]
        strategy: String,
        /// DISCOUNT, CREDIT, GIFT, PERSONAL_OUTREACH or UPGRADE.
        #[arg(long, default_value = "PERSONAL_OUTREACH")]
        offer: String,
        /// Offer cost per treated customer, minor units.
        #[arg(long, default_value_t = 2_000)]
        offer_cost: i64,
        #[arg(long, default_value_t = 1_000_000)]
        budget: i64,
        #[arg(long, default_value_t = 0.2)]
        holdout: f64,
        #[arg(long, default_value = "EMAIL")]
        channel: String,
        /// EXPECTED (predicted CLV) or IF_RETAINED (CLV if retained): what ranks
        /// the customers and caps the offer cost. Default: EXPECTED, a retention
        /// campaign's default.
        #[arg(long)]
        value_basis: Option<String>,
    },
    /// Select targets and dispatch offers.
    Launch { campaign: String },
    /// Win-back rates, uplift, money.
    Results { campaign: String },
    /// Outcomes pooled per strategy.
    Compare,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let c = &cli.conn;
    let token = c
        .token
        .clone()
        .unwrap_or_else(|| Clients::mint(&c.jwt_secret, &c.issuer, &c.audience));
    let endpoints = Endpoints {
        profile: c.profile.clone(),
        interactions: c.interactions.clone(),
        segmentation: c.segmentation.clone(),
        winback: c.winback.clone(),
    };
    let clients = Clients::connect(&endpoints, token).await?;
    let mut print = |s: &str| print!("{s}");
    let quiet = cli.quiet;
    match cli.command {
        Command::Demo {
            customers,
            seed,
            html,
        } => {
            let o = SynthOptions {
                customers,
                seed,
                quiet,
                ..Default::default()
            };
            let summary = demo::demo(&clients, &o, &mut print).await?;
            if let Some(path) = html {
                let o = HtmlOptions {
                    endpoints,
                    backtest: Some(summary.backtest),
                    survivors: Some(demo::EXAMPLE_COHORT.to_vec()),
                };
                html_report::write(&clients, &o, &path).await?;
                println!("HTML report written to {path}");
            }
        }
        Command::Load(Load::Synthetic { customers, seed }) => {
            let o = SynthOptions {
                customers,
                seed,
                quiet,
                ..Default::default()
            };
            let l = synth::load_synthetic(&clients, &o).await?;
            println!(
                "{} customers, {} purchases, {} complaints, {} surveys loaded; {}",
                l.customers.len(),
                l.purchases,
                l.complaints,
                l.surveys,
                applied(&clients).await?
            );
        }
        Command::Load(Load::Csv {
            customers,
            purchases,
        }) => {
            let l = synth::load_csv(&clients, &customers, purchases.as_deref(), quiet).await?;
            println!(
                "{} customers, {} purchases loaded; {}",
                l.customers.len(),
                l.purchases,
                applied(&clients).await?
            );
        }
        Command::Score => {
            let run = scoring::score(&clients, quiet).await?;
            println!("{}: {} customers scored", run.name, run.customers_scored);
        }
        Command::Report { html: None, .. } => {
            demo::report(&clients, &mut print).await?;
        }
        Command::Report {
            html: Some(path),
            backtest,
            survivors,
        } => {
            let o = HtmlOptions {
                endpoints,
                backtest,
                survivors,
            };
            html_report::write(&clients, &o, &path).await?;
            println!("HTML report written to {path}");
        }
        Command::SlaReport {
            since,
            until,
            by,
            csv,
        } => {
            let start = cli_time("--since", &since)?;
            let end = match until {
                Some(t) => cli_time("--until", &t)?,
                None => chrono::Utc::now(),
            };
            let report = sla::fetch(&clients, start, end, sla::grouping(&by)).await?;
            if csv {
                print!("{}", sla::csv(&report));
            } else {
                sla::print(&report, &mut print);
            }
        }
        Command::Model => {
            scoring::model(&clients, &mut print).await?;
        }
        Command::Retention {
            survivors,
            periods,
            discount_rate,
        } => {
            let cohorts = vec![survivors];
            let p = retention::project(&clients, cohorts.clone(), periods, discount_rate).await?;
            retention::print(&p, &cohorts, &mut print);
        }
        Command::Backtest { observation_end } => {
            let end = match chrono::DateTime::parse_from_rfc3339(&observation_end) {
                Ok(t) => t.with_timezone(&chrono::Utc),
                Err(_) => chrono::NaiveDate::parse_from_str(&observation_end, "%Y-%m-%d")
                    .map_err(|_| {
                        anyhow::anyhow!(
                            "--observation-end {observation_end:?}: a date YYYY-MM-DD or an RFC 3339 time"
                        )
                    })?
                    .and_hms_opt(23, 59, 59)
                    .unwrap_or_default()
                    .and_utc(),
            };
            let run = scoring::backtest(&clients, end, quiet).await?;
            scoring::print_backtest(&run, &mut print);
        }
        Command::Insight { customer } => {
            let name = if customer.contains('/') {
                customer
            } else {
                format!("customers/{customer}")
            };
            let i = clients
                .segmentation
                .clone()
                .get_customer_insight(clients.req(spb::GetCustomerInsightRequest { name }))
                .await?
                .into_inner();
            print!("{}", demo::insight_rows(std::slice::from_ref(&i)));
            let rows: Vec<Vec<String>> = i
                .explanations
                .iter()
                .map(|e| vec![e.field.clone(), e.reason.clone()])
                .collect();
            print!("\n{}", table(&["field", "why"], &rows));
        }
        Command::Segment(Segment::Create { name, filter }) => {
            let s = demo::create_segment(&clients, &name, &filter).await?;
            println!(
                "{} \"{}\": {} members",
                s.name, s.display_name, s.member_count
            );
        }
        Command::Segment(Segment::Members { segment }) => {
            print!(
                "{}",
                demo::insight_rows(&demo::segment_members(&clients, &segment).await?)
            );
        }
        Command::Campaign(Campaign::Create {
            name,
            segment,
            strategy,
            offer,
            offer_cost,
            budget,
            holdout,
            channel,
            value_basis,
        }) => {
            use retention_proto::winback as wpb;
            let plan = CampaignPlan {
                name,
                segment,
                strategy: wpb::Strategy::from_str_name(&format!("STRATEGY_{strategy}"))
                    .ok_or_else(|| anyhow::anyhow!("unknown strategy {strategy}"))?,
                offer: wpb::OfferKind::from_str_name(&format!("OFFER_KIND_{offer}"))
                    .ok_or_else(|| anyhow::anyhow!("unknown offer {offer}"))?,
                offer_cost,
                budget,
                holdout_share: holdout,
                channel,
                value_basis: match value_basis {
                    None => wpb::ValueBasis::Unspecified,
                    Some(b) => wpb::ValueBasis::from_str_name(&format!("VALUE_BASIS_{b}"))
                        .ok_or_else(|| anyhow::anyhow!("unknown value basis {b}"))?,
                },
            };
            let c = demo::create_campaign(&clients, &plan).await?;
            println!("{} created (DRAFT, etag {})", c.name, c.etag);
        }
        Command::Campaign(Campaign::Launch { campaign }) => {
            let c = demo::launch(&clients, &campaign).await?;
            let t = demo::targets(&clients, &c.name).await?;
            println!("{} launched: {} targets", c.name, t.len());
        }
        Command::Campaign(Campaign::Results { campaign }) => {
            let r = demo::results(&clients, &campaign).await?;
            print!("{}", demo::results_table(&r));
        }
        Command::Campaign(Campaign::Compare) => {
            demo::compare(&clients, &mut print).await?;
        }
        Command::Backlog => {
            print!("{}", backlog::report(&backlog::backlogs(&clients).await?));
        }
        Command::DeadLetters { service, action } => {
            let service = Consumer::parse(&service)
                .ok_or_else(|| anyhow::anyhow!("unknown consuming service {service}"))?;
            match action {
                DeadLetterAction::List => {
                    print!(
                        "{}",
                        dead_letters::report(&dead_letters::list(&clients, service).await?)
                    );
                }
                DeadLetterAction::Show { id } => {
                    print!(
                        "{}",
                        dead_letters::detail(&dead_letters::show(&clients, service, &id).await?)
                    );
                }
                DeadLetterAction::Replay { id } => {
                    let d = dead_letters::replay(&clients, service, &id).await?;
                    println!("{} replayed ({} {})", d.id, d.event_type, d.event_id);
                }
                DeadLetterAction::Discard { id } => {
                    let d = dead_letters::discard(&clients, service, &id).await?;
                    println!("{} discarded ({} {})", d.id, d.event_type, d.event_id);
                }
            }
        }
        Command::Backfill {
            consumer,
            from,
            to,
            sources,
            page_size,
        } => {
            let owners = if sources.is_empty() {
                Owner::read_by(&consumer)
            } else {
                sources.iter().filter_map(|s| Owner::parse(s)).collect()
            };
            let plan = BackfillPlan {
                consumer: consumer.clone(),
                from: from.unwrap_or_default(),
                to: to.unwrap_or_default(),
                page_size,
            };
            let replayed = backfill::backfill(&clients, &plan, &owners, quiet).await?;
            print!("{}", backfill::report(&consumer, &replayed));
        }
        Command::Audit(AuditAction::List {
            service,
            actor,
            action,
            resource,
            since,
            until,
        }) => {
            let q = AuditQuery {
                actor: actor.unwrap_or_default(),
                action: action.unwrap_or_default(),
                resource: resource.unwrap_or_default(),
                since: since.map(|t| cli_time("--since", &t)).transpose()?,
                until: until.map(|t| cli_time("--until", &t)).transpose()?,
            };
            for name in audited(service.as_deref()) {
                let service = Audited::parse(name)
                    .ok_or_else(|| anyhow::anyhow!("unknown service {name}"))?;
                println!("{name}:");
                print!(
                    "{}",
                    audit::report(&audit::list(&clients, service, &q).await?)
                );
            }
        }
        Command::Audit(AuditAction::Verify { service }) => {
            let mut broken = Vec::new();
            for name in audited(service.as_deref()) {
                let service = Audited::parse(name)
                    .ok_or_else(|| anyhow::anyhow!("unknown service {name}"))?;
                let report = audit::verify(&clients, service).await?;
                print!("{}", audit::verify_line(name, &report));
                if !report.ok() {
                    broken.push(name);
                }
            }
            if !broken.is_empty() {
                anyhow::bail!("audit chain broken: {}", broken.join(", "));
            }
        }
    }
    Ok(())
}

/// The services an audit command covers: the one named, or all four.
fn audited(service: Option<&str>) -> Vec<&str> {
    match service {
        Some(s) => vec![s],
        None => Audited::NAMES.to_vec(),
    }
}

/// Waits (up to two minutes) until the services applied every event of a load,
/// so a scoring run or report right after it sees all of it; says which.
async fn applied(clients: &Clients) -> anyhow::Result<&'static str> {
    Ok(
        if backlog::wait_quiet(clients, std::time::Duration::from_secs(120)).await? {
            "every event applied"
        } else {
            "events may still be applying (retention-cli backlog)"
        },
    )
}

/// A time argument: an RFC 3339 time, or a date (its start, UTC).
fn cli_time(flag: &str, t: &str) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(t) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d")
        .map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
        .map_err(|_| anyhow::anyhow!("{flag} {t:?}: a date YYYY-MM-DD or an RFC 3339 time"))
}
