//! SLA policies and the business-hour calendars they count time in.

use sea_orm::{ConnectionTrait, DbErr, TransactionTrait};

use super::*;

impl InteractionsApp {
    pub(super) async fn business_calendar<C: ConnectionTrait>(
        &self,
        db: &C,
        id: &str,
    ) -> AppResult<BusinessCalendar> {
        let stored = repo::load_calendar(db, id)
            .await?
            .ok_or_else(|| AppError::NotFound(calendar_name(id)))?;
        // Stored definitions were validated on the way in; failing here means the
        // row was changed behind the service's back.
        BusinessCalendar::new(stored.definition)
            .map_err(|e| AppError::Db(DbErr::Type(format!("{}: {e}", calendar_name(id)))))
    }

    /// Replaces the policy of its priority and tier; a calendar it names must exist.
    pub async fn create_policy(&self, p: &SlaPolicy) -> AppResult<()> {
        let txn = self.db.begin().await?;
        if let Some(cid) = &p.calendar_id
            && repo::load_calendar(&txn, cid).await?.is_none()
        {
            let mut v = FieldViolations::new();
            v.add(
                "policy.calendar",
                format!("no calendar {}", calendar_name(cid)),
            );
            return Err(AppError::Invalid(v));
        }
        repo::upsert_policy(&txn, p).await?;
        txn.commit().await?;
        Ok(())
    }

    pub async fn list_policies(&self) -> AppResult<Vec<SlaPolicy>> {
        Ok(repo::list_policies(&self.db).await?)
    }

    /// Stores a calendar the caller validated. Idempotent on `request_id`.
    pub async fn create_calendar(
        &self,
        definition: CalendarDefinition,
        request_id: &str,
    ) -> AppResult<StoredCalendar> {
        if let Some(id) = self
            .outbox
            .replay("CreateBusinessCalendar", request_id)
            .await?
        {
            return self.get_calendar(&id).await;
        }
        let t = now();
        let c = StoredCalendar {
            id: new_id(),
            definition,
            version: 1,
            create_time: t,
            update_time: t,
        };
        let written = self
            .outbox
            .write("CreateBusinessCalendar", request_id, &c.id, async |txn| {
                repo::insert_calendar(txn, &c).await?;
                AppResult::Ok(((), Vec::new()))
            })
            .await?;
        match written {
            Written::Done(()) => Ok(c),
            Written::Replayed(id) => self.get_calendar(&id).await,
        }
    }

    pub async fn get_calendar(&self, id: &str) -> AppResult<StoredCalendar> {
        repo::load_calendar(&self.db, id)
            .await?
            .ok_or_else(|| AppError::NotFound(calendar_name(id)))
    }

    pub async fn list_calendars(
        &self,
        after: Option<&str>,
        limit: u64,
    ) -> AppResult<Vec<StoredCalendar>> {
        Ok(repo::list_calendars(&self.db, after, limit).await?)
    }

    /// Replaces the definition of calendar `id` (validated by the caller), guarded
    /// by the etag when given. Complaints already open keep the due times computed
    /// when they were opened: a complaint's promise to the customer does not move
    /// because the office changed its hours afterwards.
    pub async fn update_calendar(
        &self,
        id: &str,
        definition: CalendarDefinition,
        etag: &str,
    ) -> AppResult<StoredCalendar> {
        let txn = self.db.begin().await?;
        let mut c = repo::load_calendar(&txn, id)
            .await?
            .ok_or_else(|| AppError::NotFound(calendar_name(id)))?;
        let current = etag_of(c.version);
        if !etag.is_empty() && etag != current {
            return Err(AppError::EtagMismatch {
                name: calendar_name(id),
                sent: etag.into(),
                current,
            });
        }
        let expected = c.version;
        c.definition = definition;
        c.version += 1;
        c.update_time = now();
        if !repo::update_calendar(&txn, &c, expected).await? {
            return Err(AppError::EtagMismatch {
                name: calendar_name(id),
                sent: etag_of(expected),
                current: "(changed concurrently)".into(),
            });
        }
        txn.commit().await?;
        Ok(c)
    }
}
