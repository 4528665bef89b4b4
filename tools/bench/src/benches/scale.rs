//! `BENCH_ONLY=scale` (not part of the default run): ten million customers and
//! about three purchases each, loaded by `COPY` into profile's and
//! segmentation's PostgreSQL databases, then a live scoring run on real
//! segmentation processes (the replicas, production mode: PostgreSQL and Redis).
//! It records the load and run times, each replica's peak RSS and pages, the
//! CPU the replicas and PostgreSQL spent per customer, the WAL the run wrote
//! and the databases' sizes: the inputs of the capacity model in BENCHMARKS.md.
//!
//! What is loaded is what an import of that population leaves behind: in
//! profile a customer row (PII sealed with the development key), one external
//! identity and each purchase; in segmentation each purchase and the folded
//! features. Win-back keeps purchases only of customers a campaign targeted
//! (`attributed_purchases`), so none of this lands there.
//!
//! The load streams one `COPY` per table from a generator thread, the tables at
//! once; the indexes the migrations define are in place throughout, as they
//! would be for an import into a running deployment. Profile's database is
//! measured once loaded and dropped before the run (which does not read it), so
//! that at the peak the disk holds the run's growth instead.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use retention_config::{PiiSettings, Settings};
use retention_domain::sim::{BgNbd, Rng, purchase_weeks};
use retention_proto::segmentation as pb;
use retention_proto::segmentation::segmentation_service_client::SegmentationServiceClient;
use retention_segmentation::domain::features::Features;
use retention_testkit::TestDb;
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use tokio::sync::mpsc;

use super::thousands;
use crate::table::Row;

/// About three purchases per customer over 39–78 observed weeks: a purchase
/// every 15 weeks on average and a one-in-five chance of dropping out after each.
const SPARSE: BgNbd = BgNbd {
    r: 1.0,
    alpha: 15.0,
    a: 1.0,
    b: 4.0,
};

/// Customers per generated chunk (one message per table on its way to `COPY`).
const CHUNK: usize = 10_000;

/// Disk per customer at the peak (segmentation's database after the run, with
/// its WAL), from the 10,000,000 run in BENCHMARKS.md with room to spare; the
/// free-space check asks for this much.
const BYTES_PER_CUSTOMER: u64 = 7_000;

#[derive(Debug, Clone)]
pub struct Options {
    pub customers: usize,
    /// Segmentation processes sharing the run.
    pub replicas: usize,
}

