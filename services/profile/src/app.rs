//! Use cases of the profile service: each runs its writes and the events they
//! cause in one transaction, then invalidates the cache after the commit (DESIGN
//! §4, §7). Transport-agnostic: the gRPC layer maps requests in and results out.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use retention_cache::Cache;
use retention_db::audit::AuditEntry;
use retention_errors::FieldViolations;
use retention_events::{EventsError, Outbox, OutboxEvent, ReplayCounts, Written};
use sea_orm::{DatabaseConnection, DatabaseTransaction, TransactionTrait};

use crate::domain::*;
use crate::events::publish as events;
use crate::store::repo::{self, CustomerQuery};
use crate::store::{PiiCipher, StoreError, reseal};

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
    #[error("identity {namespace}:{value} already belongs to {owner}")]
    IdentityTaken {
        namespace: String,
        value: String,
        owner: String,
    },
    #[error("{subject}: {reason}")]
    Precondition { subject: String, reason: String },
    #[error(transparent)]
    Store(StoreError),
    #[error(transparent)]
    Events(#[from] EventsError),
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::IdentityTaken {
                namespace,
                value,
                owner,
            } => AppError::IdentityTaken {
                namespace,
                value,
                owner: customer_name(&owner),
            },
            other => AppError::Store(other),
        }
    }
}

impl From<sea_orm::DbErr> for AppError {
    fn from(e: sea_orm::DbErr) -> Self {
        AppError::Store(StoreError::Db(e))
    }
}

pub type AppResult<T> = Result<T, AppError>;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IngestCounts {
    pub recorded: i64,
    pub duplicates: i64,
}

#[derive(Clone)]
pub struct ProfileApp {
    pub db: DatabaseConnection,
    pub cache: Cache,
    /// Commits changes with their events; keeps request ids.
    outbox: Outbox,
    /// Seals PII on its way to the database and the cache.
    pii: Arc<PiiCipher>,
}

/// The one key a customer is cached under: GetCustomer, BatchGetCustomers,
/// ExportCustomerData and ListPurchases all read through `get_customer`, which
/// caches canonical ids only (aliases and e-mail lookups are resolved in the
/// database, uncached). Every change of a customer row invalidates it after its
/// commit: update, consent, merge (survivor and merged), erase (retries too).
fn cache_key(id: &str) -> String {
    format!("profile:customer:{id}")
}

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

impl ProfileApp {
    pub fn new(outbox: Outbox, cache: Cache, pii: Arc<PiiCipher>) -> Self {
        ProfileApp {
            db: outbox.db().clone(),
            cache,
            outbox,
            pii,
        }
    }

    /// The keyed hash customers with the address `email` are found by.
    pub fn email_lookup(&self, email: &str) -> String {
        self.pii.email_lookup(email)
    }

    /// Seals every row holding PII in the clear or under a retired key with the
    /// current key, a page at a time, each page audited (`pii.reseal`); returns
    /// the rows written. Safe beside other replicas doing the same and beside
    /// live writes.
    pub async fn reseal_pii(&self) -> AppResult<u64> {
        let mut after: Option<String> = None;
        let mut total = 0;
        loop {
            // Each page commits with its audit record: re-encrypting under a new
            // key is the key rotation's one change to stored data.
            let txn = self.db.begin().await?;
            let page = reseal::reseal_page(&txn, &self.pii, after.as_deref(), 200).await?;
            if page.resealed > 0 {
                let key = format!("pii_keys/{}", self.pii.key_id());
                let entry = AuditEntry::new("system", "pii.reseal", [key.as_str()]);
                retention_db::audit::append(&txn, &entry).await?;
                txn.commit().await?;
                retention_telemetry::audit(&entry.actor, &entry.action, &[&key]);
            } else {
                txn.commit().await?;
            }
            total += page.resealed;
            match page.next_after {
                Some(next) => after = Some(next),
                None => return Ok(total),
            }
        }
    }

    async fn live(&self, txn: &DatabaseTransaction, id: &str) -> AppResult<Customer> {
        let canonical = repo::resolve_id(txn, id)
            .await?
            .ok_or_else(|| AppError::NotFound(customer_name(id)))?;
        match repo::load_customer(txn, &self.pii, &canonical).await? {
            Some(c) if !c.erased => Ok(c),
            _ => Err(AppError::NotFound(customer_name(id))),
        }
    }

    pub async fn create_customer(
        &self,
        input: CustomerInput,
        request_id: &str,
    ) -> AppResult<Customer> {
        if let Some(id) = self.outbox.replay("CreateCustomer", request_id).await? {
            return self.get_customer(&id).await;
        }
        let customer = Customer::create(new_id(), input, crate::domain::now());
        let written = self
            .outbox
            .write("CreateCustomer", request_id, &customer.id, async |txn| {
                repo::insert_customer(txn, &self.pii, &customer).await?;
                AppResult::Ok(((), vec![events::customer_created(&customer)]))
            })
            .await?;
        match written {
            Written::Done(()) => Ok(customer),
            // A concurrent retry won the race; answer with its result.
            Written::Replayed(id) => self.get_customer(&id).await,
        }
    }

