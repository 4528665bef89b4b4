//! `InteractionService` over the application layer.

use chrono::{DateTime, Utc};
use retention_errors::FieldViolations;
use retention_errors::names::{check_request_id, name_arg};
use retention_proto::interactions as pb;
use retention_proto::interactions::interaction_service_server::InteractionService;
use retention_server::backfill::backfill;
use retention_server::paging::{
    decode_token, encode_token, page_size, parse_time_key, split_page, time_key,
};
use tonic::{Request, Response, Status};

use crate::app::{InteractionsApp, NewComplaint};
use crate::convert;
use crate::domain::*;
use crate::store::repo::{ComplaintQuery, InteractionQuery};

pub struct InteractionsService {
    app: InteractionsApp,
    backlog: retention_events::BacklogProbe,
    dead_letters: retention_server::dead_letters::DeadLetterAdmin,
    audit: retention_server::audit::AuditAdmin,
}

impl InteractionsService {
    pub fn new(
        app: InteractionsApp,
        backlog: retention_events::BacklogProbe,
        dead_letters: retention_server::dead_letters::DeadLetterAdmin,
        audit: retention_server::audit::AuditAdmin,
    ) -> Self {
        InteractionsService {
            app,
            backlog,
            dead_letters,
            audit,
        }
    }
}

/// Splits rows fetched with `limit + 1` into the page and the token of the next one
/// (empty when this is the last page); `key` is the (time, id) keyset cursor.
fn paginate<T>(
    rows: Vec<T>,
    limit: u64,
    kind: &str,
    query: &str,
    key: impl Fn(&T) -> (DateTime<Utc>, &String),
) -> (Vec<T>, String) {
    let (rows, next) = split_page(rows, limit, |last| {
        let (t, id) = key(last);
        time_key(t, id)
    });
    (
        rows,
        next.map(|c| encode_token(kind, query, &c))
            .unwrap_or_default(),
    )
}

/// A required [start, end) period, end after start.
fn period(
    start: Option<&prost_types::Timestamp>,
    end: Option<&prost_types::Timestamp>,
    v: &mut FieldViolations,
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let start = start.and_then(|t| convert::from_ts(t, "start_time", v));
    let end = end.and_then(|t| convert::from_ts(t, "end_time", v));
    let start = required(start, "start_time", v);
    let end = required(end, "end_time", v);
    let (s, e) = (start?, end?);
    v.check(s < e, "end_time", "must be after start_time");
    Some((s, e))
}

fn required<T>(x: Option<T>, field: &str, v: &mut FieldViolations) -> Option<T> {
    if x.is_none() && !v.iter().any(|(f, _)| f == field) {
        v.add(field, "is required");
    }
    x
}

#[tonic::async_trait]
impl InteractionService for InteractionsService {
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

    async fn log_interaction(
        &self,
        req: Request<pb::LogInteractionRequest>,
    ) -> Result<Response<pb::Interaction>, Status> {
        let r = req.into_inner();
        let mut v = FieldViolations::new();
        check_request_id(&mut v, &r.request_id);
        let Some(i) = r.interaction else {
            v.add("interaction", "is required");
            return Err(v.into_status());
        };
        let customer_id = name_arg(&i.customer, "customers", "interaction.customer", &mut v);
        let channel = required(
            convert::channel_in(i.channel, "interaction.channel", &mut v),
            "interaction.channel",
            &mut v,
        );
        let direction = required(
            convert::direction_in(i.direction, "interaction.direction", &mut v),
            "interaction.direction",
            &mut v,
        );
        let kind = convert::kind_in(i.kind, "interaction.kind", &mut v);
        let phase = convert::phase_in(i.purchase_phase, "interaction.purchase_phase", &mut v);
        let occur_time = match &i.occur_time {
            Some(t) => convert::from_ts(t, "interaction.occur_time", &mut v),
            None => Some(now()),
        };
        let complaint_id = (!i.complaint.is_empty())
            .then(|| name_arg(&i.complaint, "complaints", "interaction.complaint", &mut v));
        let (Some(channel), Some(direction), Some(occur_time)) = (channel, direction, occur_time)
        else {
            return Err(v.into_status());
        };
        let interaction = Interaction {
            id: String::new(),
            customer_id,
            channel,
            direction,
            kind,
            purchase_phase: phase,
            agent: i.agent.trim().to_string(),
            summary: i.summary.trim().to_string(),
            occur_time,
            complaint_id,
        };
        v.extend(interaction.validate("interaction", now()));
        v.into_result()?;
        let stored = self.app.log_interaction(interaction, &r.request_id).await?;
        Ok(Response::new(convert::interaction(&stored)))
    }