pub async fn run(o: &Options) -> anyhow::Result<Vec<Row>> {
    let n = o.customers;
    let replicas = o.replicas.max(1);
    let binary = segmentation_binary()?;
    let profile_db = TestDb::postgres().await?;
    let segmentation_db = TestDb::postgres().await?;
    let profile = connect(&profile_db.url).await?;
    let segmentation = connect(&segmentation_db.url).await?;
    check_disk(&segmentation, n).await?;
    retention_db::migrate::<retention_profile::Migrator>(&profile).await?;
    retention_db::migrate::<retention_segmentation::Migrator>(&segmentation).await?;

    let started = Instant::now();
    let loaded = load(&profile, &segmentation, n).await?;
    let load_time = started.elapsed();
    for db in [&profile, &segmentation] {
        db.execute_unprepared("ANALYZE").await?;
    }
    println!(
        "scale: loaded {} customers and {} purchases in {:.1} s",
        thousands(n as f64),
        thousands(loaded.purchases as f64),
        load_time.as_secs_f64()
    );
    let profile_size = database_size(&profile).await?;
    let mut tables = Vec::new();
    for table in ["customers", "customer_identities", "purchases"] {
        tables.push(format!(
            "{table} {}",
            size(table_size(&profile, table).await?)
        ));
    }
    let profile_tables = tables.join(", ");
    // The run does not read profile's database: dropped now, so that the disk
    // holds the run's growth instead of it at the peak.
    profile.close().await?;
    drop(profile_db);
    let loaded_segmentation = database_size(&segmentation).await?;

    let namespace = retention_testkit::unique_namespace();
    let dir = std::env::temp_dir().join(format!("retention-scale-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir)?;
    let mut fleet = Fleet::default();
    for k in 0..replicas {
        fleet.spawn(&binary, &dir, k, &segmentation_db.url, &namespace)?;
    }
    let mut client = fleet.client(0).await?;
    for k in 1..replicas {
        fleet.client(k).await?;
    }
    let token = retention_testkit::mint_token(
        &Settings::defaults("segmentation", 0),
        &[
            "segmentation.read",
            "segmentation.write",
            "segmentation.admin",
        ],
    );
    for filter in [
        r#"churn_probability > 0.7 && value_tier in ["PLATINUM", "GOLD"]"#,
        r#"lifecycle_stage == "DECLINE""#,
    ] {
        client
            .create_segment(retention_testkit::with_token(
                pb::CreateSegmentRequest {
                    segment: Some(pb::Segment {
                        display_name: "scale".into(),
                        filter: filter.into(),
                        ..Default::default()
                    }),
                    request_id: uuid::Uuid::now_v7().to_string(),
                },
                &token,
            ))
            .await?;
    }

    let wal_before = wal_lsn(&segmentation).await?;
    let cpu_before = (fleet.cpu_secs(), postgres_cpu_secs());
    let started = Instant::now();
    let run = client
        .run_scoring(retention_testkit::with_token(
            pb::RunScoringRequest {
                request_id: uuid::Uuid::now_v7().to_string(),
                ..Default::default()
            },
            &token,
        ))
        .await?
        .into_inner();
    let done = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        fleet.sample_rss();
        fleet.check_alive()?;
        let r = client
            .get_scoring_run(retention_testkit::with_token(
                pb::GetScoringRunRequest {
                    name: run.name.clone(),
                },
                &token,
            ))
            .await?
            .into_inner();
        if r.state == pb::ScoringRunState::Succeeded as i32
            || r.state == pb::ScoringRunState::Failed as i32
        {
            break r;
        }
    };
    let run_time = started.elapsed();
    let cpu_after = (fleet.cpu_secs(), postgres_cpu_secs());
    let wal = wal_diff(&segmentation, &wal_before).await?;
    anyhow::ensure!(
        done.state == pb::ScoringRunState::Succeeded as i32,
        "the run did not succeed: {done:?}"
    );
    anyhow::ensure!(
        done.customers_scored as usize == n,
        "scored {} of {n}",
        done.customers_scored
    );
    let run_id = run.name.rsplit('/').next().unwrap_or_default().to_string();
    let mut pages = Vec::new();
    for k in 0..replicas {
        pages.push(
            scalar(
                &segmentation,
                &format!(
                    "SELECT COUNT(*) FROM scoring_run_pages WHERE run_id = '{run_id}' \
                     AND owner LIKE '{}/%'",
                    Fleet::host(k)
                ),
            )
            .await?,
        );
    }
    let peaks = fleet.peak_rss_mib();
    fleet.stop();
    let _ = std::fs::remove_dir_all(&dir);
    drop_namespace(&namespace).await;

    let scored_size = database_size(&segmentation).await?;
    let mut tables = Vec::new();
    for table in [
        "insights",
        "features",
        "purchases",
        "segment_members",
        "outbox_events",
    ] {
        tables.push(format!(
            "{table} {}",
            size(table_size(&segmentation, table).await?)
        ));
    }
    let outbox = scalar(&segmentation, "SELECT COUNT(*) FROM outbox_events").await?;
    segmentation.close().await?;

    let secs = run_time.as_secs_f64();
    let rate = n as f64 / secs;
    let per_thousand = |cpu: f64| cpu / (n as f64 / 1_000.0);
    let service_cpu = cpu_after.0 - cpu_before.0;
    let db_cpu = cpu_after.1 - cpu_before.1;
    let total_after = profile_size + scored_size;
    println!(
        "scale: run of {n} customers on {replicas} replicas in {secs:.1} s; pages {pages:?}; \
         CPU service {service_cpu:.0} s, PostgreSQL {db_cpu:.0} s; WAL {}; {outbox} outbox rows; \
         segmentation: {}; profile: {profile_tables}",
        size(wal),
        tables.join(", ")
    );
    Ok(vec![
        Row::new(
            format!(
                "scale: COPY of {} customers / {} purchases (profile and segmentation)",
                thousands(n as f64),
                thousands(loaded.purchases as f64)
            ),
            format!(
                "{:.0} s ({}/s customers); profile {} ({profile_tables}), segmentation {}",
                load_time.as_secs_f64(),
                thousands(n as f64 / load_time.as_secs_f64()),
                size(profile_size),
                size(loaded_segmentation)
            ),
        ),
        Row::new(
            format!(
                "scale: RunScoring, {} customers, {replicas} replica(s) × {} scorers",
                thousands(n as f64),
                Settings::defaults("segmentation", 0).scoring.workers
            ),
            format!(
                "{secs:.0} s = {}/s customers; pages per replica {}",
                thousands(rate),
                pages
                    .iter()
                    .map(|p| thousands(*p as f64))
                    .collect::<Vec<_>>()
                    .join(" / ")
            ),
        ),
        Row::new(
            "scale: peak RSS per replica",
            peaks
                .iter()
                .map(|m| format!("{m} MiB"))
                .collect::<Vec<_>>()
                .join(" / "),
        ),
        Row::new(
            "scale: CPU per 1,000 customers scored",
            format!(
                "segmentation {:.3} s, PostgreSQL {:.3} s (of {:.3} s of wall time per 1,000)",
                per_thousand(service_cpu),
                per_thousand(db_cpu),
                per_thousand(secs)
            ),
        ),
        Row::new(
            "scale: database size after the run",
            format!(
                "{} ({} per customer): profile {} as loaded, segmentation {} ({}); WAL written by the run {}, {} outbox rows left",
                size(total_after),
                size(total_after / n.max(1) as i64),
                size(profile_size),
                size(scored_size),
                tables.join(", "),
                size(wal),
                thousands(outbox as f64)
            ),
        ),
    ])
}

async fn connect(url: &str) -> anyhow::Result<DatabaseConnection> {
    Ok(retention_db::connect(&retention_db::DbOptions::new(url.to_string())).await?)
}

/// The segmentation binary built beside this one (`make bench` builds both).
fn segmentation_binary() -> anyhow::Result<PathBuf> {
    let path = std::env::current_exe()?.with_file_name("retention-segmentation");
    anyhow::ensure!(
        path.exists(),
        "{} is missing: build it with the benchmarks (cargo build [--release] -p retention-segmentation)",
        path.display()
    );
    Ok(path)
}

/// Refuses to start unless PostgreSQL's data directory has room for the load
/// and the run.
async fn check_disk(db: &DatabaseConnection, n: usize) -> anyhow::Result<()> {
    let need = BYTES_PER_CUSTOMER * n as u64;
    let dir = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SHOW data_directory",
        ))
        .await?
        .map(|r| r.try_get_by_index::<String>(0))
        .transpose()?;
    // The data directory may be unreadable to this user: its file system is
    // then asked about through its parent, or the root.
    let free = dir
        .iter()
        .flat_map(|d| [d.clone(), "/".to_string()])
        .find_map(|d| free_bytes(&d));
    match free {
        Some(free) => {
            println!(
                "scale: {} customers need about {} of disk; {} free",
                thousands(n as f64),
                size(need as i64),
                size(free as i64)
            );
            anyhow::ensure!(
                free > need,
                "not enough free disk for {n} customers: {} needed, {} free",
                size(need as i64),
                size(free as i64)
            );
        }
        None => println!(
            "scale: free disk unknown; the load needs about {}",
            size(need as i64)
        ),
    }
    Ok(())
}

