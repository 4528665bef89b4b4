//! Layered configuration shared by every service: built-in defaults < an optional
//! TOML file < `RETENTION_*` environment variables (`__` separates nesting levels,
//! e.g. `RETENTION_DATABASE__URL`). The defaults are the embedded mode, so a fresh
//! machine runs with no servers at all.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration could not be loaded: {0}")]
    Load(#[from] config::ConfigError),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The development signing secret used when none is configured. Tokens signed with it
/// are only accepted while `auth.allow_dev_secret` is true (the embedded default).
pub const DEV_JWT_SECRET: &str = "retention-dev-secret-change-me";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    pub service: ServiceSettings,
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub redis: RedisSettings,
    pub cache: CacheSettings,
    pub events: EventSettings,
    pub auth: AuthSettings,
    pub telemetry: TelemetrySettings,
    /// Segmentation's model and classification settings (other services ignore it).
    #[serde(default)]
    pub scoring: ScoringSettings,
    /// Win-back's peers and schedules (other services ignore it).
    #[serde(default)]
    pub winback: WinbackSettings,
    /// TLS towards peer services.
    #[serde(default)]
    pub peer_tls: PeerTlsSettings,
    /// Keys of the PII kept encrypted at rest (the profile service).
    #[serde(default)]
    pub pii: PiiSettings,
    /// Consent policy per contact channel (DESIGN §8): who may be contacted
    /// without a consent record. Applied when consent is read, never stored, so
    /// changing it needs no migration.
    #[serde(default)]
    pub consent: ConsentSettings,
    /// How long audit records are kept.
    #[serde(default)]
    pub audit: AuditSettings,
    /// The admin port (Prometheus `/metrics`).
    #[serde(default)]
    pub admin: AdminSettings,
}

/// The admin HTTP port beside the gRPC one: `GET /metrics` in the Prometheus
/// text format. One per process: the all-in-one binary serves it on profile's
/// settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AdminSettings {
    pub enabled: bool,
    /// Empty: the gRPC host (`service.host`).
    pub host: String,
    /// Defaults: profile 9451, interactions 9452, segmentation 9453, winback 9454.
    pub port: u16,
    /// How often the pipeline gauges are sampled for the OTLP push (a scrape
    /// samples them itself).
    pub sample_secs: u64,
}

impl Default for AdminSettings {
    fn default() -> Self {
        AdminSettings {
            enabled: true,
            host: String::new(),
            port: 9450,
            sample_secs: 15,
        }
    }
}

/// The default admin port of a service (9450 for anything unnamed here).
pub fn default_admin_port(service: &str) -> u16 {
    match service {
        "profile" => 9451,
        "interactions" => 9452,
        "segmentation" => 9453,
        "winback" => 9454,
        _ => 9450,
    }
}

/// The audit trail's retention: records older than `retention_days` (0: kept
/// forever) are deleted every `sweep_interval_secs` (0: never swept). 400 days
/// keep a full year and its year-end review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuditSettings {
    pub retention_days: u32,
    pub sweep_interval_secs: u64,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            retention_days: 400,
            sweep_interval_secs: 3600,
        }
    }
}

/// Whether a channel's marketing needs a customer's recorded consent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentPolicy {
    /// Only customers who granted consent for the channel are contacted
    /// (GDPR/ePrivacy, PIPL for e-mail and SMS marketing).
    OptIn,
    /// Everyone is contacted except customers who withdrew consent.
    OptOut,
}

/// The consent policy of each contact channel a win-back campaign can use
/// (`opt_in` or `opt_out`; e.g. `RETENTION_CONSENT__EMAIL=opt_out`). Every
/// electronic and phone marketing channel defaults to `opt_in`; post and in
/// person, where the law generally allows marketing until the customer objects,
/// to `opt_out`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConsentSettings {
    pub email: ConsentPolicy,
    pub sms: ConsentPolicy,
    pub phone: ConsentPolicy,
    pub push: ConsentPolicy,
    pub post: ConsentPolicy,
    pub in_person: ConsentPolicy,
}

impl Default for ConsentSettings {
    fn default() -> Self {
        ConsentSettings {
            email: ConsentPolicy::OptIn,
            sms: ConsentPolicy::OptIn,
            phone: ConsentPolicy::OptIn,
            push: ConsentPolicy::OptIn,
            post: ConsentPolicy::OptOut,
            in_person: ConsentPolicy::OptOut,
        }
    }
}

