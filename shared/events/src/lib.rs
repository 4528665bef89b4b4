//! Domain events between the retention services (DESIGN §4, §7).
//!
//! * **Outbox** — [`enqueue`] writes the encoded [`EventEnvelope`] into
//!   `outbox_events` inside the caller's own transaction, so an event exists if and
//!   only if the state change committed.
//! * **Relay** — [`Relay`] publishes unpublished rows in `seq` order through a
//!   [`Publisher`] (Redis Streams via [`RedisPublisher`], or the in-memory
//!   [`InProcessBus`] in embedded mode) and marks them published afterwards. A crash
//!   between the two republishes the row: delivery is at-least-once. It publishes
//!   only while every declared consumer group of the stream is within
//!   `events.stream_max_len` of its head; otherwise the rows wait in the outbox
//!   (backpressure, never loss). Streams are trimmed only of what every group
//!   acknowledged.
//! * **Consumers** — [`RedisConsumer`] reads with a consumer group, acknowledges
//!   only after the handler (and so its transaction) succeeded, claims entries of
//!   dead consumers with `XAUTOCLAIM`, and moves poison messages to a dead-letter
//!   stream. Handlers call [`first_delivery`] inside their transaction so a
//!   redelivered event changes nothing: exactly-once in effect.
//! * **Dead letters** — [`DeadLetters`] lists, inspects, replays (to the one
//!   group that gave up on the event) and discards one service's dead letters,
//!   on Redis and on the in-process bus.

mod backlog;
mod bus;
mod bus_consumer;
mod consumer;
mod dead_letters;
mod event_bus;
mod metrics;
mod migration;
mod outbox;
mod publisher;
mod relay;
mod util;
mod writer;

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;
use tracing::Instrument;

pub use backlog::BacklogProbe;
pub use bus::{DeadLetter, InProcessBus, InProcessPublisher};
pub use bus_consumer::run_in_process;
pub use consumer::{ConsumerOptions, RedisConsumer};
pub use dead_letters::{DeadLetterDetail, DeadLetterView, DeadLetters, MAX_DEAD_LETTER_PAGE};
pub use event_bus::EventBus;
#[doc(hidden)]
pub use futures as __futures;
pub use migration::EventsMigration;
pub use outbox::{
    Backlog, OutboxEvent, ReplayCounts, backlog, enqueue, enqueue_all, first_deliveries,
    first_delivery, pending_count, purge_processed, purge_published,
};
pub use publisher::{GroupLag, OutgoingEvent, Publisher, RedisPublisher, Room};
pub use relay::{Relay, RelayOptions, RelayStatus};
pub use retention_proto::common::EventEnvelope;
pub use writer::{Outbox, Written};

/// The tables every service has, before its own: the outbox and the consumed
/// events (this crate), the request ids of idempotent calls and the audit trail.
pub fn shared_migrations() -> Vec<Box<dyn sea_orm_migration::MigrationTrait>> {
    vec![
        Box::new(EventsMigration),
        Box::new(retention_db::idempotency::IdempotencyMigration),
        Box::new(retention_db::audit::AuditMigration),
    ]
}

/// Everything that can go wrong in the event pipeline.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("database error: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error("redis error: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("could not decode protobuf: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("publish failed: {0}")]
    Publish(String),
    #[error("invalid stream entry {id}: {reason}")]
    InvalidEntry { id: String, reason: String },
}

/// How a handler failed, which decides what happens to the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandlerError {
    /// Transient (database down, dependency timeout): the message stays pending and
    /// is delivered again later, until `max_deliveries` is exceeded.
    Retry(String),
    /// Poison (cannot ever succeed): the message goes to the dead-letter stream now.
    Permanent(String),
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandlerError::Retry(m) => write!(f, "transient failure: {m}"),
            HandlerError::Permanent(m) => write!(f, "permanent failure: {m}"),
        }
    }
}

impl std::error::Error for HandlerError {}

/// Infrastructure errors inside a handler (e.g. [`first_delivery`] failing because
/// the database is down) are transient: retry later.
impl From<EventsError> for HandlerError {
    fn from(e: EventsError) -> Self {
        match e {
            EventsError::Decode(_) | EventsError::InvalidEntry { .. } => {
                HandlerError::Permanent(e.to_string())
            }
            other => HandlerError::Retry(other.to_string()),
        }
    }
}

/// Database errors inside a handler are transient, so `?` works on sea-orm calls.
impl From<sea_orm::DbErr> for HandlerError {
    fn from(e: sea_orm::DbErr) -> Self {
        HandlerError::Retry(e.to_string())
    }
}

