//! spawn_app for the win-back service, a stand-in segmentation service on a random
//! port, and a feeder that publishes upstream events onto the Redis streams the
//! running service consumes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use retention_proto::common::{EventEnvelope, Money};
use retention_proto::profile as ppb;
use retention_proto::segmentation as spb;
use retention_proto::segmentation::segmentation_service_server::{
    SegmentationService, SegmentationServiceServer,
};
use retention_proto::winback as pb;
use retention_proto::winback::winback_service_client::WinbackServiceClient;
use retention_testkit::{Backend, SpawnedService, StreamFeeder, TestService};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

pub const ALL_SCOPES: &[&str] = &["winback.read", "winback.write", "winback.admin"];

pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

pub fn money(minor_units: i64) -> Option<Money> {
    Some(Money {
        currency_code: "CNY".into(),
        minor_units,
    })
}

pub fn ts(t: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// What the stand-in segmentation knows and how it behaves.
#[derive(Default)]
pub struct FakeSegmentation {
    pub insights: HashMap<String, spb::CustomerInsight>,
    pub segments: HashMap<String, Vec<String>>,
    /// Every call answers UNAVAILABLE.
    pub down: bool,
    /// Every call answers this status instead (any code, with its details).
    pub answer: Option<fn() -> Status>,
    /// The n-th list page (0-based) answers UNAVAILABLE: a failure mid-target.
    pub fail_page: Option<usize>,
    pub pages_served: usize,
    /// Metadata seen on the last call: `grpc-timeout` and `authorization`.
    pub last_timeout: Option<String>,
    pub last_authorization: Option<String>,
}

#[derive(Clone, Default)]
pub struct Fake(pub Arc<Mutex<FakeSegmentation>>);

impl Fake {
    pub fn with<R>(&self, f: impl FnOnce(&mut FakeSegmentation) -> R) -> R {
        f(&mut self.0.lock().unwrap())
    }

    fn observe<T>(&self, req: &Request<T>) -> Result<(), Status> {
        self.with(|s| {
            let m = req.metadata();
            s.last_timeout = m
                .get("grpc-timeout")
                .and_then(|v| v.to_str().ok())
                .map(String::from);
            s.last_authorization = m
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(String::from);
            if s.down {
                Err(Status::unavailable("segmentation is down"))
            } else if let Some(answer) = s.answer {
                Err(answer())
            } else {
                Ok(())
            }
        })
    }

    /// One page of `ids` after the offset in `token`.
    fn page(
        &self,
        ids: Vec<String>,
        size: i32,
        token: &str,
    ) -> Result<(Vec<spb::CustomerInsight>, String), Status> {
        self.with(|s| {
            let n = s.pages_served;
            s.pages_served += 1;
            if s.fail_page == Some(n) {
                return Err(Status::unavailable("segmentation went away mid-listing"));
            }
            let from: usize = token.parse().unwrap_or(0);
            let size = size.max(1) as usize;
            let page: Vec<_> = ids
                .iter()
                .skip(from)
                .take(size)
                .filter_map(|id| s.insights.get(id).cloned())
                .collect();
            let next = if from + size < ids.len() {
                (from + size).to_string()
            } else {
                String::new()
            };
            Ok((page, next))
        })
    }
}

pub fn insight(customer_id: &str, clv: i64) -> spb::CustomerInsight {
    spb::CustomerInsight {
        name: format!("insights/{customer_id}"),
        customer: format!("customers/{customer_id}"),
        value_tier: spb::ValueTier::Gold as i32,
        management_tier: spb::ManagementTier::Key as i32,
        lifecycle_stage: spb::LifecycleStage::Decline as i32,
        churn_risk: spb::ChurnRisk::High as i32,
        predicted_clv: money(clv),
        ..Default::default()
    }
}

fn unimplemented<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented("not played by the stand-in"))
}

