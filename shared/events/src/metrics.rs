//! What the consumers count: events applied per stream and group, the rate
//! beside the lag (a group with lag and no applied events is stalled).

use std::sync::OnceLock;

use retention_telemetry::metrics::{Attribute, Counter, meter};

fn applied_counter() -> &'static Counter<u64> {
    static C: OnceLock<Counter<u64>> = OnceLock::new();
    C.get_or_init(|| {
        meter()
            .u64_counter("retention.events.applied")
            .with_unit("{event}")
            .with_description("Events a consumer group applied (handled and acknowledged)")
            .build()
    })
}

/// Counts `n` events of `stream` applied by `group`.
pub(crate) fn applied(stream: &str, group: &str, n: usize) {
    if n == 0 || !retention_telemetry::metrics::recording() {
        return;
    }
    applied_counter().add(
        n as u64,
        &[
            Attribute::new("stream", stream.to_string()),
            Attribute::new("group", group.to_string()),
        ],
    );
}