    /// Cache-aside read; aliases of merged customers resolve to the survivor.
    pub async fn get_customer(&self, id: &str) -> AppResult<Customer> {
        let key = cache_key(id);
        let db = self.db.clone();
        let pii = self.pii.clone();
        let owned = id.to_string();
        let sealed_key = key.clone();
        let bytes = self
            .cache
            .get_or_load(&key, None, || async move {
                // A customer row is canonical (merged-away ids have none, only an
                // alias). Only canonical ids are cached, so a merge needs no alias
                // invalidation; an alias is resolved below, uncached.
                let c = repo::load_customer(&db, &pii, &owned)
                    .await
                    .map_err(|e| e.to_string())?;
                // Sealed: Redis may persist what it caches, and PII stays
                // encrypted at rest there too.
                Ok(c.filter(|c| !c.erased)
                    .and_then(|c| serde_json::to_vec(&c).ok())
                    .map(|json| pii.seal_bytes(&sealed_key, &json)))
            })
            .await
            .map_err(|e: String| AppError::Store(StoreError::Db(sea_orm::DbErr::Custom(e))))?;
        if let Some(b) = bytes {
            let opened = self.pii.open_bytes(&key, &b);
            if let Some(c) = opened.and_then(|b| serde_json::from_slice::<Customer>(&b).ok()) {
                return Ok(c);
            }
            // Cached before entries were sealed, or under a key no longer held:
            // drop it and answer from the database.
            self.cache.invalidate(&key).await;
            if let Some(c) = repo::load_customer(&self.db, &self.pii, id).await?
                && !c.erased
            {
                return Ok(c);
            }
        }
        // Not cacheable: an alias (resolve without caching) or unknown/erased.
        match repo::resolve_id(&self.db, id).await? {
            Some(canonical) if canonical != id => Box::pin(self.get_customer(&canonical)).await,
            _ => Err(AppError::NotFound(customer_name(id))),
        }
    }

    pub async fn update_customer(
        &self,
        id: &str,
        patch: CustomerInput,
        paths: &[String],
        etag: &str,
    ) -> AppResult<Customer> {
        let txn = self.db.begin().await?;
        let mut c = self.live(&txn, id).await?;
        if !etag.is_empty() && etag != c.etag() {
            return Err(AppError::EtagMismatch {
                name: c.name(),
                sent: etag.into(),
                current: c.etag(),
            });
        }
        let expected = c.version;
        let changed = c.apply_update(patch, paths).map_err(AppError::Invalid)?;
        if changed.is_empty() {
            return Ok(c);
        }
        c.version += 1;
        c.update_time = crate::domain::now();
        repo::update_customer(&txn, &self.pii, &c, expected)
            .await
            .map_err(|e| match e {
                StoreError::VersionConflict { .. } => AppError::EtagMismatch {
                    name: c.name(),
                    sent: format!("\"{expected}\""),
                    current: "(changed concurrently)".into(),
                },
                other => other.into(),
            })?;
        self.outbox
            .commit(txn, vec![events::customer_updated(&c, changed)])
            .await?;
        self.cache.invalidate(&cache_key(&c.id)).await;
        Ok(c)
    }

    /// A page of customers matching `filter` and, when given, having the e-mail
    /// address whose [`email_lookup`](Self::email_lookup) hash is `email_hash`.
    pub async fn list_customers(
        &self,
        filter: Option<&retention_filter::Expr>,
        email_hash: Option<&str>,
        after_id: Option<&str>,
        limit: u64,
    ) -> AppResult<Vec<Customer>> {
        let query = CustomerQuery { filter, email_hash };
        Ok(repo::list_customers(&self.db, &self.pii, query, after_id, limit).await?)
    }

