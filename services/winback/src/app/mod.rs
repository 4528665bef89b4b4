//! Use cases of the win-back service. Every change and its events commit in one
//! transaction (outbox); campaigns change only through the state machine; calls to
//! segmentation happen before the transaction opens, so a peer failure leaves
//! nothing written.

mod launch;
mod outcomes;

use std::time::Duration;

use chrono::{DateTime, Utc};
use retention_db::audit::AuditEntry;
use retention_domain::now;
use retention_errors::FieldViolations;
use retention_events::{EventsError, Outbox, Written};
use sea_orm::sea_query::SimpleExpr;
use sea_orm::{DatabaseConnection, DatabaseTransaction, DbErr, TransactionTrait};

use crate::clients::{PeerError, SegmentationClient};
use crate::domain::campaign::{CampaignAction, CampaignSpec, CampaignState, IllegalTransition};
use crate::domain::churn::{ChurnSignals, ChurnSuggestion, classify};
use crate::domain::records::*;
use crate::domain::targeting::ConsentPolicy;
use crate::events::publish as events;
use crate::store::repo;
use retention_config::ConsentSettings;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("invalid request")]
    Invalid(FieldViolations),
    #[error("{0} not found")]
    NotFound(String),
    #[error("etag mismatch on {name}")]
    EtagMismatch {
        name: String,
        sent: String,
        current: String,
    },
    #[error("{name}: {source}")]
    Illegal {
        name: String,
        source: IllegalTransition,
    },
    /// A rule of the resource refuses the call in its current state.
    #[error("{name}: {reason}")]
    Precondition { name: String, reason: String },
    /// Segmentation could not supply what the call needs; nothing was written.
    #[error("{name}: {source}")]
    Peer { name: String, source: PeerError },
    #[error(transparent)]
    Db(#[from] DbErr),
    #[error(transparent)]
    Events(#[from] EventsError),
}

pub type AppResult<T> = Result<T, AppError>;

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// A campaign as submitted, beyond its validated spec.
#[derive(Debug, Clone)]
pub struct NewCampaign {
    pub spec: CampaignSpec,
    pub offer_description: String,
    pub channel: ContactChannel,
    /// None: a random seed is drawn (and kept, so the split is reproducible).
    pub seed: Option<i64>,
    pub schedule_time: Option<DateTime<Utc>>,
    pub triggered: bool,
}

#[derive(Clone)]
pub struct WinbackApp {
    outbox: Outbox,
    segmentation: SegmentationClient,
    /// The deployment's consent policy per channel (settings' `consent`).
    consent: ConsentSettings,
}

impl WinbackApp {
    pub fn new(outbox: Outbox, segmentation: SegmentationClient, consent: ConsentSettings) -> Self {
        WinbackApp {
            outbox,
            segmentation,
            consent,
        }
    }

    /// The consent policy of `channel`, from the settings: applied when consent
    /// is read, so a changed policy holds from the next launch or enrolment.
    pub fn consent_policy(&self, channel: ContactChannel) -> ConsentPolicy {
        let policy = match channel {
            ContactChannel::Email => self.consent.email,
            ContactChannel::Sms => self.consent.sms,
            ContactChannel::Phone => self.consent.phone,
            ContactChannel::Post => self.consent.post,
            ContactChannel::Push => self.consent.push,
            ContactChannel::InPerson => self.consent.in_person,
        };
        match policy {
            retention_config::ConsentPolicy::OptIn => ConsentPolicy::OptIn,
            retention_config::ConsentPolicy::OptOut => ConsentPolicy::OptOut,
        }
    }

    /// The service's database (reads, and the consumers' own transactions).
    pub fn db(&self) -> &DatabaseConnection {
        self.outbox.db()
    }

    // ---- churn records --------------------------------------------------------

    /// Records a churn. Without a value at churn, the customer's predicted value is
    /// asked of segmentation; if segmentation cannot answer, the record is kept
    /// without one rather than refused: the churn happened either way.
    pub async fn record_churn(
        &self,
        mut r: ChurnRecord,
        request_id: &str,
        budget: Option<Duration>,
    ) -> AppResult<ChurnRecord> {
        if let Some(id) = self.outbox.replay("RecordChurn", request_id).await? {
            return self.get_churn(&id).await;
        }
        if r.value_at_churn.is_none() {
            match self.segmentation.insight(&r.customer_id, budget).await {
                Ok(Some(i)) if !i.currency.is_empty() => {
                    r.value_at_churn = Some(Money {
                        currency: i.currency,
                        minor_units: i.predicted_clv_minor,
                    });
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "churn recorded without its value"),
            }
        }
        r.id = new_id();
        r.create_time = now();
        let written = self
            .outbox
            .write("RecordChurn", request_id, &r.id, async |txn| {
                repo::insert_churn(txn, &r).await?;
                AppResult::Ok(((), vec![events::churn_recorded(&r)]))
            })
            .await?;
        match written {
            Written::Done(()) => Ok(r),
            Written::Replayed(id) => self.get_churn(&id).await,
        }
    }

    pub async fn get_churn(&self, id: &str) -> AppResult<ChurnRecord> {
        repo::find_churn(self.db(), id)
            .await?
            .ok_or_else(|| AppError::NotFound(churn_name(id)))
    }

    pub async fn list_churn(
        &self,
        filter: Option<SimpleExpr>,
        before: Option<(DateTime<Utc>, String)>,
        limit: u64,
    ) -> AppResult<Vec<ChurnRecord>> {
        Ok(repo::list_churn(self.db(), filter, before, limit).await?)
    }

    /// The suggestion from the caller's signals merged with the complaint history
    /// this service keeps from interactions' events (the larger count wins).
    pub async fn classify_churn(
        &self,
        customer_id: &str,
        mut s: ChurnSignals,
    ) -> AppResult<ChurnSuggestion> {
        let known = repo::complaint_counts(self.db(), customer_id).await?;
        s.unresolved_complaints = s.unresolved_complaints.max(known.unresolved);
        s.breached_complaints = s.breached_complaints.max(known.breached);
        s.escalated_complaints = s.escalated_complaints.max(known.escalated);
        s.at_risk_complaints = s.at_risk_complaints.max(known.at_risk);
        Ok(classify(&s))
    }

    // ---- campaigns ------------------------------------------------------------

    pub async fn create_campaign(&self, n: NewCampaign, request_id: &str) -> AppResult<Campaign> {
        if let Some(id) = self.outbox.replay("CreateCampaign", request_id).await? {
            return self.get_campaign(&id).await;
        }
        let seed = n.seed.unwrap_or_else(|| {
            i64::from_le_bytes(
                uuid::Uuid::new_v4().as_bytes()[..8]
                    .try_into()
                    .unwrap_or_default(),
            )
        });
        let c = Campaign::draft(
            new_id(),
            &n.spec,
            n.offer_description.clone(),
            n.channel,
            seed,
            n.schedule_time,
            n.triggered,
            now(),
        )
        .ok_or_else(|| AppError::Invalid(FieldViolations::new()))?;
        let written = self
            .outbox
            .write("CreateCampaign", request_id, &c.id, async |txn| {
                repo::insert_campaign(txn, &c).await?;
                AppResult::Ok(((), Vec::new()))
            })
            .await?;
        match written {
            Written::Done(()) => Ok(c),
            Written::Replayed(id) => self.get_campaign(&id).await,
        }
    }

    pub async fn get_campaign(&self, id: &str) -> AppResult<Campaign> {
        repo::load_campaign(self.db(), id)
            .await?
            .ok_or_else(|| AppError::NotFound(campaign_name(id)))
    }

    pub async fn list_campaigns(
        &self,
        filter: Option<SimpleExpr>,
        before: Option<(DateTime<Utc>, String)>,
        limit: u64,
    ) -> AppResult<Vec<Campaign>> {
        Ok(repo::list_campaigns(self.db(), filter, before, limit).await?)
    }

    /// Pause, complete or cancel: one state-machine step, guarded by the etag.
    /// Applies `action`, recorded as `audit` in the same transaction.
    pub async fn act(
        &self,
        id: &str,
        action: CampaignAction,
        etag: &str,
        audit: &AuditEntry,
    ) -> AppResult<Campaign> {
        let txn = self.db().begin().await?;
        let mut c = self.load_checked(&txn, id, etag).await?;
        let expected = c.version;
        step(&mut c, action, now())?;
        save(&txn, &c, expected).await?;
        retention_db::audit::append(&txn, audit).await?;
        self.outbox.commit(txn, Vec::new()).await?;
        Ok(c)
    }

    async fn load_checked(
        &self,
        txn: &DatabaseTransaction,
        id: &str,
        etag: &str,
    ) -> AppResult<Campaign> {
        let c = repo::load_campaign(txn, id)
            .await?
            .ok_or_else(|| AppError::NotFound(campaign_name(id)))?;
        if !etag.is_empty() && etag != c.etag() {
            return Err(AppError::EtagMismatch {
                name: campaign_name(id),
                sent: etag.into(),
                current: c.etag(),
            });
        }
        Ok(c)
    }
}

/// Applies `action` to `c` with its timestamps and version.
fn step(c: &mut Campaign, action: CampaignAction, at: DateTime<Utc>) -> AppResult<()> {
    let to = crate::domain::campaign::transition(c.state, action).map_err(|source| {
        AppError::Illegal {
            name: campaign_name(&c.id),
            source,
        }
    })?;
    if to == CampaignState::Running && c.launch_time.is_none() {
        c.launch_time = Some(at);
    }
    if to.is_final() {
        c.end_time = Some(at);
    }
    c.state = to;
    c.update_time = at;
    c.version += 1;
    Ok(())
}

/// Writes `c` over the version `expected`; a concurrent change refuses it.
async fn save(txn: &DatabaseTransaction, c: &Campaign, expected: i64) -> AppResult<()> {
    if !repo::update_campaign(txn, c, expected).await? {
        return Err(concurrent(&c.id, expected));
    }
    Ok(())
}

fn concurrent(id: &str, expected: i64) -> AppError {
    AppError::EtagMismatch {
        name: campaign_name(id),
        sent: format!("\"{expected}\""),
        current: "(changed concurrently)".into(),
    }
}
