//! `SegmentationService` over the application layer.

use retention_errors::FieldViolations;
use retention_errors::names::{check_request_id, name_arg};
use retention_proto::segmentation as pb;
use retention_proto::segmentation::segmentation_service_server::SegmentationService;
use retention_server::paging::{decode_token, encode_token, page_size, split_page};
use tonic::{Request, Response, Status};

use crate::app::SegmentationApp;
use crate::convert;
use crate::domain::filter::{insight_schema, parse_order_by};
use crate::domain::models::sbg;
use crate::domain::segments::validate_segment;
use crate::store::repo::{OrderValue, order_value};

pub struct SegmentationGrpc {
    app: SegmentationApp,
    backlog: retention_events::BacklogProbe,
    dead_letters: retention_server::dead_letters::DeadLetterAdmin,
    audit: retention_server::audit::AuditAdmin,
}

impl SegmentationGrpc {
    pub fn new(
        app: SegmentationApp,
        backlog: retention_events::BacklogProbe,
        dead_letters: retention_server::dead_letters::DeadLetterAdmin,
        audit: retention_server::audit::AuditAdmin,
    ) -> Self {
        SegmentationGrpc {
            app,
            backlog,
            dead_letters,
            audit,
        }
    }
}

/// One List call's paging (AIP-158): its page size, and page tokens bound to
/// the collection `kind` and the `query` (filter and order, or parent) they
/// were made for.
struct Pager<'a> {
    kind: &'static str,
    query: &'a str,
    limit: u64,
}

impl<'a> Pager<'a> {
    /// Checks `page_size` (violations in `v`).
    fn new(kind: &'static str, query: &'a str, size: i32, v: &mut FieldViolations) -> Self {
        Pager {
            kind,
            query,
            limit: page_size(size, v),
        }
    }

    /// The cursor in `token` (None for the first page); violations in `v`.
    fn after(&self, token: &str, v: &mut FieldViolations) -> Option<String> {
        decode_token(token, self.kind, self.query, v)
    }

    /// How many rows to read: one more than a page, to know if another follows.
    fn fetch(&self) -> u64 {
        self.limit + 1
    }

    /// `rows` cut to a page, and the token of the next page ("" after the last).
    fn page<T>(&self, rows: Vec<T>, cursor: impl Fn(&T) -> String) -> (Vec<T>, String) {
        let (rows, next) = split_page(rows, self.limit, cursor);
        let token = next
            .map(|c| encode_token(self.kind, self.query, &c))
            .unwrap_or_default();
        (rows, token)
    }
}

/// The id in `name` (the request's only field to check), of `collection`.
fn id_in(name: &str, collection: &str) -> Result<String, Status> {
    let mut v = FieldViolations::new();
    let id = name_arg(name, collection, "name", &mut v);
    v.into_result()?;
    Ok(id)
}

/// "insights/{id}" or "customers/{id}" -> the customer id.
fn customer_of(name: &str) -> Result<String, Status> {
    let collection = if name.starts_with("customers/") {
        "customers"
    } else {
        "insights"
    };
    id_in(name, collection)
}

#[tonic::async_trait]
impl SegmentationService for SegmentationGrpc {
    async fn get_event_backlog(
        &self,
        _request: Request<pb::GetEventBacklogRequest>,
    ) -> Result<Response<retention_proto::common::EventBacklog>, Status> {
        Ok(Response::new(self.backlog.report().await?))
    }

    async fn list_audit_records(
        &self,
        request: Request<pb::ListAuditRecordsRequest>,
    ) -> Result<Response<retention_proto::common::ListAuditRecordsResponse>, Status> {
        self.audit.serve_list(request).await
    }

    async fn list_dead_letters(
        &self,
        request: Request<pb::ListDeadLettersRequest>,
    ) -> Result<Response<retention_proto::common::ListDeadLettersResponse>, Status> {
        self.dead_letters.serve_list(request).await
    }

    async fn get_dead_letter(
        &self,
        request: Request<pb::GetDeadLetterRequest>,
    ) -> Result<Response<retention_proto::common::DeadLetter>, Status> {
        self.dead_letters.serve_get(request).await
    }

    async fn replay_dead_letter(
        &self,
        request: Request<pb::ReplayDeadLetterRequest>,
    ) -> Result<Response<retention_proto::common::DeadLetter>, Status> {
        self.dead_letters.serve_replay(request).await
    }

    async fn discard_dead_letter(
        &self,
        request: Request<pb::DiscardDeadLetterRequest>,
    ) -> Result<Response<retention_proto::common::DeadLetter>, Status> {
        self.dead_letters.serve_discard(request).await
    }

    async fn get_customer_insight(
        &self,
        req: Request<pb::GetCustomerInsightRequest>,
    ) -> Result<Response<pb::CustomerInsight>, Status> {
        let id = customer_of(&req.get_ref().name)?;
        let i = self.app.get_insight(&id).await?;
        Ok(Response::new(convert::insight(&i)))
    }