    async fn list_interactions(
        &self,
        req: Request<pb::ListInteractionsRequest>,
    ) -> Result<Response<pb::ListInteractionsResponse>, Status> {
        let r = req.into_inner();
        let mut v = FieldViolations::new();
        let limit = page_size(r.page_size, &mut v);
        let customer_id = name_arg(&r.customer, "customers", "customer", &mut v);
        let q = InteractionQuery {
            customer_id,
            channel: convert::channel_in(r.channel, "channel", &mut v),
            purchase_phase: convert::phase_in(r.purchase_phase, "purchase_phase", &mut v),
            start: r
                .start_time
                .as_ref()
                .and_then(|t| convert::from_ts(t, "start_time", &mut v)),
            end: r
                .end_time
                .as_ref()
                .and_then(|t| convert::from_ts(t, "end_time", &mut v)),
        };
        let query_key = format!(
            "{}|{}|{}|{:?}|{:?}",
            r.customer, r.channel, r.purchase_phase, r.start_time, r.end_time
        );
        let before = decode_token(&r.page_token, "interactions", &query_key, &mut v)
            .and_then(|c| parse_time_key(&c));
        v.into_result()?;
        let rows = self.app.list_interactions(&q, before, limit + 1).await?;
        let (page, next) = paginate(rows, limit, "interactions", &query_key, |i| {
            (i.occur_time, &i.id)
        });
        Ok(Response::new(pb::ListInteractionsResponse {
            interactions: page.iter().map(convert::interaction).collect(),
            next_page_token: next,
        }))
    }

    async fn open_complaint(
        &self,
        req: Request<pb::OpenComplaintRequest>,
    ) -> Result<Response<pb::Complaint>, Status> {
        let r = req.into_inner();
        let mut v = FieldViolations::new();
        check_request_id(&mut v, &r.request_id);
        let Some(c) = r.complaint else {
            v.add("complaint", "is required");
            return Err(v.into_status());
        };
        let customer_id = name_arg(&c.customer, "customers", "complaint.customer", &mut v);
        let category = required(
            convert::category_in(c.category, "complaint.category", &mut v),
            "complaint.category",
            &mut v,
        );
        let severity = required(
            convert::severity_in(c.severity, "complaint.severity", &mut v),
            "complaint.severity",
            &mut v,
        );
        let priority = convert::priority_in(c.priority, "complaint.priority", &mut v);
        let channel = convert::channel_in(c.channel, "complaint.channel", &mut v);
        let subject = c.subject.trim().to_string();
        v.check(
            !subject.is_empty(),
            "complaint.subject",
            "must not be empty",
        );
        check_text(&mut v, "complaint.subject", &subject, 200);
        check_text(&mut v, "complaint.description", &c.description, 8000);
        let (Some(category), Some(severity)) = (category, severity) else {
            return Err(v.into_status());
        };
        v.into_result()?;
        let opened = self
            .app
            .open_complaint(
                NewComplaint {
                    customer_id,
                    category,
                    severity,
                    priority,
                    channel,
                    subject,
                    description: c.description,
                },
                &r.request_id,
            )
            .await?;
        Ok(Response::new(convert::complaint(&opened)))
    }

