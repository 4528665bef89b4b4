//! The admin port's `/metrics` after known calls on the four services in
//! embedded mode: the exposition is parsed strictly (every line, every family's
//! type, histogram consistency) and each series asserted to the value the calls
//! imply; then a real Prometheus server scrapes the same endpoint and answers a
//! query with the same figures.

use std::collections::BTreeMap;
use std::time::Duration;

use retention_events::EventBus;
use retention_proto::common::Money;
use retention_proto::interactions as ipb;
use retention_proto::interactions::interaction_service_client::InteractionServiceClient;
use retention_proto::profile as ppb;
use retention_proto::profile::customer_profile_service_client::CustomerProfileServiceClient;
use retention_proto::winback as wpb;
use retention_proto::winback::winback_service_client::WinbackServiceClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Mode, four_services};

const PROFILE_SERVICE: &str = "retention.profile.v1.CustomerProfileService";
const OFFER_COST: i64 = 500;

fn cny(minor_units: i64) -> Option<Money> {
    Some(Money {
        currency_code: "CNY".into(),
        minor_units,
    })
}

/// A series' labels, sorted by name.
type Labels = Vec<(String, String)>;

/// A series: its name and its labels.
type Key = (String, Labels);

/// The scrape, parsed and checked against the text format's rules.
struct Exposition(BTreeMap<Key, f64>);

impl Exposition {
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut l: Labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        l.sort();
        self.0.get(&(name.to_string(), l)).copied()
    }

    /// The value of the one series of `name` whose labels include `labels`.
    fn only(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<f64> = self
            .0
            .iter()
            .filter(|((n, l), _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, v)| *v)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "one series {name}{labels:?}, found {found:?}"
        );
        found[0]
    }
}

fn is_name(s: &str, colons: bool) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colons && c == ':'))
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colons && c == ':'))
}

fn value(s: &str) -> f64 {
    match s {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        _ => s
            .parse()
            .unwrap_or_else(|_| panic!("{s:?} is not a sample value")),
    }
}

/// `{a="x",b="y"}` → sorted pairs; panics on anything the format does not allow.
fn parse_labels(s: &str) -> Vec<(String, String)> {
    let inner = s
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .expect("labels in braces");
    let mut out = Vec::new();
    let mut chars = inner.chars().peekable();
    while chars.peek().is_some() {
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        assert!(is_name(&name, false), "label name {name:?}");
        assert_eq!(chars.next(), Some('"'), "label value opens with a quote");
        let mut v = String::new();
        loop {
            match chars.next().expect("label value closes") {
                '"' => break,
                '\\' => match chars.next() {
                    Some('\\') => v.push('\\'),
                    Some('"') => v.push('"'),
                    Some('n') => v.push('\n'),
                    other => panic!("escape \\{other:?} in a label value"),
                },
                '\n' => panic!("raw newline in a label value"),
                c => v.push(c),
            }
        }
        assert!(
            !out.iter().any(|(k, _): &(String, String)| *k == name),
            "label {name} twice"
        );
        out.push((name, v));
        match chars.next() {
            None => break,
            Some(',') => {}
            Some(c) => panic!("{c:?} after a label value"),
        }
    }
    out.sort();
    out
}

