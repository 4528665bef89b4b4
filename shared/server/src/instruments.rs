//! The instruments every service has alike: RED metrics per gRPC method
//! (`rpc.server.duration`, OpenTelemetry RPC semantic conventions) and the
//! event pipeline's gauges, sampled from the backlog probe and the dead
//! letters (see [`crate::admin`]).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use opentelemetry::metrics::{Gauge, Histogram};
use opentelemetry::{KeyValue, StringValue, Value};
use retention_events::{BacklogProbe, DeadLetters};

/// Bucket bounds (ms) the semantic conventions recommend for `rpc.server.duration`.
const RPC_BOUNDS_MS: [f64; 15] = [
    0.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2500.0, 5000.0, 7500.0,
    10000.0,
];

fn rpc_duration() -> &'static Histogram<f64> {
    static H: OnceLock<Histogram<f64>> = OnceLock::new();
    H.get_or_init(|| {
        retention_telemetry::metrics::meter()
            .f64_histogram("rpc.server.duration")
            .with_unit("ms")
            .with_description("Duration of inbound gRPC calls, by method and status code")
            .with_boundaries(RPC_BOUNDS_MS.to_vec())
            .build()
    })
}

/// `rpc.system`, `rpc.service` and `rpc.method` of one path, made once per
/// path: the strings are shared, so a call clones three pointers.
pub(crate) type MethodAttributes = [KeyValue; 3];

/// The attributes of `path` (`/package.Service/Method`, or the catch-all name
/// of untracked paths, which becomes both service and method).
pub(crate) fn method_attributes(path: &str) -> MethodAttributes {
    let (service, method) = path
        .strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .unwrap_or((path, path));
    let shared = |s: &str| Value::String(StringValue::from(Arc::<str>::from(s)));
    [
        KeyValue::new("rpc.system", "grpc"),
        KeyValue::new("rpc.service", shared(service)),
        KeyValue::new("rpc.method", shared(method)),
    ]
}

/// Records one finished call of the method `attributes` name.
pub(crate) fn record_call(attributes: MethodAttributes, code: i32, elapsed: Duration) {
    if !retention_telemetry::metrics::recording() {
        return;
    }
    let [system, service, method] = attributes;
    rpc_duration().record(
        elapsed.as_secs_f64() * 1000.0,
        &[
            system,
            service,
            method,
            KeyValue::new("rpc.grpc.status_code", i64::from(code)),
        ],
    );
}

struct PipelineGauges {
    backlog: Gauge<u64>,
    oldest_age: Gauge<f64>,
    held_back: Gauge<u64>,
    lag: Gauge<u64>,
    pending: Gauge<u64>,
    dead_letters: Gauge<u64>,
}

fn pipeline() -> &'static PipelineGauges {
    static G: OnceLock<PipelineGauges> = OnceLock::new();
    G.get_or_init(|| {
        let m = retention_telemetry::metrics::meter();
        PipelineGauges {
            backlog: m
                .u64_gauge("retention.outbox.backlog")
                .with_unit("{event}")
                .with_description("Events in the outbox not yet published")
                .build(),
            oldest_age: m
                .f64_gauge("retention.outbox.oldest_age")
                .with_unit("s")
                .with_description("How long the oldest unpublished outbox event has waited")
                .build(),
            held_back: m
                .u64_gauge("retention.outbox.held_back")
                .with_description("1 while the relay holds back because a consumer group is at the bound")
                .build(),
            lag: m
                .u64_gauge("retention.consumer.lag")
                .with_unit("{event}")
                .with_description("Entries of the stream a consumer group has not acknowledged yet")
                .build(),
            pending: m
                .u64_gauge("retention.consumer.pending")
                .with_unit("{event}")
                .with_description("Entries delivered to a consumer group and not yet acknowledged (part of the lag)")
                .build(),
            dead_letters: m
                .u64_gauge("retention.dead_letters")
                .with_unit("{event}")
                .with_description("Events a consumer group gave up on, waiting for an operator")
                .build(),
        }
    })
}

/// Dead letters counted per sample at most (a scrape stays cheap however many
/// there are; the gauge then reads this bound).
const DEAD_LETTER_COUNT_BOUND: usize = 10_000;

/// The sampler of one service's pipeline: its outbox and stream (`backlog`)
/// and its own group's dead letters.
pub(crate) fn pipeline_sampler(
    service: &'static str,
    backlog: BacklogProbe,
    dead_letters: DeadLetters,
) -> crate::admin::Sampler {
    Arc::new(move || {
        let backlog = backlog.clone();
        let dead_letters = dead_letters.clone();
        Box::pin(async move {
            let g = pipeline();
            let svc = KeyValue::new("service", service);
            // An unreadable backlog leaves the gauges at their last values
            // rather than report a false zero.
            let sampled = backlog.sample().await;
            if let Err(e) = &sampled {
                tracing::warn!(error = %e, "event backlog not readable for the metrics");
            }
            if let Ok((b, pending)) = sampled {
                g.backlog.record(
                    u64::try_from(b.outbox_rows).unwrap_or(0),
                    std::slice::from_ref(&svc),
                );
                let age = b
                    .outbox_oldest_age
                    .map_or(0.0, |d| d.seconds as f64 + f64::from(d.nanos) / 1e9);
                g.oldest_age.record(age, std::slice::from_ref(&svc));
                g.held_back
                    .record(u64::from(b.held_back), std::slice::from_ref(&svc));
                for group in b.groups {
                    let labels = [
                        svc.clone(),
                        KeyValue::new("stream", b.stream.clone()),
                        KeyValue::new("group", group.group.clone()),
                    ];
                    g.lag.record(u64::try_from(group.lag).unwrap_or(0), &labels);
                    let held = pending
                        .iter()
                        .find(|(name, _)| *name == group.group)
                        .map_or(0, |(_, n)| *n);
                    g.pending.record(held, &labels);
                }
            }
            if dead_letters.streams().is_empty() {
                return;
            }
            match dead_letters.count(DEAD_LETTER_COUNT_BOUND).await {
                Ok(n) => g.dead_letters.record(
                    n as u64,
                    &[
                        svc,
                        KeyValue::new("group", dead_letters.group().to_string()),
                    ],
                ),
                Err(e) => tracing::warn!(error = %e, "dead letters not countable"),
            }
        })
    })
}