impl ConsentSettings {
    /// The same policy on every channel (tests and single-policy deployments).
    pub fn all(policy: ConsentPolicy) -> Self {
        ConsentSettings {
            email: policy,
            sms: policy,
            phone: policy,
            push: policy,
            post: policy,
            in_person: policy,
        }
    }
}

/// Keys for PII at rest. Each is base64 of random bytes (`openssl rand -base64 32`).
/// Empty keys fall back to built-in development keys, which the profile service
/// accepts only while `auth.allow_dev_secret` is true.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PiiSettings {
    /// AES-256-GCM key (32 bytes) new values are encrypted with.
    pub encryption_key: String,
    /// Short name of `encryption_key`, stored with every value so that values
    /// written under an older key stay readable after a rotation.
    pub key_id: String,
    /// Older keys still read but no longer written: `id=base64,id=base64`.
    pub retired_keys: String,
    /// HMAC-SHA256 key (at least 32 bytes) of the e-mail lookup hash. Changing it
    /// makes stored lookup hashes unfindable until the rows are written again.
    pub lookup_key: String,
}

/// How the win-back service reaches segmentation and runs its schedules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WinbackSettings {
    /// gRPC endpoint of the segmentation service (targets and insights).
    pub segmentation_endpoint: String,
    /// Budget of one call to segmentation when the caller's own deadline is longer.
    pub call_timeout_ms: u64,
    /// Most candidates a launch reads from segmentation; a larger target is refused
    /// rather than silently cut.
    pub max_candidates: usize,
    /// Seconds between checks for scheduled campaigns that are due.
    pub schedule_check_secs: u64,
}

impl Default for WinbackSettings {
    fn default() -> Self {
        WinbackSettings {
            segmentation_endpoint: "http://127.0.0.1:50053".into(),
            call_timeout_ms: 5_000,
            max_candidates: 200_000,
            schedule_check_secs: 30,
        }
    }
}

/// Cut-offs, weights and horizons of segmentation's models (DOMAIN §3-§5): the seed
/// documents' numbers are the defaults, never hard-wired.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScoringSettings {
    /// Minutes between scheduled full scoring runs; 0 runs only on RunScoring.
    /// One run per interval for the whole deployment, whichever replica ticks first.
    pub interval_minutes: u64,
    /// Seconds between scheduled runs; when not 0 it replaces `interval_minutes`
    /// (sub-minute schedules are for tests).
    pub interval_secs: u64,
    /// Customers per scoring page: the unit of work segmentation replicas claim.
    pub page_size: u64,
    /// How long a run's coordinator holds the run without renewing (it renews at a
    /// third of it); a run whose lease ran out before its pages were written is
    /// failed by any replica.
    pub run_lease_secs: u64,
    /// How long a replica holds a claimed page before another may take it over;
    /// longer than a page takes to score.
    pub page_lease_secs: u64,
    /// How often every replica looks for pages of a run to claim.
    pub worker_poll_ms: u64,
    /// Pages a replica scores at once (on PostgreSQL; SQLite scores one): while
    /// one page's writes wait on the database, the next is scored.
    pub workers: u64,
    /// Horizon of the expected-purchases figure, in weeks.
    pub horizon_weeks: f64,
    /// Most customers the BG/NBD and Gamma-Gamma fits use (a systematic sample
    /// beyond that); cut-offs and scores always cover everyone.
    pub fit_sample: usize,
    /// Discount rate per year and horizon of the predicted CLV.
    pub annual_discount: f64,
    pub clv_horizon_months: u32,
    /// Value pyramid: shares of customers by margin rank; margin at or below
    /// `lead_max_margin_minor` is lead.
    pub platinum_share: f64,
    pub gold_share: f64,
    pub lead_max_margin_minor: i64,
    /// Management tiers by margin rank; at most `one_off_max_purchases` is one-off.
    pub key_share: f64,
    pub suitable_share: f64,
    pub one_off_max_purchases: u32,
    /// P(alive) at or above: low risk, then medium, then high; below: critical.
    pub low_risk_min_p_alive: f64,
    pub medium_risk_min_p_alive: f64,
    pub high_risk_min_p_alive: f64,
    /// Key-account matrix weights (attractiveness: profit, growth, size; relative
    /// strength: share of wallet, loyalty) and the high/low threshold.
    pub matrix_profit_weight: f64,
    pub matrix_growth_weight: f64,
    pub matrix_size_weight: f64,
    pub matrix_wallet_weight: f64,
    pub matrix_loyalty_weight: f64,
    pub matrix_threshold: f64,
    /// Purchase occasions: the orders of one customer in one period (`day` or
    /// `week`, Monday to Sunday) of the calendar in `time_zone` (an IANA name,
    /// e.g. `Asia/Shanghai`) are one occasion for the BG/NBD and Gamma-Gamma
    /// models. Changing either re-derives the occasions at the next scoring run.
    pub time_zone: String,
    pub occasion_period: String,
}

