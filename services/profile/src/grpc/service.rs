//! `CustomerProfileService` over the application layer.

use retention_auth::Caller;
use retention_db::audit::AuditEntry;
use retention_errors::FieldViolations;
use retention_errors::names::check_request_id;
use retention_proto::profile as pb;
use retention_proto::profile::customer_profile_service_server::CustomerProfileService;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use retention_server::audit::{self, AuditAdmin};
use retention_server::backfill::{self as backfill_call, backfill};
use retention_server::paging::{
    decode_token, encode_token, page_size, parse_time_key, split_page, time_key,
};

use crate::app::{AppError, ProfileApp};
use crate::convert;
use crate::domain::filter::customer_filter_schema;
use crate::domain::now;
use crate::domain::validate::MAX_EMAIL;
use crate::domain::*;

pub const MAX_BATCH_GET: usize = 100;
pub const MAX_INGEST_MESSAGE: usize = 1000;
const MAX_REJECTED_REPORTED: usize = 100;
const PII_SCOPE: &str = "pii.read";

pub struct ProfileService {
    app: ProfileApp,
    backlog: retention_events::BacklogProbe,
    audit: AuditAdmin,
}

impl ProfileService {
    pub fn new(
        app: ProfileApp,
        backlog: retention_events::BacklogProbe,
        audit: AuditAdmin,
    ) -> Self {
        ProfileService {
            app,
            backlog,
            audit,
        }
    }

    /// Records an unmasked read of `customers` by the caller of `req` before the
    /// answer goes out: no unmasked answer without its audit record.
    async fn audit_pii_read<T>(
        &self,
        req: &Request<T>,
        customers: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<(), Status> {
        let entry = audit::entry(req, "customer.read_pii", customers);
        if entry.resources.is_empty() {
            return Ok(());
        }
        audit::record(&self.app.db, &entry).await
    }
}

fn sees_pii<T>(req: &Request<T>) -> bool {
    req.extensions()
        .get::<Caller>()
        .is_some_and(|c| c.has(PII_SCOPE))
}

fn render(c: &Customer, pii: bool) -> pb::Customer {
    if pii {
        convert::customer(c, false)
    } else {
        let mut masked = c.clone();
        masked.mask_pii();
        convert::customer(&masked, true)
    }
}

fn customer_id(name: &str, field: &str) -> Result<String, Status> {
    parse_customer_name(name).ok_or_else(|| {
        retention_errors::invalid_argument([(
            field,
            format!("must be \"customers/{{uuid}}\", got {name:?}"),
        )])
    })
}

/// The customer id `name` names, or a violation of `field`.
fn customer_ref(name: &str, field: impl Into<String>, v: &mut FieldViolations) -> Option<String> {
    let id = parse_customer_name(name);
    v.check(id.is_some(), field, "must be \"customers/{uuid}\"");
    id
}

/// The required part `x` of a request; when missing, every violation so far and
/// `field` as required.
fn required<T>(x: Option<T>, field: &str, v: &mut FieldViolations) -> Result<T, Status> {
    x.ok_or_else(|| {
        v.add(field, "is required");
        std::mem::take(v).into_status()
    })
}

#[tonic::async_trait]
impl CustomerProfileService for ProfileService {
    async fn list_audit_records(
        &self,
        req: Request<pb::ListAuditRecordsRequest>,
    ) -> Result<Response<retention_proto::common::ListAuditRecordsResponse>, Status> {
        self.audit.serve_list(req).await
    }

    async fn get_event_backlog(
        &self,
        _request: Request<pb::GetEventBacklogRequest>,
    ) -> Result<Response<retention_proto::common::EventBacklog>, Status> {
        Ok(Response::new(self.backlog.report().await?))
    }

    async fn create_customer(
        &self,
        req: Request<pb::CreateCustomerRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        let pii = sees_pii(&req);
        let r = req.into_inner();
        let mut v = FieldViolations::new();
        check_request_id(&mut v, &r.request_id);
        let c = required(r.customer, "customer", &mut v)?;
        let mut input = convert::customer_input(&c, "customer", &mut v);
        input.normalize();
        v.extend(input.validate("customer", true, now()));
        v.into_result()?;
        let created = self.app.create_customer(input, &r.request_id).await?;
        Ok(Response::new(render(&created, pii)))
    }