#[tonic::async_trait]
impl SegmentationService for Fake {
    async fn get_customer_insight(
        &self,
        req: Request<spb::GetCustomerInsightRequest>,
    ) -> Result<Response<spb::CustomerInsight>, Status> {
        self.observe(&req)?;
        let id = req
            .get_ref()
            .name
            .trim_start_matches("customers/")
            .to_string();
        self.with(|s| s.insights.get(&id).cloned())
            .map(Response::new)
            .ok_or_else(|| Status::not_found("no insight"))
    }

    async fn list_customer_insights(
        &self,
        req: Request<spb::ListCustomerInsightsRequest>,
    ) -> Result<Response<spb::ListCustomerInsightsResponse>, Status> {
        self.observe(&req)?;
        let r = req.into_inner();
        if r.filter.contains("no_such_field") {
            return Err(retention_errors::invalid_argument([(
                "filter",
                "unknown field no_such_field",
            )]));
        }
        let mut ids: Vec<String> = self.with(|s| s.insights.keys().cloned().collect());
        ids.sort();
        let (insights, next_page_token) = self.page(ids, r.page_size, &r.page_token)?;
        Ok(Response::new(spb::ListCustomerInsightsResponse {
            insights,
            next_page_token,
        }))
    }

    async fn list_segment_members(
        &self,
        req: Request<spb::ListSegmentMembersRequest>,
    ) -> Result<Response<spb::ListSegmentMembersResponse>, Status> {
        self.observe(&req)?;
        let r = req.into_inner();
        let id = r.segment.trim_start_matches("segments/").to_string();
        let ids = self
            .with(|s| s.segments.get(&id).cloned())
            .ok_or_else(|| Status::not_found("no such segment"))?;
        let (members, next_page_token) = self.page(ids, r.page_size, &r.page_token)?;
        Ok(Response::new(spb::ListSegmentMembersResponse {
            members,
            next_page_token,
        }))
    }

    async fn create_segment(
        &self,
        _: Request<spb::CreateSegmentRequest>,
    ) -> Result<Response<spb::Segment>, Status> {
        unimplemented()
    }
    async fn get_segment(
        &self,
        _: Request<spb::GetSegmentRequest>,
    ) -> Result<Response<spb::Segment>, Status> {
        unimplemented()
    }
    async fn update_segment(
        &self,
        _: Request<spb::UpdateSegmentRequest>,
    ) -> Result<Response<spb::Segment>, Status> {
        unimplemented()
    }
    async fn delete_segment(
        &self,
        _: Request<spb::DeleteSegmentRequest>,
    ) -> Result<Response<spb::DeleteSegmentResponse>, Status> {
        unimplemented()
    }
    async fn list_segments(
        &self,
        _: Request<spb::ListSegmentsRequest>,
    ) -> Result<Response<spb::ListSegmentsResponse>, Status> {
        unimplemented()
    }
    async fn run_scoring(
        &self,
        _: Request<spb::RunScoringRequest>,
    ) -> Result<Response<spb::ScoringRun>, Status> {
        unimplemented()
    }
    async fn get_scoring_run(
        &self,
        _: Request<spb::GetScoringRunRequest>,
    ) -> Result<Response<spb::ScoringRun>, Status> {
        unimplemented()
    }
    async fn get_model_parameters(
        &self,
        _: Request<spb::GetModelParametersRequest>,
    ) -> Result<Response<spb::ModelParameters>, Status> {
        unimplemented()
    }
    async fn get_portfolio_report(
        &self,
        _: Request<spb::GetPortfolioReportRequest>,
    ) -> Result<Response<spb::PortfolioReport>, Status> {
        unimplemented()
    }
    async fn project_retention(
        &self,
        _: Request<spb::ProjectRetentionRequest>,
    ) -> Result<Response<spb::RetentionProjection>, Status> {
        unimplemented()
    }
    async fn get_event_backlog(
        &self,
        _: Request<spb::GetEventBacklogRequest>,
    ) -> Result<Response<retention_proto::common::EventBacklog>, Status> {
        unimplemented()
    }
    async fn list_audit_records(
        &self,
        _: Request<spb::ListAuditRecordsRequest>,
    ) -> Result<Response<retention_proto::common::ListAuditRecordsResponse>, Status> {
        unimplemented()
    }
    async fn list_dead_letters(
        &self,
        _: Request<spb::ListDeadLettersRequest>,
    ) -> Result<Response<retention_proto::common::ListDeadLettersResponse>, Status> {
        unimplemented()
    }
    async fn get_dead_letter(
        &self,
        _: Request<spb::GetDeadLetterRequest>,
    ) -> Result<Response<retention_proto::common::DeadLetter>, Status> {
        unimplemented()
    }
    async fn replay_dead_letter(
        &self,
        _: Request<spb::ReplayDeadLetterRequest>,
    ) -> Result<Response<retention_proto::common::DeadLetter>, Status> {
        unimplemented()
    }
    async fn discard_dead_letter(
        &self,
        _: Request<spb::DiscardDeadLetterRequest>,
    ) -> Result<Response<retention_proto::common::DeadLetter>, Status> {
        unimplemented()
    }
}