    async fn get_complaint(
        &self,
        req: Request<pb::GetComplaintRequest>,
    ) -> Result<Response<pb::Complaint>, Status> {
        let mut v = FieldViolations::new();
        let id = name_arg(&req.get_ref().name, "complaints", "name", &mut v);
        v.into_result()?;
        Ok(Response::new(convert::complaint(
            &self.app.get_complaint(&id).await?,
        )))
    }

    async fn list_complaints(
        &self,
        req: Request<pb::ListComplaintsRequest>,
    ) -> Result<Response<pb::ListComplaintsResponse>, Status> {
        let r = req.into_inner();
        let mut v = FieldViolations::new();
        let limit = page_size(r.page_size, &mut v);
        let q = ComplaintQuery {
            customer_id: (!r.customer.is_empty())
                .then(|| name_arg(&r.customer, "customers", "customer", &mut v)),
            state: convert::state_in(r.state, "state", &mut v),
            category: convert::category_in(r.category, "category", &mut v),
            breached_only: r.breached_only,
        };
        let query_key = format!(
            "{}|{}|{}|{}",
            r.customer, r.state, r.category, r.breached_only
        );
        let before = decode_token(&r.page_token, "complaints", &query_key, &mut v)
            .and_then(|c| parse_time_key(&c));
        v.into_result()?;
        let rows = self.app.list_complaints(&q, before, limit + 1).await?;
        let (page, next) = paginate(rows, limit, "complaints", &query_key, |c| {
            (c.open_time, &c.id)
        });
        Ok(Response::new(pb::ListComplaintsResponse {
            complaints: page.iter().map(convert::complaint).collect(),
            next_page_token: next,
        }))
    }

    async fn acknowledge_complaint(
        &self,
        req: Request<pb::AcknowledgeComplaintRequest>,
    ) -> Result<Response<pb::Complaint>, Status> {
        let r = req.into_inner();
        let mut v = FieldViolations::new();
        let id = name_arg(&r.name, "complaints", "name", &mut v);
        check_text(&mut v, "note", &r.note, 2000);
        v.into_result()?;
        Ok(Response::new(convert::complaint(
            &self.app.act(&id, Action::Acknowledge, &r.etag).await?,
        )))
    }

    async fn assign_complaint(
        &self,
        req: Request<pb::AssignComplaintRequest>,
    ) -> Result<Response<pb::Complaint>, Status> {
        let r = req.into_inner();
        let mut v = FieldViolations::new();
        let id = name_arg(&r.name, "complaints", "name", &mut v);
        let assignee = r.assignee.trim().to_string();
        v.check(!assignee.is_empty(), "assignee", "must not be empty");
        check_text(&mut v, "assignee", &assignee, 128);
        let team = r.team.trim().to_string();
        check_text(&mut v, "team", &team, 128);
        v.into_result()?;
        let team = (!team.is_empty()).then_some(team);
        Ok(Response::new(convert::complaint(
            &self
                .app
                .act(&id, Action::Assign { assignee, team }, &r.etag)
                .await?,
        )))
    }

    async fn escalate_complaint(
        &self,
        req: Request<pb::EscalateComplaintRequest>,
    ) -> Result<Response<pb::Complaint>, Status> {
        let r = req.into_inner();
        let mut v = FieldViolations::new();
        let id = name_arg(&r.name, "complaints", "name", &mut v);
        check_text(&mut v, "reason", &r.reason, 2000);
        v.into_result()?;
        Ok(Response::new(convert::complaint(
            &self.app.act(&id, Action::Escalate, &r.etag).await?,
        )))
    }

