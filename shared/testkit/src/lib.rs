//! Test harness shared by every service's integration tests (zero2prod's
//! `spawn_app` pattern): each test gets its own database on the machine's real
//! PostgreSQL (or a SQLite file), its own Redis key namespace, a service bound to a
//! random port, and tokens minted with exactly the scopes it wants.

mod audit;
mod private;

pub use audit::{AuditCapture, AuditRecord};
pub use private::{PrivatePostgres, PrivateRedis};

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use retention_config::{PeerTlsSettings, ServerTlsSettings, Settings};
use sea_orm::{ConnectionTrait, Database};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Admin connection for creating and dropping per-test databases.
pub fn postgres_admin_url() -> String {
    std::env::var("RETENTION_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn redis_url() -> String {
    std::env::var("RETENTION_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A key prefix no other test uses, so tests can share one Redis server.
pub fn unique_namespace() -> String {
    format!("test:{}", uuid::Uuid::new_v4().simple())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// A database that exists for one test and is dropped after it.
pub struct TestDb {
    pub url: String,
    pub backend: Backend,
    pg_name: Option<String>,
    sqlite_dir: Option<std::path::PathBuf>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> anyhow::Result<TestDb> {
        match backend {
            Backend::Postgres => Self::postgres().await,
            Backend::Sqlite => Self::sqlite(),
        }
    }

    /// `CREATE DATABASE` on the local PostgreSQL with a unique name.
    pub async fn postgres() -> anyhow::Result<TestDb> {
        let admin = postgres_admin_url();
        let name = format!("retention_test_{}", uuid::Uuid::new_v4().simple());
        let conn = Database::connect(admin.as_str()).await?;
        conn.execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await?;
        conn.close().await?;
        let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
        Ok(TestDb {
            url: format!("{base}/{name}"),
            backend: Backend::Postgres,
            pg_name: Some(name),
            sqlite_dir: None,
        })
    }

    /// A SQLite file in a fresh temporary directory.
    pub fn sqlite() -> anyhow::Result<TestDb> {
        let dir =
            std::env::temp_dir().join(format!("retention-test-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        Ok(TestDb {
            url: format!("sqlite://{}/db.sqlite?mode=rwc", dir.display()),
            backend: Backend::Sqlite,
            pg_name: None,
            sqlite_dir: Some(dir),
        })
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(dir) = self.sqlite_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
        if let Some(name) = self.pg_name.take() {
            // Drop runs inside the test's runtime; a separate thread with its own
            // runtime can block on the async driver safely.
            let admin = postgres_admin_url();
            let _ = std::thread::spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(async move {
                    if let Ok(conn) = Database::connect(admin.as_str()).await {
                        let _ = conn
                            .execute_unprepared(&format!(
                                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                            ))
                            .await;
                        let _ = conn.close().await;
                    }
                });
            })
            .join();
        }
    }
}

/// Settings for a service under test: the given database, Redis (own namespace)
/// or none, port 0, short timeouts so failures surface fast.
pub fn test_settings(service: &str, db: &TestDb, with_redis: bool) -> Settings {
    let mut s = Settings::defaults(service, 0);
    s.database.url = db.url.clone();
    s.database.max_connections = 8;
    s.redis.namespace = unique_namespace();
    s.redis.url = if with_redis {
        redis_url()
    } else {
        String::new()
    };
    s.events.relay_interval_ms = 20;
    s.telemetry.log_filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
    s
}

/// A bearer token for `settings` carrying exactly `scopes`.
pub fn mint_token(settings: &Settings, scopes: &[&str]) -> String {
    retention_auth::TokenMinter::hs256(
        settings.auth.jwt_secret.as_bytes(),
        &settings.auth.issuer,
        &settings.auth.audience,
    )
    .mint("test-user", scopes, Duration::from_secs(3600))
}

/// Adds `authorization: Bearer <token>` to a request.
pub fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    if let Ok(v) = format!("Bearer {token}").parse() {
        req.metadata_mut().insert("authorization", v);
    }
    req
}

/// The first column of the first row of `sql` on the database at `url`, as a
/// count (a connection of its own, closed after).
pub async fn count_at(url: &str, sql: &str) -> anyhow::Result<i64> {
    let db = Database::connect(url).await?;
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            sql.to_string(),
        ))
        .await?
        .ok_or_else(|| anyhow::anyhow!("no row for {sql}"))?;
    let n = row.try_get_by_index::<i64>(0)?;
    db.close().await?;
    Ok(n)
}