    async fn get_customer(
        &self,
        req: Request<pb::GetCustomerRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        let pii = sees_pii(&req);
        let id = customer_id(&req.get_ref().name, "name")?;
        let c = self.app.get_customer(&id).await?;
        if pii {
            self.audit_pii_read(&req, [c.name()]).await?;
        }
        Ok(Response::new(render(&c, pii)))
    }

    async fn batch_get_customers(
        &self,
        req: Request<pb::BatchGetCustomersRequest>,
    ) -> Result<Response<pb::BatchGetCustomersResponse>, Status> {
        let pii = sees_pii(&req);
        let names = &req.get_ref().names;
        let mut v = FieldViolations::new();
        v.check(
            !names.is_empty(),
            "names",
            "must name at least one customer",
        );
        v.check(
            names.len() <= MAX_BATCH_GET,
            "names",
            format!("at most {MAX_BATCH_GET} names"),
        );
        let mut ids = Vec::new();
        for (i, n) in names.iter().enumerate() {
            ids.extend(customer_ref(n, format!("names[{i}]"), &mut v));
        }
        v.into_result()?;
        let mut customers = Vec::with_capacity(ids.len());
        for id in ids {
            customers.push(render(&self.app.get_customer(&id).await?, pii));
        }
        if pii {
            self.audit_pii_read(&req, customers.iter().map(|c| c.name.clone()))
                .await?;
        }
        Ok(Response::new(pb::BatchGetCustomersResponse { customers }))
    }

    async fn update_customer(
        &self,
        req: Request<pb::UpdateCustomerRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        let pii = sees_pii(&req);
        let r = req.into_inner();
        let mut v = FieldViolations::new();
        let c = required(r.customer, "customer", &mut v)?;
        let id = customer_id(&c.name, "customer.name")?;
        let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
        let mut patch = convert::customer_input(&c, "customer", &mut v);
        patch.normalize();
        v.extend(patch.validate("customer", false, now()));
        v.into_result()?;
        let updated = self
            .app
            .update_customer(&id, patch, &paths, &c.etag)
            .await?;
        Ok(Response::new(render(&updated, pii)))
    }