fn free_bytes(path: &str) -> Option<u64> {
    let out = Command::new("df")
        .args(["-B1", "--output=avail", path])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)?
        .trim()
        .parse()
        .ok()
}

struct Loaded {
    purchases: u64,
}

/// The tables the load fills, with their `COPY` column lists; the generator
/// writes each chunk's rows in this order.
const TABLES: [(&str, &str); 5] = [
    (
        "profile",
        "COPY customers (id, kind, display_name, email, phone, email_hash, region, \
         acquisition_channel, acquire_time, tags, attributes, consents, version, erased, \
         create_time, update_time) FROM STDIN",
    ),
    (
        "profile",
        "COPY customer_identities (namespace, value, customer_id) FROM STDIN",
    ),
    (
        "profile",
        "COPY purchases (id, customer_id, origin_customer_id, order_id, occur_time, currency, \
         amount_minor, margin_minor, discount_minor, product_category, channel, create_time) \
         FROM STDIN",
    ),
    (
        "segmentation",
        "COPY features (customer_id, data, update_time) FROM STDIN",
    ),
    (
        "segmentation",
        "COPY purchases (purchase_id, customer_id, occur_time, margin_minor) FROM STDIN",
    ),
];

/// Generates `n` customers on a blocking thread and streams each table's rows
/// to its own `COPY`, all tables at once.
async fn load(
    profile: &DatabaseConnection,
    segmentation: &DatabaseConnection,
    n: usize,
) -> anyhow::Result<Loaded> {
    let mut senders = Vec::new();
    let mut copies = Vec::new();
    for (db, sql) in TABLES {
        let pool = match db {
            "profile" => profile.get_postgres_connection_pool().clone(),
            _ => segmentation.get_postgres_connection_pool().clone(),
        };
        let (tx, mut rx) = mpsc::channel::<String>(4);
        senders.push(tx);
        copies.push(tokio::spawn(async move {
            let mut conn = pool.acquire().await?;
            let mut copy = conn.copy_in_raw(sql).await?;
            while let Some(chunk) = rx.recv().await {
                copy.send(chunk.as_bytes()).await?;
            }
            anyhow::Ok(copy.finish().await?)
        }));
    }
    let generator = tokio::task::spawn_blocking(move || generate(n, senders));
    let purchases = generator.await??;
    let mut rows = Vec::new();
    for c in copies {
        rows.push(c.await??);
    }
    anyhow::ensure!(
        rows[0] as usize == n && rows[3] as usize == n && rows[2] == purchases,
        "copied {rows:?} rows for {n} customers and {purchases} purchases"
    );
    Ok(Loaded { purchases })
}

