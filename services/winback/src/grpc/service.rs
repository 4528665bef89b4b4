//! `WinbackService` over the application layer: validation with field details,
//! then one use case per method.

use chrono::{DateTime, Utc};
use retention_db::audit::AuditEntry;
use retention_errors::FieldViolations;
use retention_errors::names::{check_request_id, name_arg, parse_name};
use retention_filter::{FieldType, Schema};
use retention_proto::winback as pb;
use retention_proto::winback::winback_service_server::WinbackService;
use retention_server::audit;
use retention_server::paging::{
    decode_token, encode_token, page_size, parse_time_key, split_page, time_key,
};
use retention_server::remaining_budget;
use sea_orm::sea_query::SimpleExpr;
use tonic::{Request, Response, Status};

use crate::app::{NewCampaign, WinbackApp};
use crate::convert;
use crate::domain::campaign::{
    CampaignAction, CampaignKind, CampaignSpec, CampaignState, OfferKind, Strategy, validate,
};
use crate::domain::churn::{ChurnSignals, ChurnType, ReasonCode};
use crate::domain::records::{ChurnRecord, ContactChannel, Money, campaign_name};
use crate::domain::targeting::ValueBasis;
use crate::store::repo::{self, CAMPAIGN_FILTER_FIELDS};

pub struct WinbackGrpc {
    app: WinbackApp,
    backlog: retention_events::BacklogProbe,
    dead_letters: retention_server::dead_letters::DeadLetterAdmin,
    audit: retention_server::audit::AuditAdmin,
}

impl WinbackGrpc {
    pub fn new(
        app: WinbackApp,
        backlog: retention_events::BacklogProbe,
        dead_letters: retention_server::dead_letters::DeadLetterAdmin,
        audit: retention_server::audit::AuditAdmin,
    ) -> Self {
        WinbackGrpc {
            app,
            backlog,
            dead_letters,
            audit,
        }
    }

    fn backend(&self) -> sea_orm::DbBackend {
        sea_orm::ConnectionTrait::get_database_backend(self.app.db())
    }

    /// One page of a filtered, newest-first `listing` asked with `(filter,
    /// page_size, page_token)`: the arguments checked, then `list` (filter, cursor,
    /// limit), then the page and the token after it (by `cursor` of the last row).
    async fn newest_first<T, Fut>(
        &self,
        listing: &Listing,
        (filter, size, token_in): (&str, i32, &str),
        list: impl FnOnce(Option<SimpleExpr>, Option<(DateTime<Utc>, String)>, u64) -> Fut,
        cursor: impl Fn(&T) -> String,
    ) -> Result<(Vec<T>, String), Status>
    where
        Fut: std::future::Future<Output = Result<Vec<T>, crate::app::AppError>>,
    {
        let mut v = FieldViolations::new();
        let limit = page_size(size, &mut v);
        let filter_expr = filter_arg(
            filter,
            &(listing.schema)(),
            listing.cols,
            self.backend(),
            &mut v,
        );
        let after = decode_token(token_in, listing.kind, filter, &mut v);
        let before = time_cursor(after, &mut v);
        v.into_result()?;
        let rows = list(filter_expr, before, limit + 1).await?;
        let (rows, next) = split_page(rows, limit, cursor);
        Ok((rows, token(listing.kind, filter, next)))
    }
}

/// A filtered, newest-first listing: its page tokens' kind and its filter.
struct Listing {
    kind: &'static str,
    schema: fn() -> Schema,
    cols: &'static [&'static str],
}

const CHURN_LISTING: Listing = Listing {
    kind: "churnRecords",
    schema: churn_schema,
    cols: CHURN_FILTER_FIELDS,
};

const CAMPAIGN_LISTING: Listing = Listing {
    kind: "campaigns",
    schema: campaign_schema,
    cols: CAMPAIGN_FILTER_FIELDS,
};

const MAX_EVIDENCE: usize = 10_000;
const MAX_TEXT: usize = 500;
/// Clocks differ between callers: a churn or outcome this far ahead is accepted.
const CLOCK_SKEW_SECS: i64 = 300;