/// Parses the Prometheus text format (0.0.4) strictly.
fn parse(text: &str) -> Exposition {
    assert!(text.ends_with('\n'), "the exposition ends with a newline");
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helps: BTreeMap<String, ()> = BTreeMap::new();
    let mut seen_samples_of: BTreeMap<String, ()> = BTreeMap::new();
    let mut series = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kind, name) = (parts.next().unwrap(), parts.next().expect("a name"));
            assert!(is_name(name, true), "metric name {name:?}");
            match kind {
                "TYPE" => {
                    let t = parts.next().expect("a type");
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&t),
                        "type {t}"
                    );
                    assert!(
                        types.insert(name.to_string(), t.to_string()).is_none(),
                        "TYPE of {name} twice"
                    );
                    assert!(
                        !seen_samples_of.contains_key(name),
                        "TYPE of {name} after its samples"
                    );
                }
                "HELP" => assert!(helps.insert(name.to_string(), ()).is_none()),
                other => panic!("comment {other:?}"),
            }
            continue;
        }
        assert!(!line.is_empty() && !line.starts_with('#'), "line {line:?}");
        let (series_part, v) = line.rsplit_once(' ').expect("a value");
        let (name, labels) = match series_part.find('{') {
            Some(i) => (&series_part[..i], parse_labels(&series_part[i..])),
            None => (series_part, Vec::new()),
        };
        assert!(is_name(name, true), "metric name {name:?}");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(name);
        let t = types
            .get(family)
            .unwrap_or_else(|| panic!("{name} has no TYPE"));
        if t == "counter" {
            assert!(name.ends_with("_total"), "counter {name} ends in _total");
        }
        seen_samples_of.insert(family.to_string(), ());
        let key = (name.to_string(), labels);
        assert!(
            series.insert(key.clone(), value(v)).is_none(),
            "series {key:?} twice"
        );
    }
    // Every histogram: ascending le, cumulative counts, +Inf equal to _count.
    for (family, t) in &types {
        if t != "histogram" {
            continue;
        }
        let bucket = format!("{family}_bucket");
        let mut by_labels: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
        for ((n, l), v) in &series {
            if *n != bucket {
                continue;
            }
            let le = l.iter().find(|(k, _)| k == "le").expect("le on a bucket");
            let rest: Vec<_> = l.iter().filter(|(k, _)| k != "le").cloned().collect();
            by_labels.entry(rest).or_default().push((value(&le.1), *v));
        }
        for (labels, mut buckets) in by_labels {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "cumulative");
            let inf = buckets.last().unwrap();
            assert_eq!(inf.0, f64::INFINITY, "an +Inf bucket");
            let count = series[&(format!("{family}_count"), labels.clone())];
            assert_eq!(inf.1, count, "+Inf bucket equals _count");
            assert!(series.contains_key(&(format!("{family}_sum"), labels)));
        }
    }
    Exposition(series)
}

/// A plain HTTP/1.1 GET (a scraper's request); (status, content type, body).
async fn http_get(addr: &str, path: &str) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a header block");
    let status = head[9..12].parse().unwrap();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| {
                l.split_once(':')
                    .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_default()
    };
    let body = if header("transfer-encoding").eq_ignore_ascii_case("chunked") {
        let mut out = String::new();
        let mut rest = body;
        loop {
            let (size, tail) = rest.split_once("\r\n").unwrap();
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            if n == 0 {
                break;
            }
            out.push_str(&tail[..n]);
            rest = &tail[n + 2..];
        }
        out
    } else {
        body.to_string()
    };
    (status, header("content-type"), body)
}

async fn scrape(addr: &str) -> Exposition {
    let (status, content_type, body) = http_get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    parse(&body)
}

async fn eventually<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn embedded_the_scrape_shows_what_the_calls_did_and_prometheus_reads_it() {
    let bus = EventBus::in_process_for_suite();
    scrape_after_known_calls(Mode::Embedded(bus.clone()), bus).await
}

#[tokio::test]
async fn production_the_scrape_shows_what_the_calls_did_and_prometheus_reads_it() {
    let mode = Mode::production();
    let Mode::Production { namespace } = &mode else {
        unreachable!()
    };
    let mut settings = retention_config::Settings::defaults("metrics-test", 0);
    settings.redis.url = retention_testkit::redis_url();
    settings.redis.namespace = namespace.clone();
    let bus = EventBus::from_settings(&settings).unwrap();
    scrape_after_known_calls(mode, bus).await
}