    async fn list_customer_insights(
        &self,
        req: Request<pb::ListCustomerInsightsRequest>,
    ) -> Result<Response<pb::ListCustomerInsightsResponse>, Status> {
        let r = req.into_inner();
        let mut v = FieldViolations::new();
        let query = format!("{}\u{1f}{}", r.filter, r.order_by);
        let pager = Pager::new("insights", &query, r.page_size, &mut v);
        let filter = match retention_filter::parse_and_check(&r.filter, &insight_schema()) {
            Ok(f) => f,
            Err(e) => {
                v.add("filter", e.to_string());
                None
            }
        };
        let order = match parse_order_by(&r.order_by) {
            Ok(o) => Some(o),
            Err(e) => {
                v.add("order_by", e);
                None
            }
        };
        let after = pager.after(&r.page_token, &mut v).and_then(|c| {
            let parsed = serde_json::from_str::<(OrderValue, String)>(&c).ok();
            if parsed.is_none() {
                v.add("page_token", "is not a valid page token");
            }
            parsed
        });
        v.into_result()?;
        let order = order.expect("validated");
        let rows = self
            .app
            .list_insights(filter.as_ref(), order, after, pager.fetch())
            .await?;
        let (rows, next_page_token) = pager.page(rows, |last| {
            serde_json::to_string(&(order_value(last, order.field), &last.customer_id))
                .unwrap_or_default()
        });
        Ok(Response::new(pb::ListCustomerInsightsResponse {
            insights: rows.iter().map(convert::insight).collect(),
            next_page_token,
        }))
    }

    async fn create_segment(
        &self,
        req: Request<pb::CreateSegmentRequest>,
    ) -> Result<Response<pb::Segment>, Status> {
        let r = req.into_inner();
        let mut v = FieldViolations::new();
        check_request_id(&mut v, &r.request_id);
        let Some(s) = r.segment else {
            v.add("segment", "is required");
            return Err(v.into_status());
        };
        validate_segment(
            &s.display_name,
            &s.description,
            &s.filter,
            "segment.",
            &mut v,
        );
        v.into_result()?;
        let (s, n) = self
            .app
            .create_segment(s.display_name, s.description, s.filter, &r.request_id)
            .await?;
        Ok(Response::new(convert::segment(&s, n)))
    }

    async fn get_segment(
        &self,
        req: Request<pb::GetSegmentRequest>,
    ) -> Result<Response<pb::Segment>, Status> {
        let id = id_in(&req.get_ref().name, "segments")?;
        let (s, n) = self.app.get_segment(&id).await?;
        Ok(Response::new(convert::segment(&s, n)))
    }

    async fn update_segment(
        &self,
        req: Request<pb::UpdateSegmentRequest>,
    ) -> Result<Response<pb::Segment>, Status> {
        let r = req.into_inner();
        let mut v = FieldViolations::new();
        let Some(s) = r.segment else {
            v.add("segment", "is required");
            return Err(v.into_status());
        };
        let id = name_arg(&s.name, "segments", "segment.name", &mut v);
        // An empty mask means every mutable field (AIP-134).
        let paths: Vec<String> = match r.update_mask {
            Some(m) if !m.paths.is_empty() => m.paths,
            _ => vec!["display_name".into(), "description".into(), "filter".into()],
        };
        let (mut display_name, mut description, mut filter) = (None, None, None);
        for p in &paths {
            match p.as_str() {
                "display_name" => display_name = Some(s.display_name.clone()),
                "description" => description = Some(s.description.clone()),
                "filter" => filter = Some(s.filter.clone()),
                other => v.add(
                    "update_mask",
                    format!("cannot update {other:?}; one of display_name, description, filter"),
                ),
            }
        }
        v.into_result()?;
        let (s, n) = self
            .app
            .update_segment(&id, &s.etag, display_name, description, filter)
            .await?;
        Ok(Response::new(convert::segment(&s, n)))
    }

    async fn delete_segment(
        &self,
        req: Request<pb::DeleteSegmentRequest>,
    ) -> Result<Response<pb::DeleteSegmentResponse>, Status> {
        let r = req.into_inner();
        let id = id_in(&r.name, "segments")?;
        self.app.delete_segment(&id, &r.etag).await?;
        Ok(Response::new(pb::DeleteSegmentResponse {}))
    }

    async fn list_segments(
        &self,
        req: Request<pb::ListSegmentsRequest>,
    ) -> Result<Response<pb::ListSegmentsResponse>, Status> {
        let r = req.into_inner();
        let mut v = FieldViolations::new();
        let pager = Pager::new("segments", "", r.page_size, &mut v);
        let after = pager.after(&r.page_token, &mut v);
        v.into_result()?;
        let rows = self
            .app
            .list_segments(after.as_deref(), pager.fetch())
            .await?;
        let (rows, next_page_token) = pager.page(rows, |(s, _)| s.id.clone());
        Ok(Response::new(pb::ListSegmentsResponse {
            segments: rows.iter().map(|(s, n)| convert::segment(s, *n)).collect(),
            next_page_token,
        }))
    }

