//! spawn_app for the segmentation service, and a feeder that publishes upstream
//! events onto the Redis streams the running service consumes.

use chrono::{DateTime, Duration, TimeZone, Utc};
use retention_config::Settings;
use retention_proto::common::{EventEnvelope, Money};
use retention_proto::interactions as ipb;
use retention_proto::profile as ppb;
use retention_proto::segmentation as pb;
use retention_proto::segmentation::segmentation_service_client::SegmentationServiceClient;
use retention_segmentation::Segmentation;
use retention_testkit::{Backend, StreamFeeder, TestService};
use tonic::Request;
use tonic::transport::Channel;

pub const ALL_SCOPES: &[&str] = &[
    "segmentation.read",
    "segmentation.write",
    "segmentation.admin",
];

pub struct TestApp {
    pub client: SegmentationServiceClient<Channel>,
    pub inner: TestService,
    /// Publishes upstream events; counts them (each consumed exactly once).
    pub feeder: StreamFeeder,
}

pub use retention_testkit::envelope;

pub fn ts(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    }
}

fn money(minor_units: i64) -> Option<Money> {
    Some(Money {
        currency_code: "CNY".into(),
        minor_units,
    })
}

/// Day 0 of the synthetic histories: 420 days before today, so the histories
/// (up to day 400) reach into the present and the models see live customers.
pub fn epoch() -> DateTime<Utc> {
    let today = Utc::now().date_naive();
    Utc.from_utc_datetime(&today.and_hms_opt(0, 0, 0).unwrap()) - Duration::days(420)
}

pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with(backend, |_| {}).await
    }

    /// [`Self::spawn`] with `tweak` applied to the settings.
    pub async fn spawn_with(backend: Backend, tweak: impl FnOnce(&mut Settings)) -> TestApp {
        let inner = TestService::start::<Segmentation>(backend, true, tweak, None)
            .await
            .expect("spawn segmentation");
        Self::around(inner).await
    }

    /// Another replica of this service: its database and Redis namespace (so
    /// the consumer group), with `tweak` applied to its settings first.
    pub async fn replica(&self, tweak: impl FnOnce(&mut Settings)) -> TestApp {
        let url = self.inner.settings.database.url.clone();
        let namespace = self.inner.settings.redis.namespace.clone();
        let backend = if url.starts_with("sqlite") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let inner = TestService::start::<Segmentation>(
            backend,
            true,
            move |s| {
                tweak(s);
                s.database.url = url;
                s.redis.namespace = namespace;
            },
            None,
        )
        .await
        .expect("spawn a segmentation replica");
        Self::around(inner).await
    }

    async fn around(inner: TestService) -> TestApp {
        let feeder = StreamFeeder::connect(&inner.settings).await.unwrap();
        TestApp {
            client: SegmentationServiceClient::new(inner.channel.clone()),
            inner,
            feeder,
        }
    }

    /// A service with `n` customers (see [`Self::population`]) scored by one
    /// full run; their ids.
    pub async fn scored(backend: Backend, n: usize, until: i64) -> (TestApp, Vec<String>) {
        let mut app = TestApp::spawn(backend).await;
        let ids = app.population(n, until).await;
        app.run_scoring().await;
        (app, ids)
    }

    pub fn req<T>(&self, msg: T) -> Request<T> {
        self.inner.req(msg, ALL_SCOPES)
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.inner.count(sql).await.expect("count")
    }

    /// Publishes `env` on `stream` as another service's relay would.
    pub async fn publish(&mut self, stream: &str, env: &EventEnvelope) {
        self.feeder.publish_envelope(stream, env).await.unwrap();
    }

    pub async fn profile_event<M: prost::Name>(&mut self, msg: &M) {
        self.publish("retention.profile.events", &envelope(msg))
            .await;
    }

    pub async fn interactions_event<M: prost::Name>(&mut self, msg: &M) {
        self.publish("retention.interactions.events", &envelope(msg))
            .await;
    }

    pub async fn purchase(&mut self, customer: &str, day: i64, amount: i64, margin: i64) {
        self.profile_event(&ppb::PurchaseRecordedEvent {
            customer_id: customer.into(),
            purchase_id: new_id(),
            order_id: new_id(),
            occur_time: Some(ts(epoch() + Duration::days(day))),
            amount: money(amount),
            gross_margin: money(margin),
            discount: money(0),
            product_category: "tea".into(),
            channel: "store".into(),
        })
        .await;
    }

    /// Opens a complaint of `customer`; returns its id.
    pub async fn complaint_opened(&mut self, customer: &str) -> String {
        let complaint_id = new_id();
        self.interactions_event(&ipb::ComplaintOpenedEvent {
            complaint_id: complaint_id.clone(),
            customer_id: customer.into(),
            ..Default::default()
        })
        .await;
        complaint_id
    }

    pub async fn complaint_resolved(&mut self, customer: &str, complaint_id: &str) {
        self.interactions_event(&ipb::ComplaintResolvedEvent {
            complaint_id: complaint_id.into(),
            customer_id: customer.into(),
            ..Default::default()
        })
        .await;
    }

    /// Waits until every published upstream event is in the inbox.
    pub async fn settle(&self) {
        let sql = "SELECT COUNT(*) FROM processed_events WHERE consumer = 'segmentation'";
        let mut seen = 0;
        for _ in 0..1200 {
            seen = self.count(sql).await;
            if seen >= self.feeder.published {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("only {seen} of {} events consumed", self.feeder.published);
    }

    /// `n` customers with deterministic, varied histories between day 0 and
    /// `until`: different rhythms, spends and drop-out days. Returns their ids.
    pub async fn population(&mut self, n: usize, until: i64) -> Vec<String> {
        let mut ids = Vec::new();
        for i in 0..n {
            let id = new_id();
            let purchases = 1 + (i * 7) % 9;
            let gap = 4 + ((i * 13) % 30) as i64;
            // Every third customer is still buying (their last purchase is recent);
            // the others stop at some point.
            let active = i % 3 == 0;
            let start = if active {
                (until - (purchases as i64 - 1) * gap - (i % 5) as i64).max(0)
            } else {
                ((i * 17) % 60) as i64
            };
            let drop_out = if active {
                until
            } else {
                start + ((i * 29) % (until as usize)) as i64
            };
            for k in 0..purchases as i64 {
                let day = start + k * gap;
                if day > until || (k > 0 && day > drop_out) {
                    break;
                }
                let amount = 2_000 + 500 * ((i as i64 * 3 + k) % 11);
                self.purchase(&id, day, amount, amount * (20 + (i as i64 % 15)) / 100)
                    .await;
            }
            ids.push(id);
        }
        self.settle().await;
        ids
    }

    /// Starts a run and polls it to the end.
    pub async fn run_scoring(&mut self) -> pb::ScoringRun {
        let req = self.req(pb::RunScoringRequest {
            request_id: new_id(),
            ..Default::default()
        });
        let run = self.client.run_scoring(req).await.unwrap().into_inner();
        self.wait_run(&run.name).await
    }

    /// Starts a run; returns it once it is under way (fitting), not ended.
    pub async fn run_scoring_started(&mut self) -> pb::ScoringRun {
        let req = self.req(pb::RunScoringRequest {
            request_id: new_id(),
            ..Default::default()
        });
        self.client.run_scoring(req).await.unwrap().into_inner()
    }

    pub async fn wait_run(&mut self, name: &str) -> pb::ScoringRun {
        for _ in 0..1200 {
            let req = self.req(pb::GetScoringRunRequest { name: name.into() });
            let run = self.client.get_scoring_run(req).await.unwrap().into_inner();
            if run.state == pb::ScoringRunState::Succeeded as i32
                || run.state == pb::ScoringRunState::Failed as i32
            {
                return run;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("scoring run {name} never ended");
    }

    pub async fn insight(&mut self, customer: &str) -> Result<pb::CustomerInsight, tonic::Status> {
        let req = self.req(pb::GetCustomerInsightRequest {
            name: format!("customers/{customer}"),
        });
        self.client
            .get_customer_insight(req)
            .await
            .map(|r| r.into_inner())
    }

    /// Published segmentation events of one type, decoded, in outbox order.
    pub async fn outbox<M: prost::Name + Default>(&self) -> Vec<M> {
        self.inner.outbox().await.unwrap()
    }

    pub async fn stop(self) {
        self.inner.stop().await.expect("clean shutdown");
    }
}

pub fn violated_fields(status: &tonic::Status) -> Vec<String> {
    retention_errors::field_violations(status)
        .into_iter()
        .map(|(f, _)| f)
        .collect()
}