impl Default for ScoringSettings {
    fn default() -> Self {
        ScoringSettings {
            interval_minutes: 24 * 60,
            interval_secs: 0,
            page_size: 1000,
            run_lease_secs: 30,
            page_lease_secs: 120,
            worker_poll_ms: 1000,
            workers: 3,
            horizon_weeks: 52.0,
            fit_sample: 250_000,
            annual_discount: 0.10,
            clv_horizon_months: 36,
            platinum_share: 0.05,
            gold_share: 0.15,
            lead_max_margin_minor: 0,
            key_share: 0.05,
            suitable_share: 0.15,
            one_off_max_purchases: 1,
            low_risk_min_p_alive: 0.7,
            medium_risk_min_p_alive: 0.4,
            high_risk_min_p_alive: 0.2,
            matrix_profit_weight: 0.5,
            matrix_growth_weight: 0.25,
            matrix_size_weight: 0.25,
            matrix_wallet_weight: 0.6,
            matrix_loyalty_weight: 0.4,
            matrix_threshold: 0.5,
            time_zone: "UTC".into(),
            occasion_period: "day".into(),
        }
    }
}

impl ScoringSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        let share = |v: f64| (0.0..=1.0).contains(&v);
        let checks = [
            (
                share(self.platinum_share)
                    && share(self.gold_share)
                    && self.platinum_share + self.gold_share <= 1.0,
                "scoring.platinum_share and gold_share must be shares summing to at most 1",
            ),
            (
                share(self.key_share)
                    && share(self.suitable_share)
                    && self.key_share + self.suitable_share <= 1.0,
                "scoring.key_share and suitable_share must be shares summing to at most 1",
            ),
            (
                self.low_risk_min_p_alive >= self.medium_risk_min_p_alive
                    && self.medium_risk_min_p_alive >= self.high_risk_min_p_alive
                    && share(self.low_risk_min_p_alive)
                    && share(self.high_risk_min_p_alive),
                "scoring risk thresholds must be probabilities, low >= medium >= high",
            ),
            (
                self.annual_discount >= 0.0 && self.horizon_weeks > 0.0,
                "scoring.annual_discount must be >= 0 and horizon_weeks > 0",
            ),
            (
                [
                    self.matrix_profit_weight,
                    self.matrix_growth_weight,
                    self.matrix_size_weight,
                    self.matrix_wallet_weight,
                    self.matrix_loyalty_weight,
                    self.matrix_threshold,
                ]
                .into_iter()
                .all(share),
                "scoring matrix weights and threshold must be in 0..=1",
            ),
            (
                self.time_zone.parse::<chrono_tz::Tz>().is_ok(),
                "scoring.time_zone must be an IANA time zone name such as UTC or Asia/Shanghai",
            ),
            (
                matches!(self.occasion_period.as_str(), "day" | "week"),
                "scoring.occasion_period must be day or week",
            ),
            (
                self.page_size > 0
                    && self.run_lease_secs > 0
                    && self.page_lease_secs > 0
                    && self.worker_poll_ms > 0
                    && self.workers > 0,
                "scoring.page_size, run_lease_secs, page_lease_secs, worker_poll_ms and workers must be > 0",
            ),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, msg)) => Err(ConfigError::Invalid((*msg).into())),
            None => Ok(()),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceSettings {
    /// Short context name: "profile", "interactions", ...
    pub name: String,
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerSettings {
    /// Upper bound for one unary call; a client's shorter `grpc-timeout` wins.
    pub request_timeout_ms: u64,
    pub max_message_bytes: usize,
    pub concurrency_per_connection: usize,
    pub max_concurrent_streams: u32,
    pub keepalive_interval_ms: u64,
    pub keepalive_timeout_ms: u64,
    /// Kept below Kubernetes' 30 s termination grace period.
    pub drain_timeout_ms: u64,
    /// Calls a second one authenticated caller (token subject) may make on
    /// average, per replica; past it RESOURCE_EXHAUSTED. Zero turns the limit off.
    #[serde(default = "default_rate_limit")]
    pub rate_limit_per_sec: u32,
    /// Calls a caller may make at once above its rate (the token bucket's size).
    #[serde(default = "default_rate_burst")]
    pub rate_limit_burst: u32,
    /// TLS on the gRPC listener; no certificate: plaintext (embedded mode, or a
    /// mesh terminating TLS in front of the pod).
    #[serde(default)]
    pub tls: ServerTlsSettings,
}

/// The listener's certificate, and for mutual TLS the CA clients must present a
/// certificate from. Paths to PEM files, read at startup.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerTlsSettings {
    /// Certificate chain the server presents; with `key_path`, turns TLS on.
    pub cert_path: String,
    pub key_path: String,
    /// CA bundle client certificates must chain to. Set: mutual TLS, and a client
    /// without such a certificate is refused during the handshake.
    pub client_ca_path: String,
}

