//! The one way a service writes a change: its rows and its events in one
//! transaction (outbox), the relay woken once the events are committed, and for a
//! call carrying an AIP-155 `request_id`, the first result kept so that a retry,
//! even one racing the original, answers with it instead of writing twice.

use std::sync::Arc;

use chrono::Utc;
use sea_orm::{DatabaseConnection, DatabaseTransaction, DbErr, TransactionTrait};
use tokio::sync::Notify;

use crate::{EventsError, OutboxEvent};

/// A service's database with its outbox: cheap to clone, one per app.
#[derive(Clone)]
pub struct Outbox {
    db: DatabaseConnection,
    source: &'static str,
    relay_wakeup: Arc<Notify>,
}

/// How an idempotent write ended.
#[derive(Debug)]
pub enum Written<T> {
    /// This call wrote the change.
    Done(T),
    /// An earlier or concurrent call with the same `request_id` committed first;
    /// its resource name (the caller answers with that resource, unchanged).
    Replayed(String),
}

impl Outbox {
    /// `source` names the service in the events' envelopes; `relay_wakeup` is the
    /// relay's notifier ([`crate::Relay::notifier`]).
    pub fn new(db: DatabaseConnection, source: &'static str, relay_wakeup: Arc<Notify>) -> Self {
        Outbox {
            db,
            source,
            relay_wakeup,
        }
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// The resource an earlier call of `method` with this `request_id` produced,
    /// if it committed; never for an empty id.
    pub async fn replay(&self, method: &str, request_id: &str) -> Result<Option<String>, DbErr> {
        retention_db::idempotency::replay(&self.db, method, request_id).await
    }

    /// Commits `txn` with `events` in it and wakes the relay when there were any.
    pub async fn commit(
        &self,
        txn: DatabaseTransaction,
        events: Vec<OutboxEvent>,
    ) -> Result<(), EventsError> {
        let wake = !events.is_empty();
        crate::enqueue_all(&txn, self.source, events).await?;
        txn.commit().await?;
        if wake {
            self.relay_wakeup.notify_one();
        }
        Ok(())
    }

    /// Runs `write` in a transaction that first records `request_id` → `resource`
    /// for `method`, then commits what `write` changed with the events it returns.
    /// When a concurrent call with the same id got there first, this one waits for
    /// it, writes nothing and answers [`Written::Replayed`]. An empty `request_id`
    /// is not kept: the write simply happens. An error from `write` rolls
    /// everything back, the request id included, so a retry redoes the call.
    pub async fn write<T, E>(
        &self,
        method: &str,
        request_id: &str,
        resource: &str,
        write: impl AsyncFnOnce(&DatabaseTransaction) -> Result<(T, Vec<OutboxEvent>), E>,
    ) -> Result<Written<T>, E>
    where
        E: From<DbErr> + From<EventsError>,
    {
        let txn = self.db.begin().await?;
        let first =
            retention_db::idempotency::remember(&txn, method, request_id, resource, Utc::now())
                .await?;
        if !first {
            drop(txn);
            // The winner committed before our insert returned (it waited on its row).
            return match self.replay(method, request_id).await? {
                Some(id) => Ok(Written::Replayed(id)),
                None => Err(DbErr::RecordNotFound(format!("{method}:{request_id}")).into()),
            };
        }
        let (value, events) = write(&txn).await?;
        self.commit(txn, events).await?;
        Ok(Written::Done(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm_migration::MigrationTrait;
    use sea_orm_migration::SchemaManager;

    async fn outbox() -> (Outbox, Arc<Notify>) {
        let db = retention_db::connect(&retention_db::DbOptions::new("sqlite::memory:"))
            .await
            .unwrap();
        let m = SchemaManager::new(&db);
        retention_db::idempotency::IdempotencyMigration
            .up(&m)
            .await
            .unwrap();
        crate::EventsMigration.up(&m).await.unwrap();
        let wake = Arc::new(Notify::new());
        (Outbox::new(db, "test", wake.clone()), wake)
    }

    fn event() -> OutboxEvent {
        OutboxEvent::new(
            "retention.test.events",
            Some("c1"),
            &retention_proto::common::EventEnvelope::default(),
        )
    }

    #[tokio::test]
    async fn a_retry_replays_the_first_result_and_writes_nothing() {
        let (outbox, wake) = outbox().await;
        let first = outbox
            .write("Create", "r1", "things/a", async |_txn| {
                Ok::<_, EventsError>(("a", vec![event()]))
            })
            .await
            .unwrap();
        assert!(matches!(first, Written::Done("a")));
        // The relay was told once; a second notified() completes at once only then.
        tokio::time::timeout(std::time::Duration::from_secs(1), wake.notified())
            .await
            .expect("relay woken");
        let again = outbox
            .write("Create", "r1", "things/b", async |_txn| {
                Ok::<_, EventsError>(("b", vec![event()]))
            })
            .await
            .unwrap();
        assert!(matches!(again, Written::Replayed(ref id) if id == "things/a"));
        assert_eq!(crate::pending_count(outbox.db()).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn a_failed_write_keeps_no_request_id() {
        let (outbox, _) = outbox().await;
        let failed = outbox
            .write("Create", "r1", "things/a", async |_txn| {
                Err::<((), Vec<OutboxEvent>), _>(EventsError::Publish("refused".into()))
            })
            .await;
        assert!(failed.is_err());
        assert_eq!(outbox.replay("Create", "r1").await.unwrap(), None);
        assert_eq!(crate::pending_count(outbox.db()).await.unwrap(), 0);
    }
}
