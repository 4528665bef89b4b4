//! spawn_app: a profile service per test.

use retention_config::Settings;
use retention_profile::Profile;
use retention_proto::common::Money;
use retention_proto::profile as pb;
use retention_proto::profile::customer_profile_service_client::CustomerProfileServiceClient;
use retention_server::host::HostError;
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
        let mut inner = TestService::start::<Profile>(backend, with_redis, tweak, None)
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
        self.create_with(customer(name)).await
    }

    /// Creates `c` (no request id).
    pub async fn create_with(&mut self, c: pb::Customer) -> pb::Customer {
        let req = self.req(pb::CreateCustomerRequest {
            customer: Some(c),
            request_id: String::new(),
        });
        self.client
            .create_customer(req)
            .await
            .expect("create")
            .into_inner()
    }

    /// Reads the customer `name` with every scope (PII included).
    pub async fn get(&mut self, name: &str) -> pb::Customer {
        let req = self.req(pb::GetCustomerRequest { name: name.into() });
        self.client
            .get_customer(req)
            .await
            .expect("get")
            .into_inner()
    }

    /// A page of the customers matching `filter` (no e-mail lookup).
    pub async fn list(
        &mut self,
        filter: &str,
        page_size: i32,
        page_token: String,
    ) -> pb::ListCustomersResponse {
        let req = self.req(pb::ListCustomersRequest {
            filter: filter.into(),
            page_size,
            page_token,
            email: String::new(),
        });
        self.client
            .list_customers(req)
            .await
            .expect("list")
            .into_inner()
    }

    /// Everything held about the customer `name`.
    pub async fn export(&mut self, name: &str) -> pb::ExportCustomerDataResponse {
        let req = self.req(pb::ExportCustomerDataRequest { name: name.into() });
        self.client
            .export_customer_data(req)
            .await
            .expect("export")
            .into_inner()
    }

    /// Sets the customer `name`'s consent on `channel` to `status`.
    pub async fn consent(
        &mut self,
        name: &str,
        channel: pb::ContactChannel,
        status: pb::ConsentStatus,
        source: &str,
    ) -> pb::Customer {
        let req = self.req(pb::UpdateConsentRequest {
            name: name.into(),
            channel: channel as i32,
            status: status as i32,
            source: source.into(),
        });
        self.client
            .update_consent(req)
            .await
            .expect("update consent")
            .into_inner()
    }

    /// Records the purchase `p`.
    pub async fn record(&mut self, p: pb::Purchase) -> pb::Purchase {
        let req = self.req(pb::RecordPurchaseRequest { purchase: Some(p) });
        self.client
            .record_purchase(req)
            .await
            .expect("record purchase")
            .into_inner()
    }

    /// Records that `referrer` referred `referred` (at the time of the call).
    pub async fn refer(&mut self, referrer: &str, referred: &str) -> pb::Referral {
        let req = self.req(pb::RecordReferralRequest {
            referral: Some(pb::Referral {
                referrer: referrer.into(),
                referred: referred.into(),
                occur_time: None,
            }),
        });
        self.client
            .record_referral(req)
            .await
            .expect("record referral")
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
            run(settings, listener, stop).await.map_err(Into::into)
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

    /// Another replica: a second profile instance on this one's database,
    /// Redis namespace and keys (its own process-local cache). Stop it before
    /// this app, which owns the database.
    pub async fn replica(&self) -> Replica {
        let settings = self.settings.clone();
        let service = SpawnedService::spawn(move |listener, stop| async move {
            run(settings, listener, stop).await.map_err(Into::into)
        })
        .await
        .expect("start a replica");
        let channel = service.channel().await.expect("connect");
        retention_testkit::wait_until_serving(channel.clone())
            .await
            .expect("the replica serves");
        Replica {
            client: CustomerProfileServiceClient::new(channel),
            service: Some(service),
        }
    }
}

/// A second profile instance beside a [`TestApp`] (see [`TestApp::replica`]);
/// call it with the app's `req`.
pub struct Replica {
    pub client: CustomerProfileServiceClient<Channel>,
    service: Option<SpawnedService>,
}

impl Replica {
    pub async fn stop(mut self) {
        if let Some(s) = self.service.take() {
            s.stop().await.expect("clean shutdown");
        }
    }
}

/// The profile service on `listener` (its own bus) until `stop` resolves or drops.
pub async fn run(
    settings: Settings,
    listener: tokio::net::TcpListener,
    stop: impl std::future::Future + Send + 'static,
) -> Result<(), HostError> {
    let shutdown = async move {
        let _ = stop.await;
    };
    retention_server::host::run::<Profile>(settings, listener, shutdown, None).await
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

pub fn identity(namespace: &str, value: &str) -> pb::ExternalIdentity {
    pb::ExternalIdentity {
        namespace: namespace.into(),
        value: value.into(),
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
