//! spawn_app for the interactions service.

use retention_config::Settings;
use retention_proto::interactions as pb;
use retention_proto::interactions::interaction_service_client::InteractionServiceClient;
use retention_testkit::{Backend, TestService};
use tonic::Request;
use tonic::transport::Channel;

pub const ALL_SCOPES: &[&str] = &["interactions.read", "interactions.write"];

pub struct TestApp {
    pub client: InteractionServiceClient<Channel>,
    pub inner: TestService,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with(backend, |_| {}).await
    }

    pub async fn spawn_with(backend: Backend, tweak: impl FnOnce(&mut Settings)) -> TestApp {
        let inner =
            TestService::start::<retention_interactions::Interactions>(backend, true, tweak, None)
                .await
                .expect("spawn interactions");
        TestApp {
            client: InteractionServiceClient::new(inner.channel.clone()),
            inner,
        }
    }

    pub fn req<T>(&self, msg: T) -> Request<T> {
        self.inner.req(msg, ALL_SCOPES)
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.inner.count(sql).await.expect("count")
    }

    pub async fn outbox_count(&self, event_type: &str) -> i64 {
        self.count(&format!(
            "SELECT COUNT(*) FROM outbox_events WHERE event_type = 'retention.interactions.v1.{event_type}'"
        ))
        .await
    }

    /// The application layer on the same database, for driving the SLA sweep at a
    /// chosen time (as a second replica would).
    pub async fn second_replica(&self) -> retention_interactions::app::InteractionsApp {
        let db = retention_db::connect(&retention_db::DbOptions::new(
            self.inner.settings.database.url.clone(),
        ))
        .await
        .expect("connect");
        retention_interactions::app::InteractionsApp::new(retention_events::Outbox::new(
            db,
            "interactions",
            Default::default(),
        ))
    }

    pub async fn open(&mut self, customer: &str, severity: pb::Severity) -> pb::Complaint {
        let req = self.req(pb::OpenComplaintRequest {
            complaint: Some(complaint(customer, severity)),
            request_id: String::new(),
        });
        self.client
            .open_complaint(req)
            .await
            .expect("open")
            .into_inner()
    }

    pub async fn stop(self) {
        self.inner.stop().await.expect("clean shutdown");
    }
}

pub fn customer() -> String {
    format!("customers/{}", uuid::Uuid::now_v7())
}

/// ResolveComplaint of `name` with `minor_units` CNY of compensation for a lost
/// parcel.
pub fn compensated(name: &str, minor_units: i64) -> pb::ResolveComplaintRequest {
    pb::ResolveComplaintRequest {
        name: name.to_string(),
        resolution: Some(pb::Resolution {
            outcome: pb::ResolutionOutcome::Compensated as i32,
            compensation: Some(retention_proto::common::Money {
                currency_code: "CNY".into(),
                minor_units,
            }),
            root_cause: "courier lost parcel".into(),
            service_gap: pb::ServiceGap::Procedure as i32,
            resolve_time: None,
        }),
        etag: String::new(),
    }
}

pub fn complaint(customer: &str, severity: pb::Severity) -> pb::Complaint {
    pb::Complaint {
        customer: customer.to_string(),
        category: pb::ComplaintCategory::Delivery as i32,
        severity: severity as i32,
        channel: pb::Channel::Hotline as i32,
        subject: "Parcel two weeks late".into(),
        description: "Customer called twice; courier lost the parcel.".into(),
        ..Default::default()
    }
}

pub fn violated_fields(status: &tonic::Status) -> Vec<String> {
    retention_errors::field_violations(status)
        .into_iter()
        .map(|(f, _)| f)
        .collect()
}

pub fn secs(t: &Option<prost_types::Timestamp>) -> i64 {
    t.as_ref().map(|t| t.seconds).unwrap_or_default()
}
