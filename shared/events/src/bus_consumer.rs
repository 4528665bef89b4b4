//! Consumer groups on the in-process bus: a task per consumer that hands what
//! waits to the handler, retries transient failures and buries the rest.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use prost::Message;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::bus::{DeadLetter, Entry, InProcessBus};
use crate::consumer::ConsumerOptions;
use crate::util::Backoff;
use crate::{EventEnvelope, EventHandler, HandlerError};

/// Consumes `opts.stream` as `opts.group` from the in-process bus until
/// `shutdown` (`namespace`, `batch`, `block` are ignored; `claim_idle` caps the
/// retry backoff). A handler call in progress at shutdown is finished first.
pub fn run_in_process(
    bus: &InProcessBus,
    opts: ConsumerOptions,
    handler: Arc<dyn EventHandler>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    // Join before returning so events published right after are seen by the group.
    bus.join(&opts.stream, &opts.group);
    let bus = bus.clone();
    tokio::spawn(async move {
        let mut wake = bus.inner.wake.subscribe();
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            wake.borrow_and_update();
            let batch = bus.take_many(&opts.stream, &opts.group, opts.batch.max(1));
            if batch.is_empty() {
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => return,
                    changed = wake.changed() => {
                        if changed.is_err() {
                            return;
                        }
                    }
                }
                continue;
            }
            if !deliver_batch(&bus, &opts, handler.as_ref(), batch, &shutdown).await {
                // Shutdown mid-retry: the entry stays unapplied, its outbox row
                // unpublished, and goes out after a restart.
                return;
            }
        }
    })
}

/// Hands what is waiting to the handler as the Redis path does: split into
/// lanes by customer (a customer's events in stream order, in one lane), one
/// `handle_batch` per lane (a handler that applies a batch in one transaction
/// catches up far faster than one event a time), the lanes at once; then each
/// transient failure is retried on its own, holding up only its lane. `false`
/// when shutdown interrupted the retries.
async fn deliver_batch(
    bus: &InProcessBus,
    opts: &ConsumerOptions,
    handler: &dyn EventHandler,
    batch: Vec<(u64, Arc<Entry>)>,
    shutdown: &CancellationToken,
) -> bool {
    let lanes_n = opts.concurrency.max(1);
    let mut lanes: Vec<Vec<(u64, Arc<Entry>, EventEnvelope)>> =
        (0..lanes_n).map(|_| Vec::new()).collect();
    for (offset, entry) in batch {
        match EventEnvelope::decode(entry.envelope.as_slice()) {
            Err(e) => {
                bus.bury(dead_letter(
                    opts,
                    &entry,
                    format!("undecodable envelope: {e}"),
                    0,
                ));
                bus.complete(&opts.stream, &opts.group, offset);
            }
            Ok(env) if !crate::for_group(&env, &opts.group) => {
                bus.complete(&opts.stream, &opts.group, offset);
            }
            Ok(env) => lanes[crate::consumer::batch_of(&env.customer_id, lanes_n)]
                .push((offset, entry, env)),
        }
    }
    let done = futures::future::join_all(
        lanes
            .into_iter()
            .filter(|lane| !lane.is_empty())
            .map(|lane| deliver_lane(bus, opts, handler, lane, shutdown)),
    )
    .await;
    done.into_iter().all(|finished| finished)
}