    async fn resolve_complaint(
        &self,
        req: Request<pb::ResolveComplaintRequest>,
    ) -> Result<Response<pb::Complaint>, Status> {
        let r = req.into_inner();
        let mut v = FieldViolations::new();
        let id = name_arg(&r.name, "complaints", "name", &mut v);
        let Some(res) = r.resolution else {
            v.add("resolution", "is required");
            return Err(v.into_status());
        };
        let outcome = required(
            convert::outcome_in(res.outcome, "resolution.outcome", &mut v),
            "resolution.outcome",
            &mut v,
        );
        let gap = convert::gap_in(res.service_gap, "resolution.service_gap", &mut v);
        let compensation = res.compensation.map(|m| Money {
            currency: m.currency_code,
            minor_units: m.minor_units,
        });
        if let Some(m) = &compensation {
            m.validate_compensation("resolution.compensation", &mut v);
        }
        check_text(&mut v, "resolution.root_cause", &res.root_cause, 2000);
        let Some(outcome) = outcome else {
            return Err(v.into_status());
        };
        v.into_result()?;
        let resolution = Resolution {
            outcome,
            compensation,
            root_cause: res.root_cause.trim().to_string(),
            service_gap: gap,
            resolve_time: now(),
        };
        Ok(Response::new(convert::complaint(
            &self
                .app
                .act(&id, Action::Resolve(resolution), &r.etag)
                .await?,
        )))
    }

    async fn reopen_complaint(
        &self,
        req: Request<pb::ReopenComplaintRequest>,
    ) -> Result<Response<pb::Complaint>, Status> {
        let r = req.into_inner();
        let mut v = FieldViolations::new();
        let id = name_arg(&r.name, "complaints", "name", &mut v);
        check_text(&mut v, "reason", &r.reason, 2000);
        v.into_result()?;
        Ok(Response::new(convert::complaint(
            &self.app.act(&id, Action::Reopen, &r.etag).await?,
        )))
    }

    async fn close_complaint(
        &self,
        req: Request<pb::CloseComplaintRequest>,
    ) -> Result<Response<pb::Complaint>, Status> {
        let r = req.into_inner();
        let mut v = FieldViolations::new();
        let id = name_arg(&r.name, "complaints", "name", &mut v);
        v.into_result()?;
        Ok(Response::new(convert::complaint(
            &self.app.act(&id, Action::Close, &r.etag).await?,
        )))
    }

    async fn pause_complaint(
        &self,
        req: Request<pb::PauseComplaintRequest>,
    ) -> Result<Response<pb::Complaint>, Status> {
        let r = req.into_inner();
        let mut v = FieldViolations::new();
        let id = name_arg(&r.name, "complaints", "name", &mut v);
        v.into_result()?;
        Ok(Response::new(convert::complaint(
            &self.app.pause_complaint(&id, &r.etag).await?,
        )))
    }

    async fn resume_complaint(
        &self,
        req: Request<pb::ResumeComplaintRequest>,
    ) -> Result<Response<pb::Complaint>, Status> {
        let r = req.into_inner();
        let mut v = FieldViolations::new();
        let id = name_arg(&r.name, "complaints", "name", &mut v);
        v.into_result()?;
        Ok(Response::new(convert::complaint(
            &self.app.resume_complaint(&id, &r.etag).await?,
        )))
    }