    async fn list_customers(
        &self,
        req: Request<pb::ListCustomersRequest>,
    ) -> Result<Response<pb::ListCustomersResponse>, Status> {
        let pii = sees_pii(&req);
        let read_pii = audit::entry(&req, "customer.read_pii", Vec::<String>::new());
        let r = req.into_inner();
        let mut v = FieldViolations::new();
        let limit = page_size(r.page_size, &mut v);
        let filter = match retention_filter::parse_optional(&r.filter) {
            Ok(Some(f)) => match f.check(&customer_filter_schema()) {
                Ok(()) => Some(f),
                Err(e) => {
                    v.add("filter", e.to_string());
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                v.add("filter", e.to_string());
                None
            }
        };
        let email = (!r.email.is_empty()).then_some(r.email.as_str());
        if email.is_some_and(|e| e.chars().count() > MAX_EMAIL) {
            v.add("email", format!("must be at most {MAX_EMAIL} characters"));
        }
        if email.is_some() && !pii {
            return Err(Status::permission_denied(format!(
                "looking customers up by e-mail needs the {PII_SCOPE} scope"
            )));
        }
        // A page token names what it pages through; the address goes in as its
        // lookup hash, never in the clear.
        let email_hash = email.map(|e| self.app.email_lookup(e));
        let query = match &email_hash {
            Some(hash) => format!("{}\u{1f}{hash}", r.filter),
            None => r.filter.clone(),
        };
        let after = decode_token(&r.page_token, "customers", &query, &mut v);
        v.into_result()?;
        let mut page = self
            .app
            .list_customers(
                filter.as_ref(),
                email_hash.as_deref(),
                after.as_deref(),
                limit + 1,
            )
            .await?;
        let next = if page.len() as u64 > limit {
            page.truncate(limit as usize);
            page.last()
                .map(|c| encode_token("customers", &query, &c.id))
                .unwrap_or_default()
        } else {
            String::new()
        };
        if pii && !page.is_empty() {
            let read = AuditEntry {
                resources: page.iter().map(|c| c.name()).collect(),
                ..read_pii
            };
            audit::record(&self.app.db, &read).await?;
        }
        Ok(Response::new(pb::ListCustomersResponse {
            customers: page.iter().map(|c| render(c, pii)).collect(),
            next_page_token: next,
        }))
    }

    async fn merge_customers(
        &self,
        req: Request<pb::MergeCustomersRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        let pii = sees_pii(&req);
        let entry = audit::entry(
            &req,
            "customer.merge",
            [&req.get_ref().survivor, &req.get_ref().merged],
        );
        let r = req.into_inner();
        let entry = audit::with_request_id(entry, &r.request_id);
        let mut v = FieldViolations::new();
        check_request_id(&mut v, &r.request_id);
        let survivor = customer_ref(&r.survivor, "survivor", &mut v);
        let merged = customer_ref(&r.merged, "merged", &mut v);
        v.into_result()?;
        let (Some(s), Some(m)) = (survivor, merged) else {
            return Err(Status::invalid_argument("survivor and merged are required"));
        };
        let c = self
            .app
            .merge_customers(&s, &m, &r.request_id, &r.etag, &entry)
            .await?;
        audit::log(&entry);
        Ok(Response::new(render(&c, pii)))
    }

    async fn erase_customer(
        &self,
        req: Request<pb::EraseCustomerRequest>,
    ) -> Result<Response<pb::EraseCustomerResponse>, Status> {
        let caller = audit::entry(&req, "customer.erase", Vec::<String>::new());
        let r = req.into_inner();
        let mut v = FieldViolations::new();
        check_request_id(&mut v, &r.request_id);
        v.into_result()?;
        let id = customer_id(&r.name, "name")?;
        let entry = AuditEntry {
            resources: vec![customer_name(&id)],
            ..audit::with_request_id(caller, &r.request_id)
        };
        let (at, kept) = self.app.erase_customer(&id, &r.request_id, &entry).await?;
        audit::log(&entry);
        Ok(Response::new(pb::EraseCustomerResponse {
            name: customer_name(&id),
            erase_time: Some(convert::ts(at)),
            purchases_retained: kept as i64,
        }))
    }

    async fn export_customer_data(
        &self,
        req: Request<pb::ExportCustomerDataRequest>,
    ) -> Result<Response<pb::ExportCustomerDataResponse>, Status> {
        let pii = sees_pii(&req);
        let id = customer_id(&req.get_ref().name, "name")?;
        let (c, purchases, given, received) = self.app.export(&id).await?;
        audit::record(
            &self.app.db,
            &audit::entry(&req, "customer.export", [c.name()]),
        )
        .await?;
        Ok(Response::new(pb::ExportCustomerDataResponse {
            customer: Some(render(&c, pii)),
            purchases: purchases.iter().map(convert::purchase).collect(),
            referrals_given: given.iter().map(convert::referral).collect(),
            referrals_received: received.iter().map(convert::referral).collect(),
            export_time: Some(convert::ts(now())),
        }))
    }

    async fn update_consent(
        &self,
        req: Request<pb::UpdateConsentRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        let pii = sees_pii(&req);
        let r = req.into_inner();
        let mut v = FieldViolations::new();
        let channel = convert::channel_in(r.channel, "channel", &mut v);
        let status = convert::consent_status_in(r.status, "status", &mut v);
        if r.channel == 0 {
            v.add("channel", "is required");
        }
        if r.status == 0 {
            v.add("status", "is required");
        }
        v.check(
            r.source.chars().count() <= 128,
            "source",
            "must be at most 128 characters",
        );
        v.into_result()?;
        let id = customer_id(&r.name, "name")?;
        let (Some(channel), Some(status)) = (channel, status) else {
            return Err(Status::invalid_argument("channel and status are required"));
        };
        let consent = Consent {
            channel,
            status,
            source: r.source,
            update_time: now(),
        };
        let c = self.app.update_consent(&id, consent).await?;
        Ok(Response::new(render(&c, pii)))
    }

    async fn record_purchase(
        &self,
        req: Request<pb::RecordPurchaseRequest>,
    ) -> Result<Response<pb::Purchase>, Status> {
        let r = req.into_inner();
        let mut v = FieldViolations::new();
        let p = required(r.purchase, "purchase", &mut v)?;
        let owner = customer_ref(&p.customer, "purchase.customer", &mut v);
        let input = convert::purchase_input(&p, "purchase", &mut v);
        v.extend(input.validate("purchase", now()));
        v.into_result()?;
        let Some(owner) = owner else {
            return Err(Status::invalid_argument("purchase.customer is required"));
        };
        let stored = self.app.record_purchase(&owner, input).await?;
        Ok(Response::new(convert::purchase(&stored)))
    }

    async fn record_purchases(
        &self,
        req: Request<Streaming<pb::RecordPurchasesRequest>>,
    ) -> Result<Response<pb::RecordPurchasesResponse>, Status> {
        let mut stream = req.into_inner();
        let mut out = pb::RecordPurchasesResponse::default();
        let mut index: i64 = 0;
        let reject =
            |out: &mut pb::RecordPurchasesResponse, index: i64, order: &str, reason: String| {
                out.rejected_count += 1;
                if out.rejected.len() < MAX_REJECTED_REPORTED {
                    out.rejected.push(pb::RejectedPurchase {
                        index,
                        order_id: order.into(),
                        reason,
                    });
                }
            };
        while let Some(msg) = stream.next().await {
            let msg = msg?;
            if msg.purchases.len() > MAX_INGEST_MESSAGE {
                return Err(retention_errors::invalid_argument([(
                    "purchases",
                    format!("at most {MAX_INGEST_MESSAGE} purchases per message"),
                )]));
            }
            let mut batch = Vec::with_capacity(msg.purchases.len());
            let mut positions = Vec::with_capacity(msg.purchases.len());
            for p in &msg.purchases {
                let mut v = FieldViolations::new();
                let owner = customer_ref(&p.customer, "customer", &mut v);
                let input = convert::purchase_input(p, "purchase", &mut v);
                v.extend(input.validate("purchase", now()));
                match owner {
                    Some(owner) if v.is_empty() => {
                        batch.push((owner, input));
                        positions.push((index, p.order_id.clone()));
                    }
                    _ => {
                        let reason = v
                            .iter()
                            .map(|(f, d)| format!("{f}: {d}"))
                            .collect::<Vec<_>>()
                            .join("; ");
                        reject(&mut out, index, &p.order_id, reason);
                    }
                }
                index += 1;
            }
            if batch.is_empty() {
                continue;
            }
            let (counts, failures) = self.app.record_purchase_batch(batch).await?;
            out.recorded_count += counts.recorded;
            out.duplicate_count += counts.duplicates;
            for (i, err) in failures {
                let (pos, order) = &positions[i];
                let reason = match err {
                    AppError::NotFound(name) => format!("customer {name} not found"),
                    other => other.to_string(),
                };
                reject(&mut out, *pos, order, reason);
            }
        }
        Ok(Response::new(out))
    }

    async fn list_purchases(
        &self,
        req: Request<pb::ListPurchasesRequest>,
    ) -> Result<Response<pb::ListPurchasesResponse>, Status> {
        let r = req.into_inner();
        let mut v = FieldViolations::new();
        let limit = page_size(r.page_size, &mut v);
        let cursor = decode_token(&r.page_token, "purchases", &r.parent, &mut v);
        let before = cursor.and_then(|c| parse_time_key(&c));
        v.into_result()?;
        let id = customer_id(&r.parent, "parent")?;
        let page = self.app.list_purchases(&id, before, limit + 1).await?;
        let (page, next) = split_page(page, limit, |p| time_key(p.occur_time, &p.id));
        let next = next
            .map(|c| encode_token("purchases", &r.parent, &c))
            .unwrap_or_default();
        Ok(Response::new(pb::ListPurchasesResponse {
            purchases: page.iter().map(convert::purchase).collect(),
            next_page_token: next,
        }))
    }

    async fn record_referral(
        &self,
        req: Request<pb::RecordReferralRequest>,
    ) -> Result<Response<pb::Referral>, Status> {
        let r = req.into_inner();
        let mut v = FieldViolations::new();
        let rf = required(r.referral, "referral", &mut v)?;
        let a = customer_ref(&rf.referrer, "referral.referrer", &mut v);
        let b = customer_ref(&rf.referred, "referral.referred", &mut v);
        let at = rf
            .occur_time
            .as_ref()
            .and_then(|t| convert::from_ts(t, "referral.occur_time", &mut v))
            .unwrap_or_else(now);
        v.into_result()?;
        let (Some(a), Some(b)) = (a, b) else {
            return Err(Status::invalid_argument(
                "referrer and referred are required",
            ));
        };
        let stored = self.app.record_referral(&a, &b, at).await?;
        Ok(Response::new(convert::referral(&stored)))
    }

    async fn backfill_events(
        &self,
        req: Request<pb::BackfillEventsRequest>,
    ) -> Result<Response<pb::BackfillEventsResponse>, Status> {
        let entry = audit::entry(&req, backfill_call::ACTION, [&req.get_ref().consumer_group]);
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