const CHURN_FILTER_FIELDS: &[&str] = &["customer_id", "churn_type", "churn_time", "create_time"];

fn churn_schema() -> Schema {
    Schema::new()
        .field("customer_id", FieldType::String)
        .field("churn_type", FieldType::Enum(ChurnType::names()))
        .field("churn_time", FieldType::Timestamp)
        .field("create_time", FieldType::Timestamp)
}

fn campaign_schema() -> Schema {
    Schema::new()
        .field("display_name", FieldType::String)
        .field("kind", FieldType::Enum(CampaignKind::names()))
        .field("strategy", FieldType::Enum(Strategy::names()))
        .field("offer_kind", FieldType::Enum(OfferKind::names()))
        .field("channel", FieldType::Enum(ContactChannel::names()))
        .field("state", FieldType::Enum(CampaignState::names()))
        .field("triggered", FieldType::Bool)
        .field("create_time", FieldType::Timestamp)
        .field("launch_time", FieldType::Timestamp)
        .field("value_basis", FieldType::Enum(ValueBasis::names()))
}

/// A checked filter as a SQL condition; violations are recorded under `filter`.
fn filter_arg(
    src: &str,
    schema: &Schema,
    cols: &'static [&'static str],
    backend: sea_orm::DbBackend,
    v: &mut FieldViolations,
) -> Option<SimpleExpr> {
    match retention_filter::parse_and_check(src, schema) {
        Ok(f) => f.map(|f| repo::condition(&f, backend, cols)),
        Err(e) => {
            v.add("filter", e.to_string());
            None
        }
    }
}

/// The keyset cursor of a newest-first listing; a token that decodes but holds no
/// cursor is reported, not read as the first page.
fn time_cursor(c: Option<String>, v: &mut FieldViolations) -> Option<(DateTime<Utc>, String)> {
    let c = c?;
    let parsed = parse_time_key(&c);
    if parsed.is_none() {
        v.add("page_token", "is not a valid page token");
    }
    parsed
}

/// The page token after `next` (empty on the last page).
fn token(kind: &str, query: &str, next: Option<String>) -> String {
    next.map(|c| encode_token(kind, query, &c))
        .unwrap_or_default()
}

/// The id in the one resource name a call takes, or INVALID_ARGUMENT on `field`.
fn id_arg(name: &str, collection: &str, field: &str) -> Result<String, Status> {
    let mut v = FieldViolations::new();
    let id = name_arg(name, collection, field, &mut v);
    v.into_result()?;
    Ok(id)
}

fn customer_arg(name: &str, field: &str, v: &mut FieldViolations) -> String {
    name_arg(name, "customers", field, v)
}

fn time_arg(
    t: Option<&prost_types::Timestamp>,
    field: &str,
    v: &mut FieldViolations,
) -> Option<DateTime<Utc>> {
    let t = t?;
    let parsed = convert::from_ts(t);
    if parsed.is_none() {
        v.add(field, "is not a valid timestamp");
    }
    parsed
}

fn not_future(t: DateTime<Utc>, field: &str, v: &mut FieldViolations) {
    v.check(
        t <= Utc::now() + chrono::Duration::seconds(CLOCK_SKEW_SECS),
        field,
        "must not be in the future",
    );
}