impl ServerTlsSettings {
    pub fn enabled(&self) -> bool {
        !self.cert_path.is_empty()
    }
}

/// How this service calls its peers (win-back calls segmentation) over TLS.
/// Used for `https://` endpoints; an `http://` endpoint stays plaintext.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PeerTlsSettings {
    /// CA bundle the peer's server certificate must chain to.
    pub ca_path: String,
    /// The certificate and key this service presents to peers that require mutual
    /// TLS. Empty: no client certificate.
    pub cert_path: String,
    pub key_path: String,
    /// The name the peer's certificate must carry; empty: the endpoint's host.
    pub server_name: String,
}

fn default_rate_limit() -> u32 {
    2_000
}

fn default_rate_burst() -> u32 {
    4_000
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatabaseSettings {
    /// `postgres://...` or `sqlite://path?mode=rwc`.
    pub url: String,
    pub max_connections: u32,
    pub min_connections: u32,
    pub connect_timeout_ms: u64,
    pub acquire_timeout_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RedisSettings {
    /// Empty means no Redis: in-process cache and event bus (embedded mode).
    pub url: String,
    /// Prefix for every key and stream, so tenants and tests can share one server.
    /// Empty (the default) keeps the contract's stream names, `retention.<ctx>.events`.
    pub namespace: String,
    pub connect_timeout_ms: u64,
    pub response_timeout_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CacheSettings {
    pub ttl_secs: u64,
    pub local_capacity: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventSettings {
    pub relay_interval_ms: u64,
    pub relay_batch_size: u64,
    /// Pending stream entries idle longer than this are claimed from dead consumers.
    pub claim_idle_ms: u64,
    /// Deliveries after which a message goes to the dead-letter stream.
    pub max_deliveries: u64,
    /// Events of different customers a consumer handles at once; one customer's
    /// events are always handled in stream order.
    pub consumer_concurrency: u64,
    /// Entries a stream holds that some declared consumer group has not yet
    /// acknowledged: the relay publishes only while the slowest group is within
    /// this bound of the head (and Redis trims only what every group acknowledged).
    /// Streams without declared groups are capped at about this length instead.
    pub stream_max_len: u64,
    /// The consumer groups of each producer's stream, by producing context
    /// (`profile` for `retention.profile.events`), as comma-separated group
    /// names. The producer creates them, so events published before a consumer
    /// first starts wait for it; a group left out holds nothing back.
    #[serde(default = "default_consumer_groups")]
    pub consumer_groups: std::collections::BTreeMap<String, String>,
}

/// Who consumes whom in the suite (DESIGN §4).
fn default_consumer_groups() -> std::collections::BTreeMap<String, String> {
    [
        ("profile", "interactions,segmentation,winback"),
        ("interactions", "segmentation,winback"),
        ("segmentation", "interactions,winback"),
        ("winback", ""),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

impl EventSettings {
    /// The declared consumer groups of `stream` (`retention.<ctx>.events`).
    pub fn groups_of(&self, stream: &str) -> Vec<String> {
        let ctx = stream
            .strip_prefix("retention.")
            .and_then(|s| s.strip_suffix(".events"))
            .unwrap_or(stream);
        self.consumer_groups
            .get(ctx)
            .map(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|g| !g.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every stream with declared groups, and its groups.
    pub fn declared_groups(&self) -> Vec<(String, Vec<String>)> {
        self.consumer_groups
            .keys()
            .map(|ctx| format!("retention.{ctx}.events"))
            .map(|stream| {
                let groups = self.groups_of(&stream);
                (stream, groups)
            })
            .filter(|(_, groups)| !groups.is_empty())
            .collect()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthSettings {
    /// HS256 secret for bearer tokens.
    pub jwt_secret: String,
    pub issuer: String,
    pub audience: String,
    /// Embedded/dev mode: accept the built-in development secret.
    pub allow_dev_secret: bool,
    /// A JWKS file of the issuer's public keys: tokens carrying a `kid` are
    /// verified with that key (RS*, PS*, ES256/384, EdDSA). Empty: HS256 only.
    #[serde(default)]
    pub jwks_path: String,
    /// How often the JWKS file is read again, so keys rotate without a restart.
    #[serde(default = "default_jwks_reload")]
    pub jwks_reload_secs: u64,
}

fn default_jwks_reload() -> u64 {
    30
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TelemetrySettings {
    /// OTLP/gRPC collector endpoint; empty disables export.
    pub otlp_endpoint: String,
    /// `tracing` env-filter directive, e.g. "info,sqlx=warn".
    pub log_filter: String,
    /// "pretty", "compact" or "json".
    pub log_format: String,
}

impl Settings {
    /// Loads settings for `service` with its default port. The file comes from
    /// `RETENTION_CONFIG_FILE` if set, else `config/<service>.toml` if it exists.
    pub fn load(service: &str, default_port: u16) -> Result<Self, ConfigError> {
        let file = std::env::var("RETENTION_CONFIG_FILE")
            .map(PathBuf::from)
            .ok()
            .or_else(|| {
                let p = PathBuf::from(format!("config/{service}.toml"));
                p.exists().then_some(p)
            });
        Self::load_from(service, default_port, file, std::env::vars())
    }

    /// The same layering with explicit inputs (tests pass their own environment).
    pub fn load_from(
        service: &str,
        default_port: u16,
        file: Option<PathBuf>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let defaults = Self::defaults(service, default_port);
        let mut builder =
            config::Config::builder().add_source(config::Config::try_from(&defaults)?);
        if let Some(path) = file {
            builder = builder.add_source(config::File::from(path).required(true));
        }
        let env: std::collections::HashMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("RETENTION_") && k != "RETENTION_CONFIG_FILE")
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("RETENTION")
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .source(Some(env)),
        );
        let settings: Settings = builder.build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Embedded defaults: SQLite file under `data/`, no Redis, traces to stdout.
    pub fn defaults(service: &str, port: u16) -> Self {
        Settings {
            service: ServiceSettings {
                name: service.to_string(),
                host: "127.0.0.1".into(),
                port,
            },
            server: ServerSettings {
                request_timeout_ms: 10_000,
                max_message_bytes: 4 * 1024 * 1024,
                concurrency_per_connection: 256,
                max_concurrent_streams: 256,
                keepalive_interval_ms: 30_000,
                keepalive_timeout_ms: 10_000,
                drain_timeout_ms: 20_000,
                rate_limit_per_sec: default_rate_limit(),
                rate_limit_burst: default_rate_burst(),
                tls: ServerTlsSettings::default(),
            },
            database: DatabaseSettings {
                url: format!("sqlite://data/{service}.sqlite?mode=rwc"),
                max_connections: 16,
                min_connections: 1,
                connect_timeout_ms: 3_000,
                acquire_timeout_ms: 3_000,
            },
            redis: RedisSettings {
                url: String::new(),
                namespace: String::new(),
                connect_timeout_ms: 250,
                response_timeout_ms: 250,
            },
            cache: CacheSettings {
                ttl_secs: 300,
                local_capacity: 10_000,
            },
            events: EventSettings {
                relay_interval_ms: 100,
                relay_batch_size: 500,
                claim_idle_ms: 30_000,
                max_deliveries: 10,
                consumer_concurrency: 8,
                stream_max_len: 1_000_000,
                consumer_groups: default_consumer_groups(),
            },
            auth: AuthSettings {
                jwt_secret: DEV_JWT_SECRET.into(),
                issuer: "retention-suite".into(),
                audience: "retention-suite".into(),
                allow_dev_secret: true,
                jwks_path: String::new(),
                jwks_reload_secs: default_jwks_reload(),
            },
            telemetry: TelemetrySettings {
                otlp_endpoint: String::new(),
                log_filter: "info,sqlx=warn,sea_orm=warn,h2=warn,tower=warn".into(),
                log_format: "compact".into(),
            },
            scoring: ScoringSettings::default(),
            winback: WinbackSettings::default(),
            peer_tls: PeerTlsSettings::default(),
            pii: PiiSettings::default(),
            consent: ConsentSettings::default(),
            audit: AuditSettings::default(),
            admin: AdminSettings {
                port: default_admin_port(service),
                ..AdminSettings::default()
            },
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.auth.jwt_secret == DEV_JWT_SECRET && !self.auth.allow_dev_secret {
            return Err(ConfigError::Invalid(
                "auth.jwt_secret is the development secret; set RETENTION_AUTH__JWT_SECRET".into(),
            ));
        }
        if self.auth.jwt_secret.len() < 16 {
            return Err(ConfigError::Invalid(
                "auth.jwt_secret must be at least 16 bytes".into(),
            ));
        }
        for (stream, groups) in self.events.declared_groups() {
            if let Some(bad) = groups.iter().find(|g| {
                g.len() > 64
                    || !g.chars().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'
                    })
            }) {
                // The rule BackfillEvents applies to the group it replays for.
                return Err(ConfigError::Invalid(format!(
                    "events.consumer_groups of {stream}: {bad:?} is not a group name (a-z, 0-9, _ and -)"
                )));
            }
        }
        if !matches!(
            self.telemetry.log_format.as_str(),
            "pretty" | "compact" | "json"
        ) {
            return Err(ConfigError::Invalid(format!(
                "telemetry.log_format must be pretty, compact or json, not {:?}",
                self.telemetry.log_format
            )));
        }
        if self.database.url.is_empty() {
            return Err(ConfigError::Invalid("database.url is empty".into()));
        }
        if self.winback.call_timeout_ms == 0 || self.winback.max_candidates == 0 {
            return Err(ConfigError::Invalid(
                "winback.call_timeout_ms and winback.max_candidates must be positive".into(),
            ));
        }
        self.validate_tls()?;
        self.scoring.validate()
    }

    fn validate_tls(&self) -> Result<(), ConfigError> {
        let t = &self.server.tls;
        if t.cert_path.is_empty() != t.key_path.is_empty() {
            return Err(ConfigError::Invalid(
                "server.tls.cert_path and server.tls.key_path are set together".into(),
            ));
        }
        if !t.client_ca_path.is_empty() && t.cert_path.is_empty() {
            return Err(ConfigError::Invalid(
                "server.tls.client_ca_path (mutual TLS) needs server.tls.cert_path".into(),
            ));
        }
        let p = &self.peer_tls;
        if p.cert_path.is_empty() != p.key_path.is_empty() {
            return Err(ConfigError::Invalid(
                "peer_tls.cert_path and peer_tls.key_path are set together".into(),
            ));
        }
        let endpoint = &self.winback.segmentation_endpoint;
        if endpoint.starts_with("https://") && p.ca_path.is_empty() {
            return Err(ConfigError::Invalid(format!(
                "winback.segmentation_endpoint {endpoint} is https: set peer_tls.ca_path"
            )));
        }
        Ok(())
    }

    pub fn listen_addr(&self) -> String {
        format!("{}:{}", self.service.host, self.service.port)
    }

    /// The admin port's address, `None` when it is disabled.
    pub fn admin_addr(&self) -> Option<String> {
        let host = if self.admin.host.is_empty() {
            &self.service.host
        } else {
            &self.admin.host
        };
        self.admin
            .enabled
            .then(|| format!("{host}:{}", self.admin.port))
    }

    pub fn redis_url(&self) -> Option<&str> {
        (!self.redis.url.is_empty()).then_some(self.redis.url.as_str())
    }
}

impl ServerSettings {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.drain_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn consumer_groups_are_declared_per_stream_and_overridable() {
        let s = Settings::load_from("profile", 50051, None, env(&[])).unwrap();
        assert_eq!(
            s.events.groups_of("retention.profile.events"),
            vec!["interactions", "segmentation", "winback"]
        );
        assert!(s.events.groups_of("retention.winback.events").is_empty());
        let streams: Vec<String> = s
            .events
            .declared_groups()
            .into_iter()
            .map(|(stream, _)| stream)
            .collect();
        assert_eq!(
            streams,
            vec![
                "retention.interactions.events",
                "retention.profile.events",
                "retention.segmentation.events"
            ]
        );
        // Leaving a group out of the list releases its hold on the stream.
        let s = Settings::load_from(
            "profile",
            50051,
            None,
            env(&[(
                "RETENTION_EVENTS__CONSUMER_GROUPS__PROFILE",
                "segmentation, audit",
            )]),
        )
        .unwrap();
        assert_eq!(
            s.events.groups_of("retention.profile.events"),
            vec!["segmentation", "audit"]
        );
        assert_eq!(
            s.events.groups_of("retention.interactions.events"),
            vec!["segmentation", "winback"]
        );
        let err = Settings::load_from(
            "profile",
            50051,
            None,
            env(&[("RETENTION_EVENTS__CONSUMER_GROUPS__PROFILE", "Segmentation")]),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("\"Segmentation\" is not a group name"),
            "{err}"
        );
    }

    #[test]
    fn defaults_are_the_embedded_mode() {
        let s = Settings::load_from("profile", 50051, None, env(&[])).unwrap();
        assert_eq!(s.service.port, 50051);
        assert_eq!(s.database.url, "sqlite://data/profile.sqlite?mode=rwc");
        assert!(s.redis_url().is_none());
        assert!(s.telemetry.otlp_endpoint.is_empty());
        assert_eq!(s.admin_addr().as_deref(), Some("127.0.0.1:9451"));
    }

    #[test]
    fn the_admin_port_follows_the_grpc_host_and_can_be_turned_off() {
        let s = Settings::load_from(
            "winback",
            50054,
            None,
            env(&[("RETENTION_SERVICE__HOST", "0.0.0.0")]),
        )
        .unwrap();
        assert_eq!(s.admin_addr().as_deref(), Some("0.0.0.0:9454"));
        let off = Settings::load_from(
            "winback",
            50054,
            None,
            env(&[("RETENTION_ADMIN__ENABLED", "false")]),
        )
        .unwrap();
        assert_eq!(off.admin_addr(), None);
    }

    #[test]
    fn file_overrides_defaults_and_env_overrides_file() {
        let dir = std::env::temp_dir().join(format!("retention-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("profile.toml");
        std::fs::write(
            &file,
            "[database]\nurl = \"postgres://file/db\"\nmax_connections = 7\n[service]\nport = 6000\n",
        )
        .unwrap();
        let s = Settings::load_from(
            "profile",
            50051,
            Some(file.clone()),
            env(&[
                ("RETENTION_DATABASE__URL", "postgres://env/db"),
                ("RETENTION_REDIS__URL", "redis://127.0.0.1:6379"),
                ("OTHER_VAR", "ignored"),
            ]),
        )
        .unwrap();
        assert_eq!(s.database.url, "postgres://env/db", "env beats file");
        assert_eq!(s.database.max_connections, 7, "file beats defaults");
        assert_eq!(s.service.port, 6000);
        assert_eq!(s.redis_url(), Some("redis://127.0.0.1:6379"));
        std::fs::remove_file(file).ok();
    }

    #[test]
    fn env_values_are_parsed_to_their_types() {
        let s = Settings::load_from(
            "profile",
            50051,
            None,
            env(&[("RETENTION_SERVER__REQUEST_TIMEOUT_MS", "1500")]),
        )
        .unwrap();
        assert_eq!(s.server.request_timeout(), Duration::from_millis(1500));
    }

    #[test]
    fn scoring_cut_offs_are_configurable_and_checked() {
        let s = Settings::load_from(
            "segmentation",
            50053,
            None,
            env(&[
                ("RETENTION_SCORING__PLATINUM_SHARE", "0.1"),
                ("RETENTION_SCORING__INTERVAL_MINUTES", "0"),
            ]),
        )
        .unwrap();
        assert_eq!(s.scoring.platinum_share, 0.1);
        assert_eq!(s.scoring.interval_minutes, 0);
        assert_eq!(s.scoring.gold_share, 0.15, "the rest keeps its defaults");
        let err = Settings::load_from(
            "segmentation",
            50053,
            None,
            env(&[("RETENTION_SCORING__GOLD_SHARE", "0.99")]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("gold_share"), "{err}");
    }

    #[test]
    fn scoring_leases_are_configurable_and_checked() {
        let s = Settings::load_from(
            "segmentation",
            50053,
            None,
            env(&[
                ("RETENTION_SCORING__PAGE_SIZE", "100"),
                ("RETENTION_SCORING__PAGE_LEASE_SECS", "3"),
                ("RETENTION_SCORING__WORKERS", "6"),
            ]),
        )
        .unwrap();
        assert_eq!(s.scoring.page_size, 100);
        assert_eq!(s.scoring.workers, 6);
        assert_eq!(s.scoring.page_lease_secs, 3);
        assert_eq!(s.scoring.run_lease_secs, 30, "the rest keeps its defaults");
        assert_eq!(s.scoring.worker_poll_ms, 1000);
        let err = Settings::load_from(
            "segmentation",
            50053,
            None,
            env(&[("RETENTION_SCORING__RUN_LEASE_SECS", "0")]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("run_lease_secs"), "{err}");
    }

    #[test]
    fn dev_secret_refused_outside_dev_mode() {
        let err = Settings::load_from(
            "profile",
            50051,
            None,
            env(&[("RETENTION_AUTH__ALLOW_DEV_SECRET", "false")]),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("RETENTION_AUTH__JWT_SECRET"),
            "{err}"
        );
    }

    #[test]
    fn tls_settings_come_in_whole_sets() {
        let ok = Settings::load_from(
            "segmentation",
            50053,
            None,
            env(&[
                ("RETENTION_SERVER__TLS__CERT_PATH", "/tls/server.pem"),
                ("RETENTION_SERVER__TLS__KEY_PATH", "/tls/server.key"),
                ("RETENTION_SERVER__TLS__CLIENT_CA_PATH", "/tls/ca.pem"),
            ]),
        )
        .unwrap();
        assert!(ok.server.tls.enabled());
        assert_eq!(ok.server.tls.client_ca_path, "/tls/ca.pem");
        assert!(!Settings::defaults("profile", 1).server.tls.enabled());
        for (pairs, expected) in [
            (
                vec![("RETENTION_SERVER__TLS__CERT_PATH", "/tls/server.pem")],
                "server.tls.cert_path and server.tls.key_path",
            ),
            (
                vec![("RETENTION_SERVER__TLS__CLIENT_CA_PATH", "/tls/ca.pem")],
                "needs server.tls.cert_path",
            ),
            (
                vec![("RETENTION_PEER_TLS__KEY_PATH", "/tls/client.key")],
                "peer_tls.cert_path and peer_tls.key_path",
            ),
            (
                vec![(
                    "RETENTION_WINBACK__SEGMENTATION_ENDPOINT",
                    "https://segmentation:50053",
                )],
                "set peer_tls.ca_path",
            ),
        ] {
            let err = Settings::load_from("winback", 50054, None, env(&pairs)).unwrap_err();
            assert!(err.to_string().contains(expected), "{pairs:?}: {err}");
        }
    }

    #[test]
    fn consent_is_opt_in_for_marketing_channels_by_default_and_overridable() {
        let s = Settings::load_from("winback", 50054, None, env(&[])).unwrap();
        assert_eq!(s.consent, ConsentSettings::default());
        for policy in [
            s.consent.email,
            s.consent.sms,
            s.consent.phone,
            s.consent.push,
        ] {
            assert_eq!(policy, ConsentPolicy::OptIn);
        }
        assert_eq!(s.consent.post, ConsentPolicy::OptOut);
        assert_eq!(s.consent.in_person, ConsentPolicy::OptOut);

        let dir = std::env::temp_dir().join(format!("retention-consent-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("winback.toml");
        std::fs::write(&file, "[consent]\nsms = \"opt_out\"\npost = \"opt_in\"\n").unwrap();
        let s = Settings::load_from(
            "winback",
            50054,
            Some(file.clone()),
            env(&[("RETENTION_CONSENT__EMAIL", "opt_out")]),
        )
        .unwrap();
        std::fs::remove_file(file).ok();
        assert_eq!(
            s.consent.email,
            ConsentPolicy::OptOut,
            "from the environment"
        );
        assert_eq!(s.consent.sms, ConsentPolicy::OptOut, "from the file");
        assert_eq!(s.consent.post, ConsentPolicy::OptIn, "from the file");
        assert_eq!(
            s.consent.phone,
            ConsentPolicy::OptIn,
            "the rest keeps its defaults"
        );

        let err = Settings::load_from(
            "winback",
            50054,
            None,
            env(&[("RETENTION_CONSENT__PUSH", "maybe")]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("maybe"), "{err}");
    }

    #[test]
    fn bad_values_are_clear_errors() {
        let err = Settings::load_from(
            "profile",
            50051,
            None,
            env(&[("RETENTION_SERVICE__PORT", "not-a-port")]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("port"), "{err}");
    }
}
