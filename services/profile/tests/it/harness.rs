//! spawn_app: a profile service per test.

use retention_config::Settings;
use retention_proto::common::Money;
use retention_proto::profile as pb;
use retention_proto::profile::customer_profile_service_client::CustomerProfileServiceClient;
use retention_testkit::{Backend, SpawnedService, TestService};
use sea_orm::DatabaseConnection;
use tonic::Request;
use tonic::transport::Channel;

pub const ALL_SCOPES: &[&str] = &["profile.read", "profile.write", "profile.admin", "pii.read"];

pub struct TestApp {
    pub settings: Settings,
    pub client: CustomerProfileServiceClient<Channel>,
    pub service: Option<SpawnedService>,
    inner: TestService,
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
        let mut inner = TestService::spawn(
            "profile",
            backend,
            with_redis,
            tweak,
            |settings, listener, stop| {
                retention_profile::run(settings, listener, async move {
                    let _ = stop.await;
                })
            },
        )
        .await
        .expect("spawn profile");
        TestApp {
            settings: inner.settings.clone(),
            client: CustomerProfileServiceClient::new(inner.channel.clone()),
            service: inner.service.take(),
            inner,
        }
    }

    /// A request carrying a token with every scope.
    pub fn req<T>(&self, msg: T) -> Request<T> {
        self.inner.req(msg, ALL_SCOPES)
    }

    pub fn req_scopes<T>(&self, msg: T, scopes: &[&str]) -> Request<T> {
        self.inner.req(msg, scopes)
    }

    pub async fn database(&self) -> DatabaseConnection {
        self.inner.database().await.expect("connect to test db")
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.inner.count(sql).await.expect("count")
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

    /// Outbox rows not yet published, once the relay has had up to 10 s to
    /// publish them (it marks a row only after Redis took it).
    pub async fn unpublished_after_relay(&self) -> i64 {
        let sql = "SELECT COUNT(*) FROM outbox_events WHERE published_at IS NULL";
        let mut unpublished = self.count(sql).await;
        for _ in 0..200 {
            if unpublished == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            unpublished = self.count(sql).await;
        }
        unpublished
    }

    /// Merges `merged` into `survivor` (no etag, no request id).
    pub async fn merge(&mut self, survivor: &str, merged: &str) -> pb::Customer {
        let req = self.req(pb::MergeCustomersRequest {
            survivor: survivor.into(),
            merged: merged.into(),
            ..Default::default()
        });
        self.client
            .merge_customers(req)
            .await
            .expect("merge")
            .into_inner()
    }

    /// Erases the customer `name`.
    pub async fn erase(&mut self, name: &str) {
        let req = self.req(pb::EraseCustomerRequest {
            name: name.into(),
            request_id: String::new(),
        });
        self.client.erase_customer(req).await.expect("erase");
    }

    /// Stops the service and starts it again on the same database with `tweak`
    /// applied to its settings (e.g. other keys).
    pub async fn restart_with(&mut self, tweak: impl FnOnce(&mut Settings)) {
        if let Some(s) = self.service.take() {
            s.stop().await.expect("clean shutdown");
        }
        tweak(&mut self.settings);
        let settings = self.settings.clone();
        let service = SpawnedService::spawn(move |listener, stop| async move {
            retention_profile::run(settings, listener, async move {
                let _ = stop.await;
            })
            .await
            .map_err(Into::into)
        })
        .await
        .expect("restart profile");
        let channel = service.channel().await.expect("connect");
        retention_testkit::wait_until_serving(channel.clone())
            .await
            .expect("serving after the restart");
        self.client = CustomerProfileServiceClient::new(channel);
        self.service = Some(service);
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