/// The spec of a submitted campaign, validated, with what the spec does not hold.
fn new_campaign(c: pb::Campaign, v: &mut FieldViolations) -> Option<NewCampaign> {
    let offer = c.offer.clone().unwrap_or_default();
    let cost = offer.cost.clone().unwrap_or_default();
    let budget = c.budget.clone().unwrap_or_default();
    let target_segment = (!c.target_segment.is_empty())
        .then(|| name_arg(&c.target_segment, "segments", "campaign.target_segment", v));
    let spec = CampaignSpec {
        display_name: c.display_name.clone(),
        kind: convert::kind_from(c.kind),
        strategy: convert::strategy_from(c.strategy),
        offer: convert::offer_kind_from(offer.kind),
        offer_cost_minor: cost.minor_units,
        currency: cost.currency_code.clone(),
        channel: c.channel.clone(),
        target_segment,
        target_filter: (!c.target_filter.is_empty()).then(|| c.target_filter.clone()),
        budget_minor: budget.minor_units,
        max_cost_share_of_value: c.max_cost_share_of_value,
        value_basis: convert::value_basis_from(c.value_basis),
        holdout_share: c.holdout_share,
        win_window_days: c.win_window_days,
        cool_down_days: c.cool_down_days,
    };
    validate(&spec, "campaign.", v);
    v.check(
        c.display_name.chars().count() <= MAX_TEXT,
        "campaign.display_name",
        format!("must be at most {MAX_TEXT} characters"),
    );
    v.check(
        offer.description.chars().count() <= MAX_TEXT,
        "campaign.offer.description",
        format!("must be at most {MAX_TEXT} characters"),
    );
    v.check(
        budget.currency_code == cost.currency_code,
        "campaign.budget.currency_code",
        "must be the offer cost's currency",
    );
    v.check(
        !c.triggered || spec.target_segment.is_some(),
        "campaign.triggered",
        "a triggered campaign enrols customers entering a segment: set target_segment",
    );
    v.check(
        c.value_basis == 0 || spec.value_basis.is_some(),
        "campaign.value_basis",
        "must be VALUE_BASIS_EXPECTED or VALUE_BASIS_IF_RETAINED (unspecified: the kind's default)",
    );
    let schedule_time = time_arg(c.schedule_time.as_ref(), "campaign.schedule_time", v);
    let channel = ContactChannel::parse(&c.channel);
    if !v.is_empty() {
        return None;
    }
    Some(NewCampaign {
        spec,
        offer_description: offer.description,
        channel: channel?,
        seed: (c.seed != 0).then_some(c.seed),
        schedule_time,
        triggered: c.triggered,
    })
}

#[tonic::async_trait]
impl WinbackService for WinbackGrpc {
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

    async fn record_churn(
        &self,
        req: Request<pb::RecordChurnRequest>,
    ) -> Result<Response<pb::ChurnRecord>, Status> {
        let budget = remaining_budget(&req);
        let r = req.into_inner();
        let mut v = FieldViolations::new();
        check_request_id(&mut v, &r.request_id);
        let Some(c) = r.churn_record else {
            v.add("churn_record", "is required");
            return Err(v.into_status());
        };
        let customer_id = customer_arg(&c.customer, "churn_record.customer", &mut v);
        let churn_type = convert::churn_type_from(c.churn_type);
        v.check(
            churn_type.is_some(),
            "churn_record.churn_type",
            "is required: NATURAL, COMPETITIVE, FAULT, NON_MALICIOUS, RETALIATORY or MALICIOUS",
        );
        let mut reason_codes: Vec<ReasonCode> = Vec::new();
        for (i, code) in c.reason_codes.iter().enumerate() {
            match convert::reason_from(*code) {
                Some(rc) if !reason_codes.contains(&rc) => reason_codes.push(rc),
                Some(_) => {}
                None => v.add(
                    format!("churn_record.reason_codes[{i}]"),
                    "is not a known reason code",
                ),
            }
        }
        v.check(
            c.evidence.chars().count() <= MAX_EVIDENCE,
            "churn_record.evidence",
            format!("must be at most {MAX_EVIDENCE} characters"),
        );
        let churn_time = time_arg(c.churn_time.as_ref(), "churn_record.churn_time", &mut v)
            .unwrap_or_else(retention_domain::now);
        not_future(churn_time, "churn_record.churn_time", &mut v);
        let value_at_churn = c.value_at_churn.map(|m| {
            v.check(
                m.currency_code.len() == 3
                    && m.currency_code.chars().all(|ch| ch.is_ascii_uppercase()),
                "churn_record.value_at_churn.currency_code",
                "must be an ISO 4217 code such as \"CNY\"",
            );
            Money {
                currency: m.currency_code,
                minor_units: m.minor_units,
            }
        });
        v.into_result()?;
        let record = ChurnRecord {
            id: String::new(),
            customer_id,
            churn_type: churn_type.expect("validated"),
            reason_codes,
            evidence: c.evidence,
            churn_time,
            value_at_churn,
            create_time: churn_time,
        };
        let r = self.app.record_churn(record, &r.request_id, budget).await?;
        Ok(Response::new(convert::churn_record(&r)))
    }