/// Known calls on the four services in `mode`, then the scrape; `bus` reaches
/// their streams (for a poison event).
async fn scrape_after_known_calls(mode: Mode, bus: EventBus) {
    let services = four_services(&mode).await;
    let [profile, interactions, segmentation, winback] = &services;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = listener.local_addr().unwrap().to_string();
    let stop = tokio_util::sync::CancellationToken::new();
    let stopped = stop.clone();
    tokio::spawn(retention_server::admin::serve(listener, async move {
        stopped.cancelled().await
    }));
    assert_eq!(http_get(&admin, "/nope").await.0, 404);

    let p_scopes = ["profile.write", "profile.read"];
    let w_scopes = ["winback.read", "winback.write", "winback.admin"];
    let i_scopes = ["interactions.read", "interactions.write"];
    let mut pc = CustomerProfileServiceClient::new(profile.channel.clone());
    let mut wc = WinbackServiceClient::new(winback.channel.clone());
    let mut ic = InteractionServiceClient::new(interactions.channel.clone());

    let (customers, segment) =
        super::winback::scored_repeat_buyers(profile, segmentation, winback).await;
    // Two reads of one customer (the second from the cache) and one of nobody.
    for _ in 0..2 {
        pc.get_customer(profile.req(
            ppb::GetCustomerRequest {
                name: customers[0].clone(),
            },
            &p_scopes,
        ))
        .await
        .unwrap();
    }
    let missing = pc
        .get_customer(profile.req(
            ppb::GetCustomerRequest {
                name: format!("customers/{}", uuid::Uuid::now_v7()),
            },
            &p_scopes,
        ))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);

    // A campaign with a paid offer launched on the segment.
    let campaign = wc
        .create_campaign(winback.req(
            wpb::CreateCampaignRequest {
                campaign: Some(wpb::Campaign {
                    display_name: "Voucher call".into(),
                    kind: wpb::CampaignKind::Retention as i32,
                    strategy: wpb::Strategy::PricePromotion as i32,
                    offer: Some(wpb::Offer {
                        kind: wpb::OfferKind::Discount as i32,
                        description: "5 yuan off".into(),
                        cost: cny(OFFER_COST),
                    }),
                    channel: "PHONE".into(),
                    target_segment: segment.name.clone(),
                    budget: cny(100_000),
                    max_cost_share_of_value: 1.0,
                    value_basis: wpb::ValueBasis::IfRetained as i32,
                    win_window_days: 30,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &w_scopes,
        ))
        .await
        .unwrap()
        .into_inner();
    wc.launch_campaign(winback.req(
        wpb::LaunchCampaignRequest {
            name: campaign.name.clone(),
            etag: campaign.etag.clone(),
        },
        &w_scopes,
    ))
    .await
    .unwrap();
    let campaign = wc
        .get_campaign(winback.req(
            wpb::GetCampaignRequest {
                name: campaign.name.clone(),
            },
            &w_scopes,
        ))
        .await
        .unwrap()
        .into_inner();
    let treated = wc
        .list_campaign_targets(winback.req(
            wpb::ListCampaignTargetsRequest {
                campaign: campaign.name.clone(),
                ..Default::default()
            },
            &w_scopes,
        ))
        .await
        .unwrap()
        .into_inner()
        .targets
        .iter()
        .filter(|t| t.arm == wpb::Arm::Treated as i32)
        .count() as i64;
    let results = wc
        .get_campaign_results(winback.req(
            wpb::GetCampaignResultsRequest {
                name: campaign.name.clone(),
            },
            &w_scopes,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(treated > 0, "{results:?}");

    // A complaint left unanswered, swept a month later as another replica would.
    ic.open_complaint(interactions.req(
        ipb::OpenComplaintRequest {
            complaint: Some(ipb::Complaint {
                customer: customers[1].clone(),
                category: ipb::ComplaintCategory::Delivery as i32,
                severity: ipb::Severity::High as i32,
                subject: "Parcel late".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        },
        &i_scopes,
    ))
    .await
    .unwrap();
    let breaches = super::sweep_in_days(interactions, 30).await;
    assert_eq!(breaches, 2, "first response and resolution");

    // A purchase segmentation refuses for good becomes its dead letter.
    let poison = super::dead_letters::poison("metrics-poison");
    bus.publisher()
        .publish(
            "retention.profile.events",
            &poison.event_id,
            &prost::Message::encode_to_vec(&poison),
        )
        .await
        .unwrap();

    let m = eventually("the pipeline settled", async || {
        let m = scrape(&admin).await;
        let dead = m.get(
            "retention_dead_letters",
            &[("service", "segmentation"), ("group", "segmentation")],
        );
        let settled = m
            .0
            .iter()
            .filter(|((n, _), _)| n == "retention_outbox_backlog" || n == "retention_consumer_lag")
            .all(|(_, v)| *v == 0.0);
        // The run is counted when its coordinator sees it end, which may be
        // after another replica's worker marked it SUCCEEDED.
        let counted = m.get(
            "retention_scoring_run_duration_seconds_count",
            &[("kind", "live"), ("outcome", "succeeded")],
        ) == Some(1.0);
        (dead == Some(1.0) && settled && counted).then_some(m)
    })
    .await;

    let rpc = |method: &str, code: &str| {
        m.get(
            "rpc_server_duration_milliseconds_count",
            &[
                ("rpc_system", "grpc"),
                ("rpc_service", PROFILE_SERVICE),
                ("rpc_method", method),
                ("rpc_grpc_status_code", code),
            ],
        )
    };
    assert_eq!(rpc("CreateCustomer", "0"), Some(3.0));
    assert_eq!(rpc("RecordPurchase", "0"), Some(9.0));
    assert_eq!(rpc("GetCustomer", "0"), Some(2.0));
    assert_eq!(rpc("GetCustomer", "5"), Some(1.0), "NOT_FOUND is code 5");
    // The cache: the first read of the customer missed, the second hit; the read
    // of nobody missed.
    let cache = |result: &str| {
        m.get(
            "retention_cache_requests_total",
            &[("cache", "profile"), ("result", result)],
        )
    };
    assert_eq!(cache("hit"), Some(1.0));
    assert_eq!(cache("miss"), Some(2.0));
    for service in ["profile", "interactions", "segmentation", "winback"] {
        assert_eq!(
            m.get("retention_outbox_backlog", &[("service", service)]),
            Some(0.0),
            "{service}'s outbox is sampled"
        );
        assert!(
            m.get(
                "retention_outbox_oldest_age_seconds",
                &[("service", service)]
            )
            .is_some()
        );
    }
    for gauge in ["retention_consumer_lag", "retention_consumer_pending"] {
        assert_eq!(
            m.only(gauge, &[("service", "profile"), ("group", "segmentation")]),
            0.0,
            "{gauge}"
        );
    }
    assert_eq!(
        m.get("retention_outbox_held_back", &[("service", "profile")]),
        Some(0.0)
    );
    // Every event profile published was applied by each consuming group; the
    // poison one only by interactions (it ignores purchases' margins).
    let published = profile
        .count("SELECT COUNT(*) FROM outbox_events")
        .await
        .unwrap() as f64;
    let applied = |group: &str| {
        m.get(
            "retention_events_applied_total",
            &[("stream", "retention.profile.events"), ("group", group)],
        )
    };
    assert_eq!(applied("segmentation"), Some(published));
    assert_eq!(applied("interactions"), Some(published + 1.0));
    assert_eq!(
        m.get(
            "retention_scoring_run_duration_seconds_count",
            &[("kind", "live"), ("outcome", "succeeded")]
        ),
        Some(1.0)
    );
    assert_eq!(
        m.get("retention_scoring_customers_total", &[("kind", "live")]),
        Some(3.0)
    );
    assert_eq!(m.get("retention_campaign_launches_total", &[]), Some(1.0));
    assert_eq!(
        m.get("retention_campaign_spend_total", &[("currency", "CNY")]),
        Some((OFFER_COST * treated) as f64)
    );
    let breached: f64 =
        m.0.iter()
            .filter(|((n, _), _)| n == "retention_sla_breaches_total")
            .map(|(_, v)| v)
            .sum();
    assert_eq!(breached, 2.0);
    assert!(
        m.0.keys()
            .any(|(n, l)| n == "target_info" && l.iter().any(|(k, _)| k == "service_name")),
        "target_info carries the resource"
    );

    // A real Prometheus scrapes the endpoint and answers with the same figures.
    let prometheus = Prometheus::start(&admin);
    let launches = eventually("prometheus scraped the endpoint", async || {
        prometheus
            .query("retention_campaign_launches_total")
            .await
            .filter(|v| *v == 1.0)
    })
    .await;
    assert_eq!(launches, 1.0);
    let reads = prometheus
        .query(&format!(
            "sum(rpc_server_duration_milliseconds_count{{rpc_service=\"{PROFILE_SERVICE}\",rpc_method=\"GetCustomer\"}})"
        ))
        .await;
    assert_eq!(reads, Some(3.0));
    stop.cancel();
    for s in services {
        s.stop().await.unwrap();
    }
}

/// A Prometheus server of the Debian package, scraping one target every second
/// into a temporary directory; killed when dropped.
struct Prometheus {
    child: std::process::Child,
    addr: String,
    _dir: tempdir::Dir,
}

mod tempdir {
    /// A directory removed when dropped.
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Prometheus {
    fn start(target: &str) -> Prometheus {
        // `make deploy-tools` unpacks it from the Debian package and says where.
        let venv = std::env::var("HOME").unwrap_or_default()
            + "/.cache/retention-deploy-venv/bin/prometheus";
        let bin = std::env::var("PROMETHEUS_BIN")
            .ok()
            .into_iter()
            .chain([venv, "/usr/bin/prometheus".to_string()])
            .find(|p| std::path::Path::new(p).is_file())
            .expect("a prometheus server binary: run `make deploy-tools` or set PROMETHEUS_BIN");
        let dir = std::env::temp_dir().join(format!("retention-prom-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: retention\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let addr = format!("127.0.0.1:{}", retention_testkit::free_port());
        let child = std::process::Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("prometheus starts");
        Prometheus {
            child,
            addr,
            _dir: tempdir::Dir(dir),
        }
    }

    /// The value of an instant query with one result; `None` until it has one.
    async fn query(&self, promql: &str) -> Option<f64> {
        let encoded: String = promql
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let conn = tokio::net::TcpStream::connect(&self.addr).await.ok()?;
        drop(conn);
        let (status, _, body) =
            http_get(&self.addr, &format!("/api/v1/query?query={encoded}")).await;
        if status != 200 {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        let result = v["data"]["result"].as_array()?;
        if result.len() != 1 {
            return None;
        }
        result[0]["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