pub struct TestApp {
    pub client: WinbackServiceClient<Channel>,
    pub inner: TestService,
    pub seg: Fake,
    _seg_server: Option<SpawnedService>,
    /// Upstream events published so far (each consumed exactly once).
    pub feeder: StreamFeeder,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        let seg = Fake::default();
        let server = Self::spawn_segmentation(&seg, None).await;
        let endpoint = server.endpoint();
        Self::spawn_with(backend, endpoint, seg, Some(server)).await
    }

    /// The stand-in segmentation on a random port, behind `tls` if given.
    pub async fn spawn_segmentation(
        seg: &Fake,
        tls: Option<retention_config::ServerTlsSettings>,
    ) -> SpawnedService {
        let svc = SegmentationServiceServer::new(seg.clone());
        SpawnedService::spawn(move |listener, stop| async move {
            let mut builder = tonic::transport::Server::builder();
            if let Some(tls) = tls.as_ref().map(retention_server::server_tls) {
                builder = builder.tls_config(tls?.expect("a certificate"))?;
            }
            builder
                .add_service(svc)
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener),
                    async move {
                        let _ = stop.await;
                    },
                )
                .await
                .map_err(Into::into)
        })
        .await
        .expect("spawn the stand-in segmentation")
    }

    /// Win-back pointed at `endpoint` for segmentation (e.g. a port nobody serves).
    pub async fn spawn_with(
        backend: Backend,
        endpoint: String,
        seg: Fake,
        seg_server: Option<SpawnedService>,
    ) -> TestApp {
        Self::spawn_configured(backend, endpoint, seg, seg_server, |_| {}).await
    }

    /// As `spawn_with`, with `tweak` applied to win-back's settings last.
    pub async fn spawn_configured(
        backend: Backend,
        endpoint: String,
        seg: Fake,
        seg_server: Option<SpawnedService>,
        tweak: impl FnOnce(&mut retention_config::Settings) + Send + 'static,
    ) -> TestApp {
        let inner = TestService::start::<retention_winback::Winback>(
            backend,
            true,
            move |s| {
                s.winback.segmentation_endpoint = endpoint;
                s.winback.call_timeout_ms = 2_000;
                s.winback.schedule_check_secs = 1;
                // Tests of other rules than consent contact everyone who did not
                // withdraw (opt-out); consent tests set the policy they test.
                s.consent =
                    retention_config::ConsentSettings::all(retention_config::ConsentPolicy::OptOut);
                tweak(s);
            },
            None,
        )
        .await
        .expect("spawn winback");
        let feeder = StreamFeeder::connect(&inner.settings).await.unwrap();
        TestApp {
            client: WinbackServiceClient::new(inner.channel.clone()),
            inner,
            seg,
            _seg_server: seg_server,
            feeder,
        }
    }

    pub fn req<T>(&self, msg: T) -> Request<T> {
        self.inner.req(msg, ALL_SCOPES)
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.inner.count(sql).await.expect("count")
    }

    /// `n` scored customers with the given CLVs, all members of a new segment.
    pub fn segment(&self, clvs: &[i64]) -> (String, Vec<String>) {
        let ids: Vec<String> = clvs.iter().map(|_| new_id()).collect();
        let segment = new_id();
        self.seg.with(|s| {
            for (id, clv) in ids.iter().zip(clvs) {
                s.insights.insert(id.clone(), insight(id, *clv));
            }
            s.segments.insert(segment.clone(), ids.clone());
        });
        (segment, ids)
    }

    /// A valid campaign on `segment`, for tests to adjust.
    pub fn campaign(segment: &str) -> pb::Campaign {
        pb::Campaign {
            display_name: "Win back lapsed key accounts".into(),
            kind: pb::CampaignKind::Winback as i32,
            strategy: pb::Strategy::RelationshipInvestment as i32,
            offer: Some(pb::Offer {
                kind: pb::OfferKind::PersonalOutreach as i32,
                description: "a call from the account manager".into(),
                cost: money(1_000),
            }),
            channel: "EMAIL".into(),
            target_segment: format!("segments/{segment}"),
            budget: money(1_000_000),
            max_cost_share_of_value: 0.2,
            holdout_share: 0.0,
            seed: 42,
            win_window_days: 30,
            cool_down_days: 0,
            ..Default::default()
        }
    }

    pub async fn create(&mut self, c: pb::Campaign) -> pb::Campaign {
        let req = self.req(pb::CreateCampaignRequest {
            campaign: Some(c),
            request_id: new_id(),
        });
        self.client.create_campaign(req).await.unwrap().into_inner()
    }

    pub async fn launch(&mut self, name: &str) -> Result<pb::Campaign, Status> {
        let req = self.req(pb::LaunchCampaignRequest {
            name: name.into(),
            etag: String::new(),
        });
        self.client
            .launch_campaign(req)
            .await
            .map(|r| r.into_inner())
    }

    pub async fn pause(&mut self, name: &str) -> Result<pb::Campaign, Status> {
        let req = self.req(pb::PauseCampaignRequest {
            name: name.into(),
            etag: String::new(),
        });
        self.client
            .pause_campaign(req)
            .await
            .map(|r| r.into_inner())
    }

    pub async fn complete(&mut self, name: &str) -> Result<pb::Campaign, Status> {
        let req = self.req(pb::CompleteCampaignRequest {
            name: name.into(),
            etag: String::new(),
        });
        self.client
            .complete_campaign(req)
            .await
            .map(|r| r.into_inner())
    }

    pub async fn cancel(&mut self, name: &str) -> Result<pb::Campaign, Status> {
        let req = self.req(pb::CancelCampaignRequest {
            name: name.into(),
            etag: String::new(),
        });
        self.client
            .cancel_campaign(req)
            .await
            .map(|r| r.into_inner())
    }

    pub async fn get(&mut self, name: &str) -> pb::Campaign {
        let req = self.req(pb::GetCampaignRequest { name: name.into() });
        self.client.get_campaign(req).await.unwrap().into_inner()
    }

    /// Every target of a campaign, by customer id.
    pub async fn targets(&mut self, name: &str) -> HashMap<String, pb::CampaignTarget> {
        let mut out = HashMap::new();
        let mut token = String::new();
        loop {
            let req = self.req(pb::ListCampaignTargetsRequest {
                campaign: name.into(),
                page_size: 100,
                page_token: token,
            });
            let r = self
                .client
                .list_campaign_targets(req)
                .await
                .unwrap()
                .into_inner();
            for t in r.targets {
                out.insert(t.customer.trim_start_matches("customers/").to_string(), t);
            }
            if r.next_page_token.is_empty() {
                return out;
            }
            token = r.next_page_token;
        }
    }

    pub async fn results(&mut self, name: &str) -> pb::CampaignResults {
        let req = self.req(pb::GetCampaignResultsRequest { name: name.into() });
        self.client
            .get_campaign_results(req)
            .await
            .unwrap()
            .into_inner()
    }

    /// Publishes profile's ConsentChanged for `customer` on `channel`.
    pub async fn consent(
        &mut self,
        customer: &str,
        channel: ppb::ContactChannel,
        status: ppb::ConsentStatus,
    ) -> EventEnvelope {
        self.publish(
            "retention.profile.events",
            &ppb::ConsentChangedEvent {
                customer_id: customer.into(),
                channel: channel as i32,
                status: status as i32,
            },
        )
        .await
    }

    pub async fn publish<M: prost::Name>(&mut self, stream: &str, msg: &M) -> EventEnvelope {
        self.feeder.publish(stream, msg).await.unwrap()
    }

    /// Publishes `msg` as interactions would.
    pub async fn publish_interactions<M: prost::Name>(&mut self, msg: &M) -> EventEnvelope {
        self.publish("retention.interactions.events", msg).await
    }

    /// Delivers `env` again (the consumer must not apply it twice).
    pub async fn redeliver(&mut self, stream: &str, env: &EventEnvelope) {
        self.feeder.publish_envelope(stream, env).await.unwrap();
        self.feeder.published -= 1;
    }

    pub async fn purchase(
        &mut self,
        customer: &str,
        at: chrono::DateTime<chrono::Utc>,
        margin: i64,
    ) -> EventEnvelope {
        self.publish(
            "retention.profile.events",
            &ppb::PurchaseRecordedEvent {
                customer_id: customer.into(),
                purchase_id: new_id(),
                order_id: new_id(),
                occur_time: Some(ts(at)),
                amount: money(margin * 4),
                gross_margin: money(margin),
                ..Default::default()
            },
        )
        .await
    }

    /// Waits until every published upstream event is in the inbox (events of
    /// types this service ignores never reach it, so only count relevant ones).
    pub async fn settle(&self) {
        let sql = "SELECT COUNT(*) FROM processed_events WHERE consumer = 'winback'";
        let mut seen = 0;
        for _ in 0..600 {
            seen = self.count(sql).await;
            if seen >= self.feeder.published {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("only {seen} of {} events consumed", self.feeder.published);
    }

    /// Published win-back events of one type, decoded, in outbox order.
    pub async fn outbox<M: prost::Name + Default>(&self) -> Vec<M> {
        self.inner.outbox().await.unwrap()
    }

    pub async fn stop(self) {
        self.inner.stop().await.expect("clean shutdown");
    }
}

pub fn violated_fields(status: &Status) -> Vec<String> {
    retention_errors::field_violations(status)
        .into_iter()
        .map(|(f, _)| f)
        .collect()
}

impl TestApp {
    /// Rows of a two-column query, as strings.
    pub async fn pairs(&self, sql: &str) -> std::collections::HashMap<String, String> {
        use sea_orm::{ConnectionTrait, Statement};
        let db = self.inner.database().await.unwrap();
        db.query_all_raw(Statement::from_string(
            db.get_database_backend(),
            sql.to_string(),
        ))
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.try_get_by_index::<String>(0).unwrap(),
                r.try_get_by_index::<String>(1).unwrap(),
            )
        })
        .collect()
    }

    pub async fn exclusions(&self, campaign: &str) -> std::collections::HashMap<String, String> {
        let id = campaign.trim_start_matches("campaigns/");
        self.pairs(&format!(
            "SELECT customer_id, reason FROM campaign_exclusions WHERE campaign_id = '{id}'"
        ))
        .await
    }

    /// Everything a launch writes, for "nothing was launched" checks.
    pub async fn launch_traces(&self) -> (i64, i64, i64) {
        (
            self.count("SELECT COUNT(*) FROM campaign_targets").await,
            self.count("SELECT COUNT(*) FROM campaign_exclusions").await,
            self.count("SELECT COUNT(*) FROM outbox_events").await,
        )
    }
}