/// Writes `n` customers' rows, a chunk at a time, to the tables' senders (in
/// [`TABLES`] order); returns the purchases written.
fn generate(n: usize, senders: Vec<mpsc::Sender<String>>) -> anyhow::Result<u64> {
    let pii = retention_profile::store::PiiCipher::from_settings(&PiiSettings::default(), true)?;
    let now = retention_domain::now();
    let stamp = now.to_rfc3339();
    let mut rng = Rng::new(10);
    let mut purchases = 0u64;
    let mut start = 0;
    while start < n {
        let end = (start + CHUNK).min(n);
        let mut out: [String; 5] = Default::default();
        for i in start..end {
            purchases += customer(&mut rng, &pii, now, &stamp, i, &mut out)?;
        }
        for (tx, chunk) in senders.iter().zip(out) {
            tx.blocking_send(chunk)
                .map_err(|_| anyhow::anyhow!("a COPY stopped early"))?;
        }
        start = end;
    }
    Ok(purchases)
}

/// One customer's rows appended to `out`; returns its purchases.
fn customer(
    rng: &mut Rng,
    pii: &retention_profile::store::PiiCipher,
    now: DateTime<Utc>,
    stamp: &str,
    i: usize,
    out: &mut [String; 5],
) -> anyhow::Result<u64> {
    use std::fmt::Write;
    let id = format!("{:08}-0000-7000-8000-{:012}", i / 10_000, i);
    let t_weeks = 39.0 + 39.0 * rng.uniform();
    let first = now - TimeDelta::seconds((t_weeks * 7.0 * 86_400.0) as i64);
    let week = |w: f64| first + TimeDelta::seconds((w * 7.0 * 86_400.0) as i64);

    let name = format!("Customer {i}");
    let email = format!("customer{i}@example.com");
    let phone = format!("+86 138 {:04} {:04}", (i / 10_000) % 10_000, i % 10_000);
    let ([name, email_sealed, phone], email_hash) = retention_profile::store::convert::seal_pii(
        pii,
        &id,
        [&Some(name), &Some(email), &Some(phone)],
    );
    let region = ["north", "east", "south", "west"][i % 4];
    let channel = ["web", "store", "app"][i % 3];
    writeln!(
        out[0],
        "{id}\tINDIVIDUAL\t{}\t{}\t{}\t{}\t{region}\t{channel}\t{}\t|\t{{}}\t[]\t1\tf\t{stamp}\t{stamp}",
        name.unwrap_or_default(),
        email_sealed.unwrap_or_default(),
        phone.unwrap_or_default(),
        email_hash.unwrap_or_default(),
        first.to_rfc3339(),
    )?;
    writeln!(out[1], "crm\tC{i:010}\t{id}")?;

    let mut f = Features::default();
    let weeks = purchase_weeks(rng, &SPARSE, t_weeks);
    for (k, w) in weeks.iter().enumerate() {
        let at = week(*w);
        let amount = 1_000 + (rng.uniform() * 9_000.0) as i64;
        let margin = amount / 4;
        let category = ["tea", "coffee", "cups"][(i + k) % 3];
        f.record_purchase(at, amount, margin, 0, category, &Default::default())
            .map_err(|e| anyhow::anyhow!("a synthetic customer's sums: {e:?}"))?;
        let purchase = uuid::Uuid::now_v7();
        let at = at.to_rfc3339();
        writeln!(
            out[2],
            "{purchase}\t{id}\t{id}\tO{i}-{k}\t{at}\tCNY\t{amount}\t{margin}\t0\t{category}\t{channel}\t{stamp}"
        )?;
        writeln!(out[4], "{purchase}\t{id}\t{at}\t{margin}")?;
    }
    f.currency = "CNY".into();
    let data = serde_json::to_string(&f)?;
    // COPY's text format: backslashes and control characters escaped.
    let data = data
        .replace('\\', "\\\\")
        .replace('\t', "\\t")
        .replace('\n', "\\n");
    writeln!(out[3], "{id}\t{data}\t{stamp}")?;
    Ok(weeks.len() as u64)
}