    async fn create_sla_policy(
        &self,
        req: Request<pb::CreateSlaPolicyRequest>,
    ) -> Result<Response<pb::SlaPolicy>, Status> {
        let mut v = FieldViolations::new();
        let Some(p) = req.into_inner().policy else {
            v.add("policy", "is required");
            return Err(v.into_status());
        };
        let priority = required(
            convert::priority_in(p.priority, "policy.priority", &mut v),
            "policy.priority",
            &mut v,
        );
        let tier = required(
            convert::tier_in(p.customer_tier, "policy.customer_tier", &mut v),
            "policy.customer_tier",
            &mut v,
        );
        const MAX_MINUTES: i32 = 60 * 24 * 365;
        v.check(
            (1..=MAX_MINUTES).contains(&p.first_response_minutes),
            "policy.first_response_minutes",
            "must be between 1 minute and a year",
        );
        v.check(
            (1..=MAX_MINUTES).contains(&p.resolution_minutes),
            "policy.resolution_minutes",
            "must be between 1 minute and a year",
        );
        v.check(
            p.resolution_minutes >= p.first_response_minutes,
            "policy.resolution_minutes",
            "must not be shorter than the first-response target",
        );
        v.check(
            (0..=MAX_MINUTES).contains(&p.next_response_minutes),
            "policy.next_response_minutes",
            "must be between 0 (none) and a year",
        );
        v.check(
            (0..=99).contains(&p.at_risk_percent),
            "policy.at_risk_percent",
            "must be between 1 and 99 percent of a target (0: the default 80)",
        );
        let calendar_id = (!p.calendar.is_empty())
            .then(|| name_arg(&p.calendar, "calendars", "policy.calendar", &mut v));
        let (Some(priority), Some(tier)) = (priority, tier) else {
            return Err(v.into_status());
        };
        v.into_result()?;
        let policy = SlaPolicy {
            priority,
            tier,
            targets: SlaTargets {
                first_response: chrono::Duration::minutes(p.first_response_minutes.into()),
                resolution: chrono::Duration::minutes(p.resolution_minutes.into()),
                next_response: (p.next_response_minutes > 0)
                    .then(|| chrono::Duration::minutes(p.next_response_minutes.into())),
                at_risk_percent: match p.at_risk_percent {
                    0 => DEFAULT_AT_RISK_PERCENT,
                    n => n,
                },
                escalate_at_risk: p.escalate_at_risk,
            },
            calendar_id,
        };
        self.app.create_policy(&policy).await?;
        Ok(Response::new(convert::policy(&policy)))
    }

    async fn list_sla_policies(
        &self,
        _req: Request<pb::ListSlaPoliciesRequest>,
    ) -> Result<Response<pb::ListSlaPoliciesResponse>, Status> {
        let policies = self.app.list_policies().await?;
        Ok(Response::new(pb::ListSlaPoliciesResponse {
            policies: policies.iter().map(convert::policy).collect(),
        }))
    }

    async fn create_business_calendar(
        &self,
        req: Request<pb::CreateBusinessCalendarRequest>,
    ) -> Result<Response<pb::BusinessCalendar>, Status> {
        let r = req.into_inner();
        let mut v = FieldViolations::new();
        check_request_id(&mut v, &r.request_id);
        let Some(c) = r.calendar else {
            v.add("calendar", "is required");
            return Err(v.into_status());
        };
        let definition = convert::calendar_in(&c, "calendar", &mut v);
        v.into_result()?;
        let stored = self.app.create_calendar(definition, &r.request_id).await?;
        Ok(Response::new(convert::calendar(&stored)))
    }

    async fn get_business_calendar(
        &self,
        req: Request<pb::GetBusinessCalendarRequest>,
    ) -> Result<Response<pb::BusinessCalendar>, Status> {
        let mut v = FieldViolations::new();
        let id = name_arg(&req.get_ref().name, "calendars", "name", &mut v);
        v.into_result()?;
        Ok(Response::new(convert::calendar(
            &self.app.get_calendar(&id).await?,
        )))
    }

    async fn list_business_calendars(
        &self,
        req: Request<pb::ListBusinessCalendarsRequest>,
    ) -> Result<Response<pb::ListBusinessCalendarsResponse>, Status> {
        let r = req.into_inner();
        let mut v = FieldViolations::new();
        let limit = page_size(r.page_size, &mut v);
        let after = decode_token(&r.page_token, "calendars", "", &mut v);
        v.into_result()?;
        let rows = self.app.list_calendars(after.as_deref(), limit + 1).await?;
        let (page, next) = split_page(rows, limit, |c| c.id.clone());
        Ok(Response::new(pb::ListBusinessCalendarsResponse {
            calendars: page.iter().map(convert::calendar).collect(),
            next_page_token: next
                .map(|c| encode_token("calendars", "", &c))
                .unwrap_or_default(),
        }))
    }

