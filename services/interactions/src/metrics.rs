//! The service's own instruments; the host adds the RED and event-pipeline ones.

use std::sync::OnceLock;

use retention_telemetry::metrics::{Attribute, Counter, meter};

use crate::domain::{Priority, SlaTarget};

fn breaches() -> &'static Counter<u64> {
    static C: OnceLock<Counter<u64>> = OnceLock::new();
    C.get_or_init(|| {
        meter()
            .u64_counter("retention.sla.breaches")
            .with_unit("{breach}")
            .with_description("Complaint SLA targets breached, by target and priority")
            .build()
    })
}

fn warnings() -> &'static Counter<u64> {
    static C: OnceLock<Counter<u64>> = OnceLock::new();
    C.get_or_init(|| {
        meter()
            .u64_counter("retention.sla.at_risk")
            .with_unit("{warning}")
            .with_description("Complaint SLA targets at risk of a breach, by target and priority")
            .build()
    })
}

fn count(c: &Counter<u64>, committed: &[(SlaTarget, Priority)]) {
    for (target, priority) in committed {
        c.add(
            1,
            &[
                Attribute::new("target", target.as_str().to_ascii_lowercase()),
                Attribute::new("priority", priority.as_str().to_ascii_lowercase()),
            ],
        );
    }
}

/// Counts breaches once their transaction committed (a rolled-back sweep
/// batch counts nothing; its breaches are recorded by the next one).
pub fn sla_breached(breaches_committed: &[(SlaTarget, Priority)]) {
    count(breaches(), breaches_committed);
}

/// Counts warnings once their transaction committed.
pub fn sla_at_risk(warnings_committed: &[(SlaTarget, Priority)]) {
    count(warnings(), warnings_committed);
}