/// The segmentation processes of the run, with what was sampled of them.
#[derive(Default)]
struct Fleet {
    children: Vec<Child>,
    ports: Vec<u16>,
    peak_kib: Vec<u64>,
}

impl Fleet {
    /// A replica's host name: the start of the owner of each page it claims.
    fn host(k: usize) -> String {
        format!("scale-replica-{k}")
    }

    fn spawn(
        &mut self,
        binary: &PathBuf,
        dir: &std::path::Path,
        k: usize,
        database: &str,
        namespace: &str,
    ) -> anyhow::Result<()> {
        let port = retention_testkit::free_port();
        let mut cmd = Command::new(binary);
        for (key, _) in std::env::vars().filter(|(key, _)| key.starts_with("RETENTION_")) {
            cmd.env_remove(key);
        }
        let log = std::fs::File::create(dir.join(format!("replica-{k}.log")))?;
        let child = cmd
            .current_dir(dir)
            .env("HOSTNAME", Self::host(k))
            .env("RETENTION_SERVICE__HOST", "127.0.0.1")
            .env("RETENTION_SERVICE__PORT", port.to_string())
            .env("RETENTION_DATABASE__URL", database)
            .env("RETENTION_REDIS__URL", retention_testkit::redis_url())
            .env("RETENTION_REDIS__NAMESPACE", namespace)
            .env("RETENTION_ADMIN__PORT", "0")
            .env("RETENTION_SCORING__INTERVAL_MINUTES", "0")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        self.children.push(child);
        self.ports.push(port);
        self.peak_kib.push(0);
        Ok(())
    }