    async fn get_churn_record(
        &self,
        req: Request<pb::GetChurnRecordRequest>,
    ) -> Result<Response<pb::ChurnRecord>, Status> {
        let id = id_arg(&req.get_ref().name, "churnRecords", "name")?;
        Ok(Response::new(convert::churn_record(
            &self.app.get_churn(&id).await?,
        )))
    }

    async fn list_churn_records(
        &self,
        req: Request<pb::ListChurnRecordsRequest>,
    ) -> Result<Response<pb::ListChurnRecordsResponse>, Status> {
        let r = req.into_inner();
        let (rows, next_page_token) = self
            .newest_first(
                &CHURN_LISTING,
                (&r.filter, r.page_size, &r.page_token),
                |filter, before, limit| self.app.list_churn(filter, before, limit),
                |last| time_key(last.churn_time, &last.id),
            )
            .await?;
        Ok(Response::new(pb::ListChurnRecordsResponse {
            churn_records: rows.iter().map(convert::churn_record).collect(),
            next_page_token,
        }))
    }

    async fn classify_churn(
        &self,
        req: Request<pb::ClassifyChurnRequest>,
    ) -> Result<Response<pb::ChurnClassification>, Status> {
        let r = req.into_inner();
        let mut v = FieldViolations::new();
        let customer_id = customer_arg(&r.customer, "customer", &mut v);
        let s = r.signals.unwrap_or_default();
        for (field, n) in [
            ("signals.unresolved_complaints", s.unresolved_complaints),
            ("signals.breached_complaints", s.breached_complaints),
            ("signals.escalated_complaints", s.escalated_complaints),
            ("signals.at_risk_complaints", s.at_risk_complaints),
        ] {
            v.check(n >= 0, field, "must not be negative");
        }
        v.check(
            s.competitor_mentioned.chars().count() <= MAX_TEXT,
            "signals.competitor_mentioned",
            format!("must be at most {MAX_TEXT} characters"),
        );
        v.into_result()?;
        let signals = ChurnSignals {
            unresolved_complaints: s.unresolved_complaints.max(0) as u32,
            breached_complaints: s.breached_complaints.max(0) as u32,
            escalated_complaints: s.escalated_complaints.max(0) as u32,
            at_risk_complaints: s.at_risk_complaints.max(0) as u32,
            payment_failed: s.payment_failed,
            fraud_suspected: s.fraud_suspected,
            credit_default: s.credit_default,
            competitor_mentioned: (!s.competitor_mentioned.trim().is_empty())
                .then(|| s.competitor_mentioned.trim().to_string()),
            moved_or_no_need: s.moved_or_no_need,
        };
        let c = self.app.classify_churn(&customer_id, signals).await?;
        Ok(Response::new(pb::ChurnClassification {
            churn_type: convert::churn_type(c.churn_type).into(),
            reason_codes: c
                .reason_codes
                .iter()
                .map(|r| convert::reason(*r).into())
                .collect(),
            reasons: c.reasons,
            countermeasure: c.churn_type.countermeasure().into(),
            targetable: c.churn_type.targetable(),
        }))
    }