    async fn update_business_calendar(
        &self,
        req: Request<pb::UpdateBusinessCalendarRequest>,
    ) -> Result<Response<pb::BusinessCalendar>, Status> {
        let mut v = FieldViolations::new();
        let Some(c) = req.into_inner().calendar else {
            v.add("calendar", "is required");
            return Err(v.into_status());
        };
        let id = name_arg(&c.name, "calendars", "calendar.name", &mut v);
        let definition = convert::calendar_in(&c, "calendar", &mut v);
        v.into_result()?;
        let stored = self.app.update_calendar(&id, definition, &c.etag).await?;
        Ok(Response::new(convert::calendar(&stored)))
    }

    async fn record_survey(
        &self,
        req: Request<pb::RecordSurveyRequest>,
    ) -> Result<Response<pb::Survey>, Status> {
        let r = req.into_inner();
        let mut v = FieldViolations::new();
        check_request_id(&mut v, &r.request_id);
        let Some(s) = r.survey else {
            v.add("survey", "is required");
            return Err(v.into_status());
        };
        let customer_id = name_arg(&s.customer, "customers", "survey.customer", &mut v);
        let complaint_id = (!s.complaint.is_empty())
            .then(|| name_arg(&s.complaint, "complaints", "survey.complaint", &mut v));
        let occur_time = match &s.occur_time {
            Some(t) => convert::from_ts(t, "survey.occur_time", &mut v).unwrap_or_else(now),
            None => now(),
        };
        let nonzero = |x: i32| (x != 0).then_some(x);
        let survey = Survey {
            id: String::new(),
            customer_id,
            complaint_id,
            csat: nonzero(s.csat),
            nps: s.nps,
            expectation: nonzero(s.expectation),
            perceived: nonzero(s.perceived),
            occur_time,
        };
        v.extend(survey.validate("survey"));
        v.into_result()?;
        let stored = self.app.record_survey(survey, &r.request_id).await?;
        Ok(Response::new(convert::survey(&stored)))
    }

    async fn get_satisfaction_summary(
        &self,
        req: Request<pb::GetSatisfactionSummaryRequest>,
    ) -> Result<Response<pb::SatisfactionSummary>, Status> {
        let r = req.into_inner();
        let mut v = FieldViolations::new();
        let period = period(r.start_time.as_ref(), r.end_time.as_ref(), &mut v);
        let category = convert::category_in(r.category, "category", &mut v);
        let Some((start, end)) = period else {
            return Err(v.into_status());
        };
        v.into_result()?;
        let s = self.app.summary(start, end, category).await?;
        Ok(Response::new(convert::summary(&s)))
    }

    async fn get_sla_report(
        &self,
        req: Request<pb::GetSlaReportRequest>,
    ) -> Result<Response<pb::SlaReport>, Status> {
        let r = req.into_inner();
        let mut v = FieldViolations::new();
        let period = period(r.start_time.as_ref(), r.end_time.as_ref(), &mut v);
        let grouping = convert::grouping_in(r.group_by, "group_by", &mut v);
        let (Some((start, end)), Some(grouping)) = (period, grouping) else {
            return Err(v.into_status());
        };
        v.into_result()?;
        let report = self.app.sla_report(start, end, grouping, now()).await?;
        Ok(Response::new(convert::sla_report(
            &report, start, end, r.group_by,
        )))
    }

    async fn backfill_events(
        &self,
        req: Request<pb::BackfillEventsRequest>,
    ) -> Result<Response<pb::BackfillEventsResponse>, Status> {
        let entry = retention_server::audit::entry(
            &req,
            retention_server::backfill::ACTION,
            [&req.get_ref().consumer_group],
        );
        let r = req.into_inner();
        let answer = backfill(entry, (&r).into(), async |p, entry| {
            let (from, to, after) = (p.from.as_deref(), p.to.as_deref(), p.after.as_deref());
            self.app
                .backfill(&p.group, from, to, after, p.limit, entry)
                .await
        })
        .await?;
        Ok(Response::new(answer.into()))
    }
}