/// One lane of [`deliver_batch`]: its events in one `handle_batch`, then the
/// failed ones retried in order. `false` when shutdown interrupted the retries.
async fn deliver_lane(
    bus: &InProcessBus,
    opts: &ConsumerOptions,
    handler: &dyn EventHandler,
    todo: Vec<(u64, Arc<Entry>, EventEnvelope)>,
    shutdown: &CancellationToken,
) -> bool {
    let Some((_, _, first)) = todo.first() else {
        return true;
    };
    let span = tracing::info_span!(
        "event.consume",
        otel.kind = "consumer",
        event_id = %first.event_id,
        event_type = %first.event_type,
        events = todo.len(),
        stream = %opts.stream,
        group = %opts.group,
        deliveries = 1,
    );
    retention_telemetry::set_parent(
        &span,
        retention_telemetry::context_from_traceparent(&first.traceparent, &first.tracestate),
    );
    let envs: Vec<EventEnvelope> = todo.iter().map(|(_, _, env)| env.clone()).collect();
    let results = AssertUnwindSafe(handler.handle_batch(&envs))
        .catch_unwind()
        .instrument(span)
        .await
        .unwrap_or_else(|_| {
            envs.iter()
                .map(|_| Err(HandlerError::Retry("handler panicked".into())))
                .collect()
        });
    let results = results.into_iter().chain(std::iter::repeat_with(|| {
        Err(HandlerError::Retry(
            "handler returned too few results".into(),
        ))
    }));
    for ((offset, entry, _), result) in todo.into_iter().zip(results) {
        match result {
            Ok(()) => crate::metrics::applied(&opts.stream, &opts.group, 1),
            Err(HandlerError::Permanent(msg)) => bus.bury(dead_letter(opts, &entry, msg, 1)),
            Err(HandlerError::Retry(msg)) => {
                tracing::warn!(event_id = %entry.event_id, error = %msg, "event handler failed; retrying");
                if !deliver(bus, opts, handler, &entry, shutdown, 1).await {
                    return false;
                }
            }
        }
        bus.complete(&opts.stream, &opts.group, offset);
    }
    true
}

fn dead_letter(
    opts: &ConsumerOptions,
    entry: &Entry,
    reason: String,
    deliveries: u64,
) -> DeadLetter {
    DeadLetter {
        stream: opts.stream.clone(),
        group: opts.group.clone(),
        event_id: entry.event_id.clone(),
        envelope: entry.envelope.clone(),
        reason,
        deliveries,
    }
}

/// Hands one entry to the handler, retrying transient failures; `false` when
/// shutdown interrupted the retries (the entry is not done with).
async fn deliver(
    bus: &InProcessBus,
    opts: &ConsumerOptions,
    handler: &dyn EventHandler,
    entry: &Entry,
    shutdown: &CancellationToken,
    delivered: u64,
) -> bool {
    let dead = |reason: String, deliveries: u64| dead_letter(opts, entry, reason, deliveries);
    let env = match EventEnvelope::decode(entry.envelope.as_slice()) {
        Ok(env) => env,
        Err(e) => {
            bus.bury(dead(format!("undecodable envelope: {e}"), 0));
            return true;
        }
    };
    let max = opts.max_deliveries.max(1);
    if delivered >= max {
        bus.bury(dead(
            format!("delivered {delivered} times, more than max_deliveries {max}"),
            delivered,
        ));
        return true;
    }
    let mut backoff = Backoff::new(
        Duration::from_millis(50),
        opts.claim_idle.max(Duration::from_millis(50)),
    );
    // The failed delivery just now waits its backoff like any other.
    tokio::select! {
        biased;
        _ = shutdown.cancelled() => return false,
        _ = tokio::time::sleep(backoff.next_delay()) => {}
    }
    for attempt in delivered + 1..=max {
        let span = tracing::info_span!(
            "event.consume",
            otel.kind = "consumer",
            event_id = %env.event_id,
            event_type = %env.event_type,
            stream = %opts.stream,
            group = %opts.group,
            deliveries = attempt,
        );
        retention_telemetry::set_parent(
            &span,
            retention_telemetry::context_from_traceparent(&env.traceparent, &env.tracestate),
        );
        let result = AssertUnwindSafe(handler.handle(&env))
            .catch_unwind()
            .instrument(span.clone())
            .await
            .unwrap_or_else(|_| Err(HandlerError::Retry("handler panicked".into())));
        match result {
            Ok(()) => {
                crate::metrics::applied(&opts.stream, &opts.group, 1);
                return true;
            }
            Err(HandlerError::Permanent(msg)) => {
                bus.bury(dead(msg, attempt));
                return true;
            }
            Err(HandlerError::Retry(msg)) if attempt == max => {
                span.in_scope(|| tracing::warn!(error = %msg, "event handler failed"));
                bus.bury(dead(
                    format!("delivered {attempt} times, more than max_deliveries {max}: {msg}"),
                    attempt,
                ));
                return true;
            }
            Err(HandlerError::Retry(msg)) => {
                let delay = backoff.next_delay();
                span.in_scope(|| {
                    tracing::warn!(error = %msg, retry_in_ms = delay.as_millis() as u64, "event handler failed; retrying")
                });
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => {
                        tracing::info!(event_id = %env.event_id, "shutdown while retrying; the event goes out again after a restart");
                        return false;
                    }
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
    true
}