    async fn create_campaign(
        &self,
        req: Request<pb::CreateCampaignRequest>,
    ) -> Result<Response<pb::Campaign>, Status> {
        let r = req.into_inner();
        let mut v = FieldViolations::new();
        check_request_id(&mut v, &r.request_id);
        let Some(c) = r.campaign else {
            v.add("campaign", "is required");
            return Err(v.into_status());
        };
        let n = new_campaign(c, &mut v);
        v.into_result()?;
        let Some(n) = n else {
            return Err(Status::invalid_argument("campaign is invalid"));
        };
        let c = self.app.create_campaign(n, &r.request_id).await?;
        Ok(Response::new(convert::campaign(&c)))
    }

    async fn get_campaign(
        &self,
        req: Request<pb::GetCampaignRequest>,
    ) -> Result<Response<pb::Campaign>, Status> {
        let id = id_arg(&req.get_ref().name, "campaigns", "name")?;
        Ok(Response::new(convert::campaign(
            &self.app.get_campaign(&id).await?,
        )))
    }

    async fn list_campaigns(
        &self,
        req: Request<pb::ListCampaignsRequest>,
    ) -> Result<Response<pb::ListCampaignsResponse>, Status> {
        let r = req.into_inner();
        let (rows, next_page_token) = self
            .newest_first(
                &CAMPAIGN_LISTING,
                (&r.filter, r.page_size, &r.page_token),
                |filter, before, limit| self.app.list_campaigns(filter, before, limit),
                |last| time_key(last.create_time, &last.id),
            )
            .await?;
        Ok(Response::new(pb::ListCampaignsResponse {
            campaigns: rows.iter().map(convert::campaign).collect(),
            next_page_token,
        }))
    }

    async fn launch_campaign(
        &self,
        req: Request<pb::LaunchCampaignRequest>,
    ) -> Result<Response<pb::Campaign>, Status> {
        let budget = remaining_budget(&req);
        let id = id_arg(&req.get_ref().name, "campaigns", "name")?;
        let entry = audit::entry(&req, "campaign.launch", [campaign_name(&id)]);
        let c = self
            .app
            .launch(&id, &req.get_ref().etag, budget, &entry)
            .await?;
        audit::log(&entry);
        Ok(Response::new(convert::campaign(&c)))
    }

    async fn pause_campaign(
        &self,
        req: Request<pb::PauseCampaignRequest>,
    ) -> Result<Response<pb::Campaign>, Status> {
        let entry = audit::entry(&req, "campaign.pause", Vec::<String>::new());
        let r = req.into_inner();
        self.act(&r.name, &r.etag, CampaignAction::Pause, entry)
            .await
    }

    async fn complete_campaign(
        &self,
        req: Request<pb::CompleteCampaignRequest>,
    ) -> Result<Response<pb::Campaign>, Status> {
        let entry = audit::entry(&req, "campaign.complete", Vec::<String>::new());
        let r = req.into_inner();
        self.act(&r.name, &r.etag, CampaignAction::Complete, entry)
            .await
    }

    async fn cancel_campaign(
        &self,
        req: Request<pb::CancelCampaignRequest>,
    ) -> Result<Response<pb::Campaign>, Status> {
        let entry = audit::entry(&req, "campaign.cancel", Vec::<String>::new());
        let r = req.into_inner();
        self.act(&r.name, &r.etag, CampaignAction::Cancel, entry)
            .await
    }

    async fn list_campaign_targets(
        &self,
        req: Request<pb::ListCampaignTargetsRequest>,
    ) -> Result<Response<pb::ListCampaignTargetsResponse>, Status> {
        let r = req.into_inner();
        let mut v = FieldViolations::new();
        let id = name_arg(&r.campaign, "campaigns", "campaign", &mut v);
        let limit = page_size(r.page_size, &mut v);
        let after = decode_token(&r.page_token, "targets", &r.campaign, &mut v);
        v.into_result()?;
        let rows = self.app.list_targets(&id, after, limit + 1).await?;
        let (rows, next) = split_page(rows, limit, |last| last.customer_id.clone());
        Ok(Response::new(pb::ListCampaignTargetsResponse {
            targets: rows.iter().map(convert::target).collect(),
            next_page_token: token("targets", &r.campaign, next),
        }))
    }