/// Applies one event. Must be idempotent (use [`first_delivery`] in the same
/// transaction as the effects): every transport here delivers at least once.
pub trait EventHandler: Send + Sync + 'static {
    fn handle<'a>(&'a self, envelope: &'a EventEnvelope)
    -> BoxFuture<'a, Result<(), HandlerError>>;

    /// Applies several events, in order, and says what became of each (one
    /// result per envelope). The consumer hands a batch only events of customers
    /// no other batch in flight has. The default applies them one by one; a
    /// handler overrides it to apply many in one transaction.
    fn handle_batch<'a>(
        &'a self,
        envelopes: &'a [EventEnvelope],
    ) -> BoxFuture<'a, Vec<Result<(), HandlerError>>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(envelopes.len());
            for env in envelopes {
                out.push(self.handle(env).instrument(event_span(env)).await);
            }
            out
        })
    }
}

/// Implements [`EventHandler`] for a handler type by its inherent
/// `async fn apply(&self, &EventEnvelope) -> Result<(), HandlerError>`, and with
/// `batch` also by its `async fn apply_batch(&self, &[EventEnvelope]) ->
/// Vec<Result<(), HandlerError>>` (one transaction for many events).
#[macro_export]
macro_rules! event_handler {
    ($handler:ty) => {
        $crate::event_handler!(@impl $handler {});
    };
    ($handler:ty, batch) => {
        $crate::event_handler!(@impl $handler {
            fn handle_batch<'a>(
                &'a self,
                envelopes: &'a [$crate::EventEnvelope],
            ) -> $crate::__futures::future::BoxFuture<'a, Vec<Result<(), $crate::HandlerError>>> {
                Box::pin(self.apply_batch(envelopes))
            }
        });
    };
    (@impl $handler:ty { $($batch:tt)* }) => {
        impl $crate::EventHandler for $handler {
            fn handle<'a>(
                &'a self,
                envelope: &'a $crate::EventEnvelope,
            ) -> $crate::__futures::future::BoxFuture<'a, Result<(), $crate::HandlerError>> {
                Box::pin(self.apply(envelope))
            }
            $($batch)*
        }
    };
}

/// A span for handling one event, in the trace of the call that caused it.
pub fn event_span(env: &EventEnvelope) -> tracing::Span {
    let span = tracing::info_span!(
        "event.handle",
        event_id = %env.event_id,
        event_type = %env.event_type,
    );
    retention_telemetry::set_parent(
        &span,
        retention_telemetry::context_from_traceparent(&env.traceparent, &env.tracestate),
    );
    span
}

struct FnHandler<F>(F);

impl<F, Fut> EventHandler for FnHandler<F>
where
    F: Fn(EventEnvelope) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    fn handle<'a>(
        &'a self,
        envelope: &'a EventEnvelope,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin((self.0)(envelope.clone()))
    }
}

/// A handler from an async closure taking the envelope by value (it is cloned), for
/// handlers that need no borrowed state.
pub fn handler_fn<F, Fut>(f: F) -> Arc<dyn EventHandler>
where
    F: Fn(EventEnvelope) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    Arc::new(FnHandler(f))
}

/// The Redis key of a logical stream; a non-empty namespace prefixes it so tests
/// and tenants can share one Redis server.
pub fn stream_key(namespace: &str, stream: &str) -> String {
    if namespace.is_empty() {
        stream.to_string()
    } else {
        format!("{namespace}:{stream}")
    }
}

/// Where messages that failed permanently or were delivered too often end up.
pub fn dead_letter_key(namespace: &str, stream: &str) -> String {
    format!("{}.dlq", stream_key(namespace, stream))
}

/// The payload of `env` as `M`, or `None` when the envelope carries another type
/// (consumers of a stream skip the event types they do not care about).
pub fn decode_payload<M>(env: &EventEnvelope) -> Result<Option<M>, EventsError>
where
    M: prost::Message + prost::Name + Default,
{
    let Some(any) = env.payload.as_ref() else {
        return Ok(None);
    };
    if type_name(&any.type_url) != M::full_name() {
        return Ok(None);
    }
    Ok(Some(M::decode(any.value.as_slice())?))
}

/// Whether `group` applies `env`: live events go to every group, a backfill's
/// replay only to the group it is addressed to.
pub(crate) fn for_group(env: &EventEnvelope, group: &str) -> bool {
    env.target_group.is_empty() || env.target_group == group
}

/// `type.googleapis.com/retention.x.v1.Foo` → `retention.x.v1.Foo`.
pub(crate) fn type_name(type_url: &str) -> &str {
    type_url.rsplit_once('/').map_or(type_url, |(_, n)| n)
}