    pub async fn merge_customers(
        &self,
        survivor: &str,
        merged: &str,
        request_id: &str,
        etag: &str,
        audit: &AuditEntry,
    ) -> AppResult<Customer> {
        if let Some(id) = self.outbox.replay("MergeCustomers", request_id).await? {
            return self.get_customer(&id).await;
        }
        // The request id is kept for the survivor as it resolves now.
        let resource = repo::resolve_id(&self.db, survivor)
            .await?
            .ok_or_else(|| AppError::NotFound(customer_name(survivor)))?;
        let now = crate::domain::now();
        let written = self
            .outbox
            .write("MergeCustomers", request_id, &resource, async |txn| {
                let mut s = self.live(txn, survivor).await?;
                let m = self.live(txn, merged).await?;
                if s.id == m.id {
                    return Err(AppError::Precondition {
                        subject: customer_name(merged),
                        reason: "is already the survivor (a customer cannot be merged into itself)"
                            .into(),
                    });
                }
                if !etag.is_empty() && etag != s.etag() {
                    return Err(AppError::EtagMismatch {
                        name: s.name(),
                        sent: etag.into(),
                        current: s.etag(),
                    });
                }
                repo::merge_into(txn, &s.id, &m.id, now).await?;
                // Survivor gains the merged customer's tags and missing attributes.
                let expected = s.version;
                s.tags.extend(m.tags.iter().cloned());
                s.tags.sort();
                s.tags.dedup();
                for (k, v) in &m.attributes {
                    s.attributes.entry(k.clone()).or_insert_with(|| v.clone());
                }
                let taken: Vec<String> = s.identities.iter().map(|i| i.namespace.clone()).collect();
                s.identities.extend(
                    m.identities
                        .iter()
                        .filter(|i| !taken.contains(&i.namespace))
                        .cloned(),
                );
                s.version += 1;
                s.update_time = now;
                repo::update_customer(txn, &self.pii, &s, expected).await?;
                let evs = vec![events::customer_merged(&s.id, &m.id)];
                // Last: the audit append holds the chain's lock to the commit.
                retention_db::audit::append(txn, audit).await?;
                AppResult::Ok(((s.id, m.id), evs))
            })
            .await?;
        match written {
            Written::Done((s, m)) => {
                self.cache.invalidate(&cache_key(&s)).await;
                self.cache.invalidate(&cache_key(&m)).await;
                self.get_customer(&s).await
            }
            // A concurrent retry won the race; answer with its result.
            Written::Replayed(id) => self.get_customer(&id).await,
        }
    }

    /// Returns the erase time and the number of purchases kept anonymously.
    pub async fn erase_customer(
        &self,
        id: &str,
        request_id: &str,
        audit: &AuditEntry,
    ) -> AppResult<(DateTime<Utc>, u64)> {
        // The request id is kept for the customer as it resolves now.
        let resource = repo::resolve_id(&self.db, id)
            .await?
            .ok_or_else(|| AppError::NotFound(customer_name(id)))?;
        let written = self
            .outbox
            .write("EraseCustomer", request_id, &resource, async |txn| {
                let canonical = repo::resolve_id(txn, id)
                    .await?
                    .ok_or_else(|| AppError::NotFound(customer_name(id)))?;
                let mut c = repo::load_customer(txn, &self.pii, &canonical)
                    .await?
                    .ok_or_else(|| AppError::NotFound(customer_name(id)))?;
                let retained = repo::count_purchases(txn, &c.id).await?;
                let (done, evs) = if c.erased {
                    // Erasure is idempotent: a retry (with or without request_id)
                    // succeeds, and is recorded as the call it is. It invalidates
                    // again, in case the first call stopped between its commit
                    // and its invalidation.
                    ((c.update_time, retained, c.id), vec![])
                } else {
                    let now = crate::domain::now();
                    let expected = c.version;
                    c.erase(now);
                    repo::update_customer(txn, &self.pii, &c, expected).await?;
                    let evs = vec![events::customer_erased(&c.id, now)];
                    ((now, retained, c.id), evs)
                };
                // Last: the audit append holds the chain's lock to the commit.
                retention_db::audit::append(txn, audit).await?;
                AppResult::Ok((done, evs))
            })
            .await?;
        match written {
            Written::Done((at, retained, erased)) => {
                // Returns once Redis and every replica's near cache dropped it
                // (retention_cache module docs).
                self.cache.invalidate(&cache_key(&erased)).await;
                Ok((at, retained))
            }
            // A concurrent retry erased it first: answer as a retry after it would.
            Written::Replayed(id) => Box::pin(self.erase_customer(&id, "", audit)).await,
        }
    }

    pub async fn export(
        &self,
        id: &str,
    ) -> AppResult<(Customer, Vec<Purchase>, Vec<Referral>, Vec<Referral>)> {
        let c = self.get_customer(id).await?;
        let purchases = repo::list_purchases(&self.db, &c.id, None, u64::MAX >> 1).await?;
        let (given, received) = repo::referrals_of(&self.db, &c.id).await?;
        Ok((c, purchases, given, received))
    }

    pub async fn update_consent(&self, id: &str, consent: Consent) -> AppResult<Customer> {
        let txn = self.db.begin().await?;
        let mut c = self.live(&txn, id).await?;
        let expected = c.version;
        if !c.set_consent(consent.clone()) {
            return Ok(c);
        }
        c.version += 1;
        c.update_time = consent.update_time;
        repo::update_customer(&txn, &self.pii, &c, expected).await?;
        self.outbox
            .commit(txn, vec![events::consent_changed(&c.id, &consent)])
            .await?;
        self.cache.invalidate(&cache_key(&c.id)).await;
        Ok(c)
    }