/// A local port nothing listens on (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A file of the test certificates (`fixtures/tls`, made by
/// `scripts/gen-test-certs.sh`): ca.pem, server.pem/key (localhost, 127.0.0.1),
/// client.pem/key, and rogue-ca.pem, rogue-client.pem/key from another CA.
pub fn tls_fixture(name: &str) -> String {
    format!("{}/fixtures/tls/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A listener with the fixture server certificate; `mutual`: clients must show
/// a certificate from the fixture CA.
pub fn fixture_server_tls(mutual: bool) -> ServerTlsSettings {
    ServerTlsSettings {
        cert_path: tls_fixture("server.pem"),
        key_path: tls_fixture("server.key"),
        client_ca_path: if mutual {
            tls_fixture("ca.pem")
        } else {
            String::new()
        },
    }
}

/// A caller trusting the fixture CA and presenting the fixture client certificate.
pub fn fixture_client_tls() -> PeerTlsSettings {
    PeerTlsSettings {
        ca_path: tls_fixture("ca.pem"),
        cert_path: tls_fixture("client.pem"),
        key_path: tls_fixture("client.key"),
        server_name: String::new(),
    }
}

/// A service running in the test's runtime on a random port.
pub struct SpawnedService {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

impl SpawnedService {
    /// Binds 127.0.0.1:0 and runs `run(listener, shutdown)` in the background.
    pub async fn spawn<F, Fut>(run: F) -> anyhow::Result<SpawnedService>
    where
        F: FnOnce(TcpListener, oneshot::Receiver<()>) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel();
        let handle = tokio::spawn(run(listener, rx));
        Ok(SpawnedService {
            addr,
            shutdown: Some(tx),
            handle: Some(handle),
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address for TLS clients: the fixture certificate names localhost.
    pub fn tls_endpoint(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    /// A channel to the service, retried until it accepts connections.
    pub async fn channel(&self) -> anyhow::Result<tonic::transport::Channel> {
        self.connect(tonic::transport::Endpoint::from_shared(self.endpoint())?)
            .await
    }

    /// A TLS channel to the service as a client with `tls`.
    pub async fn tls_channel(
        &self,
        tls: &PeerTlsSettings,
    ) -> anyhow::Result<tonic::transport::Channel> {
        self.connect(retention_server::peer_endpoint(&self.tls_endpoint(), tls)?)
            .await
    }

    async fn connect(
        &self,
        endpoint: tonic::transport::Endpoint,
    ) -> anyhow::Result<tonic::transport::Channel> {
        let endpoint = endpoint
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(30));
        let mut last = None;
        for _ in 0..50 {
            match endpoint.connect().await {
                Ok(ch) => return Ok(ch),
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(anyhow::anyhow!(
            "service at {} never accepted: {last:?}",
            self.addr
        ))
    }

    /// The error the service returned with, if it has already stopped.
    pub async fn exit_error(&mut self) -> Option<anyhow::Error> {
        if !self.handle.as_ref()?.is_finished() {
            return None;
        }
        match self.handle.take()?.await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(panicked) => Some(panicked.into()),
        }
    }

    /// Signals shutdown and waits for the service to return.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.handle.take() {
            Some(h) => h.await?,
            None => Ok(()),
        }
    }
}

impl Drop for SpawnedService {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A service under test: its own database, settings, a running instance on a
/// random port and a channel to it (zero2prod's `spawn_app`).
pub struct TestService {
    pub settings: Settings,
    pub channel: tonic::transport::Channel,
    pub service: Option<SpawnedService>,
    _db: TestDb,
}

impl TestService {
    /// Creates the database, applies `tweak` to the settings, and starts
    /// `run(settings, listener, shutdown)`.
    pub async fn spawn<F, Fut, E>(
        name: &str,
        backend: Backend,
        with_redis: bool,
        tweak: impl FnOnce(&mut Settings),
        run: F,
    ) -> anyhow::Result<TestService>
    where
        F: FnOnce(Settings, TcpListener, oneshot::Receiver<()>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<anyhow::Error>,
    {
        let db = TestDb::new(backend).await?;
        let mut settings = test_settings(name, &db, with_redis);
        tweak(&mut settings);
        let run_settings = settings.clone();
        let mut service = SpawnedService::spawn(move |listener, stop| async move {
            run(run_settings, listener, stop).await.map_err(Into::into)
        })
        .await?;
        // A service under TLS is called as the fixture client (what mutual TLS wants).
        let channel = if settings.server.tls.enabled() {
            service.tls_channel(&fixture_client_tls()).await?
        } else {
            service.channel().await?
        };
        if let Err(never) = wait_until_serving(channel.clone()).await {
            // Say why when the service gave up, rather than only that it never served.
            return Err(match service.exit_error().await {
                Some(e) => e.context("the service stopped before it served"),
                None => never,
            });
        }
        Ok(TestService {
            settings,
            channel,
            service: Some(service),
            _db: db,
        })
    }

    /// [`TestService::spawn`] of service `S` as the host runs it, on `bus` (the
    /// embedded bus services share) or, with `None`, the bus its settings name.
    pub async fn start<S: retention_server::host::Service>(
        backend: Backend,
        with_redis: bool,
        tweak: impl FnOnce(&mut Settings),
        bus: Option<retention_events::EventBus>,
    ) -> anyhow::Result<TestService> {
        TestService::spawn(S::NAME, backend, with_redis, tweak, move |s, l, stop| {
            let stop = async move {
                let _ = stop.await;
            };
            retention_server::host::run::<S>(s, l, stop, bus)
        })
        .await
    }

    /// A request with a token carrying exactly `scopes`.
    pub fn req<T>(&self, msg: T, scopes: &[&str]) -> tonic::Request<T> {
        with_token(msg, &mint_token(&self.settings, scopes))
    }

    /// A direct connection to the service's database, for asserting rows.
    pub async fn database(&self) -> anyhow::Result<sea_orm::DatabaseConnection> {
        Ok(Database::connect(self.settings.database.url.as_str()).await?)
    }

    /// The first column of the first row of `sql`, as a count.
    pub async fn count(&self, sql: &str) -> anyhow::Result<i64> {
        count_at(&self.settings.database.url, sql).await
    }

    pub async fn stop(mut self) -> anyhow::Result<()> {
        match self.service.take() {
            Some(s) => s.stop().await,
            None => Ok(()),
        }
    }
}

/// Waits for health "" SERVING: the port accepts connections before migrations ran.
pub async fn wait_until_serving(channel: tonic::transport::Channel) -> anyhow::Result<()> {
    use tonic_health::pb::health_check_response::ServingStatus;
    let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
    for _ in 0..300 {
        let status = client
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map(|r| r.into_inner().status);
        if status.is_ok_and(|s| s == ServingStatus::Serving as i32) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("service never reported SERVING")
}

/// Runs `async fn body(Backend)` as two tests, on PostgreSQL and on SQLite.
#[macro_export]
macro_rules! on_both_backends {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test]
            async fn postgres() {
                super::$body($crate::Backend::Postgres).await
            }
            #[tokio::test]
            async fn sqlite() {
                super::$body($crate::Backend::Sqlite).await
            }
        }
    };
}

/// An envelope around `msg` with a fresh event id, as another service's outbox
/// would write it.
pub fn envelope<M: prost::Name>(msg: &M) -> retention_proto::common::EventEnvelope {
    retention_proto::common::EventEnvelope {
        event_id: uuid::Uuid::now_v7().to_string(),
        event_type: M::full_name(),
        payload: Some(retention_proto::pack_any(msg)),
        ..Default::default()
    }
}

/// Publishes events onto the Redis streams a service under test consumes, exactly
/// as another service's relay would (same stream key, same entry fields).
pub struct StreamFeeder {
    redis: redis::aio::MultiplexedConnection,
    namespace: String,
    /// Entries published so far.
    pub published: i64,
}

impl StreamFeeder {
    pub async fn connect(settings: &Settings) -> anyhow::Result<StreamFeeder> {
        let client = redis::Client::open(settings.redis.url.as_str())?;
        Ok(StreamFeeder {
            redis: client.get_multiplexed_async_connection().await?,
            namespace: settings.redis.namespace.clone(),
            published: 0,
        })
    }

    pub async fn publish_envelope(
        &mut self,
        stream: &str,
        env: &retention_proto::common::EventEnvelope,
    ) -> anyhow::Result<()> {
        use redis::AsyncCommands;
        let key = retention_events::stream_key(&self.namespace, stream);
        let bytes = prost::Message::encode_to_vec(env);
        let _: String = self
            .redis
            .xadd(
                &key,
                "*",
                &[
                    ("id", env.event_id.as_bytes()),
                    ("type", env.event_type.as_bytes()),
                    ("envelope", bytes.as_slice()),
                ],
            )
            .await?;
        self.published += 1;
        Ok(())
    }

    /// Publishes `msg` in a new envelope and returns the envelope (to redeliver it).
    pub async fn publish<M: prost::Name>(
        &mut self,
        stream: &str,
        msg: &M,
    ) -> anyhow::Result<retention_proto::common::EventEnvelope> {
        let env = envelope(msg);
        self.publish_envelope(stream, &env).await?;
        Ok(env)
    }
}

impl TestService {
    /// The payloads of the service's outbox events of type `M`, in outbox order.
    pub async fn outbox<M: prost::Name + Default>(&self) -> anyhow::Result<Vec<M>> {
        let db = self.database().await?;
        let rows = db
            .query_all_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                format!(
                    "SELECT envelope FROM outbox_events WHERE event_type = '{}' ORDER BY seq",
                    M::full_name()
                ),
            ))
            .await?;
        rows.iter()
            .map(|r| {
                let bytes: Vec<u8> = r.try_get_by_index(0)?;
                let env: retention_proto::common::EventEnvelope =
                    prost::Message::decode(bytes.as_slice())?;
                let payload = env
                    .payload
                    .ok_or_else(|| anyhow::anyhow!("an outbox event without a payload"))?;
                Ok(prost::Message::decode(payload.value.as_slice())?)
            })
            .collect()
    }
}
