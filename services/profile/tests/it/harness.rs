//! spawn_app: a profile service per test.

use retention_config::Settings;
use retention_proto::common::Money;
use retention_proto::profile as pb;
use retention_proto::profile::customer_profile_service_client::CustomerProfileServiceClient;
use retention_testkit::{Backend, SpawnedService, TestDb};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use tonic::Request;
use tonic::transport::Channel;

pub const ALL_SCOPES: &[&str] = &["profile.read", "profile.write", "profile.admin", "pii.read"];

pub struct TestApp {
    pub settings: Settings,
    pub client: CustomerProfileServiceClient<Channel>,
    pub service: Option<SpawnedService>,
    /// Kept alive so the database is dropped after the test.
    _db: TestDb,
    token: String,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with(backend, true, |_| {}).await
    }

    pub async fn spawn_with(
        backend: Backend,
        with_redis: bool,
        tweak: impl FnOnce(&mut Settings),
    ) -> TestApp {
        let db = TestDb::new(backend).await.expect("test database");
        let mut settings = retention_testkit::test_settings("profile", &db, with_redis);
        tweak(&mut settings);
        let run_settings = settings.clone();
        let service = SpawnedService::spawn(move |listener, stop| async move {
            retention_profile::run(run_settings, listener, async move {
                let _ = stop.await;
            })
            .await
            .map_err(anyhow::Error::from)
        })
        .await
        .expect("spawn");
        let channel = service.channel().await.expect("channel");
        let token = retention_testkit::mint_token(&settings, ALL_SCOPES);
        TestApp {
            client: CustomerProfileServiceClient::new(channel),
            service: Some(service),
            settings,
            _db: db,
            token,
        }
    }

    /// A request carrying a token with every scope.
    pub fn req<T>(&self, msg: T) -> Request<T> {
        retention_testkit::with_token(msg, &self.token)
    }

    pub fn req_scopes<T>(&self, msg: T, scopes: &[&str]) -> Request<T> {
        retention_testkit::with_token(msg, &retention_testkit::mint_token(&self.settings, scopes))
    }

    pub async fn database(&self) -> DatabaseConnection {
        sea_orm::Database::connect(self.settings.database.url.as_str())
            .await
            .expect("connect to test db")
    }

    /// Rows of a scalar SQL query, as strings (both backends).
    pub async fn count(&self, sql: &str) -> i64 {
        let db = self.database().await;
        let row = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                sql.to_string(),
            ))
            .await
            .expect("query")
            .expect("row");
        row.try_get_by_index::<i64>(0).expect("count")
    }

    pub async fn outbox_count(&self, event_type: &str) -> i64 {
        self.count(&format!(
            "SELECT COUNT(*) FROM outbox_events WHERE event_type = 'retention.profile.v1.{event_type}'"
        ))
        .await
    }

    pub async fn create(&mut self, name: &str) -> pb::Customer {
        let req = self.req(pb::CreateCustomerRequest {
            customer: Some(customer(name)),
            request_id: String::new(),
        });
        self.client
            .create_customer(req)
            .await
            .expect("create")
            .into_inner()
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.service.take() {
            s.stop().await.expect("clean shutdown");
        }
    }
}

pub fn customer(name: &str) -> pb::Customer {
    pb::Customer {
        kind: pb::CustomerKind::Individual as i32,
        display_name: name.to_string(),
        email: format!("{}@example.com", name.to_lowercase().replace(' ', ".")),
        phone: "+86 138 0013 8000".into(),
        tags: vec!["vip".into()],
        demographics: Some(pb::Demographics {
            region: "Shanghai".into(),
            birth_year: Some(1988),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn cny(minor: i64) -> Option<Money> {
    Some(Money {
        currency_code: "CNY".into(),
        minor_units: minor,
    })
}

pub fn purchase(customer: &str, order: &str, amount: i64) -> pb::Purchase {
    pb::Purchase {
        customer: customer.to_string(),
        order_id: order.to_string(),
        occur_time: Some(prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        }),
        amount: cny(amount),
        gross_margin: cny(amount / 4),
        discount: cny(0),
        product_category: "tea".into(),
        channel: "store".into(),
        ..Default::default()
    }
}

/// Field names in a status' BadRequest details.
pub fn violated_fields(status: &tonic::Status) -> Vec<String> {
    retention_errors::field_violations(status)
        .into_iter()
        .map(|(f, _)| f)
        .collect()
}

/// Runs a test body on PostgreSQL and on SQLite.
#[macro_export]
macro_rules! on_both_backends {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test]
            async fn postgres() {
                super::$body(retention_testkit::Backend::Postgres).await
            }
            #[tokio::test]
            async fn sqlite() {
                super::$body(retention_testkit::Backend::Sqlite).await
            }
        }
    };
}