    async fn list_segment_members(
        &self,
        req: Request<pb::ListSegmentMembersRequest>,
    ) -> Result<Response<pb::ListSegmentMembersResponse>, Status> {
        let r = req.into_inner();
        let mut v = FieldViolations::new();
        let id = name_arg(&r.segment, "segments", "segment", &mut v);
        let pager = Pager::new("members", &id, r.page_size, &mut v);
        let after = pager.after(&r.page_token, &mut v);
        v.into_result()?;
        let rows = self
            .app
            .list_members(&id, after.as_deref(), pager.fetch())
            .await?;
        let (rows, next_page_token) = pager.page(rows, |i| i.customer_id.clone());
        Ok(Response::new(pb::ListSegmentMembersResponse {
            members: rows.iter().map(convert::insight).collect(),
            next_page_token,
        }))
    }

    async fn run_scoring(
        &self,
        req: Request<pb::RunScoringRequest>,
    ) -> Result<Response<pb::ScoringRun>, Status> {
        let mut v = FieldViolations::new();
        check_request_id(&mut v, &req.get_ref().request_id);
        let observation_end = match req.get_ref().observation_end {
            None => None,
            Some(t) => match convert::instant(&t) {
                Some(t) if t < retention_domain::now() => Some(t),
                Some(_) => {
                    v.add("observation_end", "must be in the past");
                    None
                }
                None => {
                    v.add("observation_end", "is not a valid timestamp");
                    None
                }
            },
        };
        v.into_result()?;
        let run = self
            .app
            .start_run(&req.get_ref().request_id, observation_end)
            .await?;
        Ok(Response::new(convert::run(&run)))
    }

    async fn get_scoring_run(
        &self,
        req: Request<pb::GetScoringRunRequest>,
    ) -> Result<Response<pb::ScoringRun>, Status> {
        let id = id_in(&req.get_ref().name, "scoringRuns")?;
        let run = self.app.get_run(&id).await?;
        Ok(Response::new(convert::run(&run)))
    }

    async fn get_model_parameters(
        &self,
        _req: Request<pb::GetModelParametersRequest>,
    ) -> Result<Response<pb::ModelParameters>, Status> {
        let c = self.app.latest_calibration().await?;
        Ok(Response::new(convert::parameters(&c)))
    }

    async fn project_retention(
        &self,
        req: Request<pb::ProjectRetentionRequest>,
    ) -> Result<Response<pb::RetentionProjection>, Status> {
        let r = req.into_inner();
        let mut v = FieldViolations::new();
        if r.cohorts.is_empty() || r.cohorts.len() > 100 {
            v.add("cohorts", "one to 100 cohorts");
        }
        for (i, c) in r.cohorts.iter().enumerate() {
            if c.survivors.is_empty() || c.survivors.len() > 1_001 {
                v.add(
                    format!("cohorts[{i}].survivors"),
                    "the cohort size, then up to 1,000 periods",
                );
            } else if c.survivors.iter().any(|n| !n.is_finite() || *n < 0.0) {
                v.add(
                    format!("cohorts[{i}].survivors"),
                    "counts must be finite and not negative",
                );
            } else if c.survivors.windows(2).any(|w| w[1] > w[0]) {
                v.add(
                    format!("cohorts[{i}].survivors"),
                    "survivors cannot grow from one period to the next",
                );
            } else if c.survivors[0] <= 0.0 {
                v.add(
                    format!("cohorts[{i}].survivors"),
                    "the cohort size must be positive",
                );
            }
        }
        let periods = if r.periods == 0 { 12 } else { r.periods };
        v.check(
            (1..=1_000).contains(&periods),
            "periods",
            "between 1 and 1,000",
        );
        let discount = if r.discount_rate == 0.0 {
            0.10
        } else {
            r.discount_rate
        };
        v.check(
            discount.is_finite() && discount > 0.0,
            "discount_rate",
            "must be greater than 0",
        );
        v.into_result()?;
        let cohorts: Vec<Vec<f64>> = r.cohorts.into_iter().map(|c| c.survivors).collect();
        let fit = sbg::fit_cohorts(&cohorts)
            .map_err(|e| retention_errors::invalid_argument([("cohorts", e.to_string())]))?;
        Ok(Response::new(convert::retention(
            &fit,
            &cohorts,
            periods as u32,
            discount,
        )))
    }

    async fn get_portfolio_report(
        &self,
        req: Request<pb::GetPortfolioReportRequest>,
    ) -> Result<Response<pb::PortfolioReport>, Status> {
        let r = req.into_inner();
        let mut v = FieldViolations::new();
        v.check(
            (0..=366).contains(&r.period_days),
            "period_days",
            "must be between 1 and 366 (0: 30)",
        );
        v.check(
            (0..=60).contains(&r.periods),
            "periods",
            "must be between 1 and 60 (0: 12)",
        );
        v.into_result()?;
        let period_days = if r.period_days == 0 {
            30
        } else {
            r.period_days as u32
        };
        let periods = if r.periods == 0 { 12 } else { r.periods as u32 };
        let report = self.app.portfolio_report(period_days, periods).await?;
        Ok(Response::new(convert::report(&report)))
    }
}