    /// Re-sending a known order id returns the stored purchase and emits nothing.
    pub async fn record_purchase(
        &self,
        customer_id: &str,
        input: PurchaseInput,
    ) -> AppResult<Purchase> {
        let now = crate::domain::now();
        let txn = self.db.begin().await?;
        let c = self.live(&txn, customer_id).await?;
        // Order ids are unique per customer as the caller addressed it.
        let mut p = input.into_purchase(new_id(), &c.id, now);
        if c.id != customer_id {
            p.origin_customer_id = customer_id.to_string();
        }
        let (stored, new) = repo::insert_purchase(&txn, &p).await?;
        if new {
            self.outbox
                .commit(txn, vec![events::purchase_recorded(&stored)])
                .await?;
        }
        Ok(stored)
    }

    /// One transaction for a batch of validated purchases: owners resolved and
    /// rows inserted in bulk, so a message of 1,000 costs a handful of statements.
    pub async fn record_purchase_batch(
        &self,
        batch: Vec<(String, PurchaseInput)>,
    ) -> AppResult<(IngestCounts, Vec<(usize, AppError)>)> {
        let now = crate::domain::now();
        let txn = self.db.begin().await?;
        let mut distinct: Vec<String> = batch.iter().map(|(c, _)| c.clone()).collect();
        distinct.sort_unstable();
        distinct.dedup();
        let owners = repo::live_owners(&txn, &distinct).await?;
        let mut failures = Vec::new();
        let mut rows = Vec::with_capacity(batch.len());
        for (i, (customer_id, input)) in batch.into_iter().enumerate() {
            let Some(owner) = owners.get(&customer_id) else {
                failures.push((i, AppError::NotFound(customer_name(&customer_id))));
                continue;
            };
            let mut p = input.into_purchase(new_id(), owner, now);
            p.origin_customer_id = customer_id;
            rows.push(p);
        }
        let inserted = repo::insert_purchases(&txn, &rows).await?;
        let evs: Vec<_> = rows
            .iter()
            .filter(|p| inserted.contains(&p.id))
            .map(events::purchase_recorded)
            .collect();
        let counts = IngestCounts {
            recorded: evs.len() as i64,
            duplicates: (rows.len() - evs.len()) as i64,
        };
        self.outbox.commit(txn, evs).await?;
        Ok((counts, failures))
    }

    pub async fn list_purchases(
        &self,
        customer_id: &str,
        before: Option<(DateTime<Utc>, String)>,
        limit: u64,
    ) -> AppResult<Vec<Purchase>> {
        let c = self.get_customer(customer_id).await?;
        Ok(repo::list_purchases(&self.db, &c.id, before, limit).await?)
    }

    pub async fn record_referral(
        &self,
        referrer: &str,
        referred: &str,
        at: DateTime<Utc>,
    ) -> AppResult<Referral> {
        let txn = self.db.begin().await?;
        let a = self.live(&txn, referrer).await?;
        let b = self.live(&txn, referred).await?;
        if a.id == b.id {
            return Err(AppError::Invalid({
                let mut v = FieldViolations::new();
                v.add("referral.referred", "a customer cannot refer themselves");
                v
            }));
        }
        let r = Referral {
            referrer_id: a.id,
            referred_id: b.id,
            occur_time: at,
        };
        if repo::insert_referral(&txn, &r).await? {
            self.outbox
                .commit(txn, vec![events::referral_recorded(&r)])
                .await?;
        }
        Ok(r)
    }

    /// Replays the current state of up to `limit` customers with ids in
    /// [`from`, `to`) after `after` as events for `group` alone, in one
    /// transaction through the outbox; the relay is woken once it commits.
    pub async fn backfill(
        &self,
        group: &str,
        from: Option<&str>,
        to: Option<&str>,
        after: Option<&str>,
        limit: u64,
        audit: &AuditEntry,
    ) -> AppResult<ReplayCounts> {
        let txn = self.db.begin().await?;
        let (page, more) =
            repo::customers_for_replay(&txn, &self.pii, from, to, after, limit).await?;
        let evs: Vec<OutboxEvent> = page.iter().flat_map(|r| events::replay(r, group)).collect();
        let counts = ReplayCounts::of(
            page.len(),
            &evs,
            page.last().filter(|_| more).map(|r| r.customer.id.clone()),
        );
        retention_db::audit::append(&txn, audit).await?;
        self.outbox.commit(txn, evs).await?;
        Ok(counts)
    }
}