    /// A client of replica `k` once it serves.
    async fn client(
        &mut self,
        k: usize,
    ) -> anyhow::Result<SegmentationServiceClient<tonic::transport::Channel>> {
        let endpoint = format!("http://127.0.0.1:{}", self.ports[k]);
        for _ in 0..600 {
            if let Ok(ch) = tonic::transport::Endpoint::from_shared(endpoint.clone())?
                .connect()
                .await
                && retention_testkit::wait_until_serving(ch.clone())
                    .await
                    .is_ok()
            {
                return Ok(SegmentationServiceClient::new(ch).max_decoding_message_size(64 << 20));
            }
            self.check_alive()?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("segmentation replica {k} did not come up")
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        for (k, c) in self.children.iter_mut().enumerate() {
            if let Some(status) = c.try_wait()? {
                anyhow::bail!("segmentation replica {k} exited: {status}");
            }
        }
        Ok(())
    }

    /// Each replica's high-water mark of resident memory so far (the kernel's
    /// `VmHWM` covers the whole life of the process, which is the run here).
    fn sample_rss(&mut self) {
        for (c, peak) in self.children.iter().zip(self.peak_kib.iter_mut()) {
            if let Some(kib) = proc_status_kib(c.id(), "VmHWM:") {
                *peak = (*peak).max(kib);
            }
        }
    }

    fn peak_rss_mib(&mut self) -> Vec<u64> {
        self.sample_rss();
        self.peak_kib.iter().map(|k| k / 1024).collect()
    }

    /// CPU seconds (user and system) the replicas used so far.
    fn cpu_secs(&self) -> f64 {
        self.children.iter().filter_map(|c| cpu_secs(c.id())).sum()
    }

    fn stop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A kB field of `/proc/<pid>/status` (`pid` may be `self`).
pub(crate) fn proc_status_kib(pid: impl std::fmt::Display, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// User and system CPU seconds of process `pid` (Linux's clock ticks are 1/100 s
/// in `/proc`, `USER_HZ`, whatever the kernel's own tick).
fn cpu_secs(pid: impl std::fmt::Display) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: fields count
    // from after it (state is field 3, utime 14, stime 15).
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// CPU seconds of every PostgreSQL process alive now (the server's background
/// processes and every connection's backend; the services' pools keep theirs
/// for the whole run).
fn postgres_cpu_secs() -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|c| c.trim() == "postgres")
                .unwrap_or(false)
        })
        .filter_map(cpu_secs)
        .sum()
}

async fn scalar(db: &DatabaseConnection, sql: &str) -> anyhow::Result<i64> {
    Ok(db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await?
        .map(|r| r.try_get_by_index::<i64>(0))
        .transpose()?
        .unwrap_or(0))
}

async fn table_size(db: &DatabaseConnection, table: &str) -> anyhow::Result<i64> {
    scalar(db, &format!("SELECT pg_total_relation_size('{table}')")).await
}

async fn database_size(db: &DatabaseConnection) -> anyhow::Result<i64> {
    scalar(db, "SELECT pg_database_size(current_database())").await
}

async fn wal_lsn(db: &DatabaseConnection) -> anyhow::Result<String> {
    Ok(db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT pg_current_wal_lsn()::text",
        ))
        .await?
        .map(|r| r.try_get_by_index::<String>(0))
        .transpose()?
        .unwrap_or_default())
}

/// Bytes of WAL the whole server wrote since `before`.
async fn wal_diff(db: &DatabaseConnection, before: &str) -> anyhow::Result<i64> {
    scalar(
        db,
        &format!("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{before}')::bigint"),
    )
    .await
}

/// Removes the run's Redis keys (its streams and cache entries).
async fn drop_namespace(namespace: &str) {
    let Ok(client) = redis::Client::open(retention_testkit::redis_url()) else {
        return;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{namespace}*"))
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    for chunk in keys.chunks(500) {
        let _: Result<(), _> = redis::cmd("UNLINK").arg(chunk).query_async(&mut conn).await;
    }
}

fn size(bytes: i64) -> String {
    let b = bytes as f64;
    if b >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} GiB", b / (1024.0 * 1024.0 * 1024.0))
    } else if b >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    } else {
        format!("{:.0} KiB", b / 1024.0)
    }
}