    async fn record_contact_outcome(
        &self,
        req: Request<pb::RecordContactOutcomeRequest>,
    ) -> Result<Response<pb::CampaignTarget>, Status> {
        let r = req.into_inner();
        let mut v = FieldViolations::new();
        check_request_id(&mut v, &r.request_id);
        let (campaign, customer) = match r.target.split_once("/targets/") {
            Some((c, t)) => (
                name_arg(c, "campaigns", "target", &mut v),
                parse_name(&format!("customers/{t}"), "customers").unwrap_or_else(|| {
                    v.add("target", "must be \"campaigns/{uuid}/targets/{uuid}\"");
                    String::new()
                }),
            ),
            None => {
                v.add("target", "must be \"campaigns/{uuid}/targets/{uuid}\"");
                (String::new(), String::new())
            }
        };
        let outcome = convert::outcome_from(r.outcome);
        v.check(
            outcome.is_some(),
            "outcome",
            "is required: CONTACTED, RESPONDED, DECLINED or OFFER_REDEEMED",
        );
        let at = time_arg(r.occur_time.as_ref(), "occur_time", &mut v)
            .unwrap_or_else(retention_domain::now);
        not_future(at, "occur_time", &mut v);
        v.into_result()?;
        let t = self
            .app
            .record_outcome(
                &campaign,
                &customer,
                outcome.expect("validated"),
                at,
                &r.request_id,
            )
            .await?;
        Ok(Response::new(convert::target(&t)))
    }

    async fn get_campaign_results(
        &self,
        req: Request<pb::GetCampaignResultsRequest>,
    ) -> Result<Response<pb::CampaignResults>, Status> {
        let id = id_arg(&req.get_ref().name, "campaigns", "name")?;
        Ok(Response::new(convert::results(
            &self.app.results(&id).await?,
        )))
    }

    async fn compare_strategies(
        &self,
        req: Request<pb::CompareStrategiesRequest>,
    ) -> Result<Response<pb::CompareStrategiesResponse>, Status> {
        let r = req.into_inner();
        let mut v = FieldViolations::new();
        let kind = convert::kind_from(r.kind);
        v.check(
            r.kind == 0 || kind.is_some(),
            "kind",
            "must be WINBACK, RETENTION or unspecified",
        );
        let start = time_arg(r.start_time.as_ref(), "start_time", &mut v);
        let end = time_arg(r.end_time.as_ref(), "end_time", &mut v);
        if let (Some(s), Some(e)) = (start, end) {
            v.check(s < e, "end_time", "must be after start_time");
        }
        v.into_result()?;
        let rows = self.app.compare_strategies(kind, start, end).await?;
        Ok(Response::new(pb::CompareStrategiesResponse {
            strategies: rows.iter().map(convert::strategy_outcome).collect(),
        }))
    }

    async fn recommend_retention_actions(
        &self,
        req: Request<pb::RecommendRetentionActionsRequest>,
    ) -> Result<Response<pb::RecommendRetentionActionsResponse>, Status> {
        let budget = remaining_budget(&req);
        let customer_id = id_arg(&req.get_ref().customer, "customers", "customer")?;
        let actions = self.app.recommend(&customer_id, budget).await?;
        Ok(Response::new(pb::RecommendRetentionActionsResponse {
            actions: actions
                .into_iter()
                .map(|a| pb::RetentionAction {
                    action: a.action.into(),
                    reason: a.reason,
                    strategy: convert::strategy(a.strategy).into(),
                })
                .collect(),
        }))
    }
}

impl WinbackGrpc {
    async fn act(
        &self,
        name: &str,
        etag: &str,
        action: CampaignAction,
        entry: AuditEntry,
    ) -> Result<Response<pb::Campaign>, Status> {
        let id = id_arg(name, "campaigns", "name")?;
        let entry = AuditEntry {
            resources: vec![campaign_name(&id)],
            ..entry
        };
        let c = self.app.act(&id, action, etag, &entry).await?;
        audit::log(&entry);
        Ok(Response::new(convert::campaign(&c)))
    }
}
