//! The service's own instruments; the host adds the RED and event-pipeline ones.

use std::sync::OnceLock;

use retention_telemetry::metrics::{Attribute, Counter, meter};

struct Campaigns {
    launches: Counter<u64>,
    spend: Counter<u64>,
}

fn campaigns() -> &'static Campaigns {
    static C: OnceLock<Campaigns> = OnceLock::new();
    C.get_or_init(|| {
        let m = meter();
        Campaigns {
            launches: m
                .u64_counter("retention.campaign.launches")
                .with_unit("{campaign}")
                .with_description("Campaigns launched (started running with their targets)")
                .build(),
            // Minor units, exact: a major-unit float would need each currency's exponent.
            spend: m
                .u64_counter("retention.campaign.spend")
                .with_unit("{minor_unit}")
                .with_description(
                    "Offer cost committed to treated customers, in minor units of the currency",
                )
                .build(),
        }
    })
}

/// Counts a launch that committed.
pub fn launched() {
    campaigns().launches.add(1, &[]);
}

/// Adds offer cost committed (after its transaction committed) in `currency`.
pub fn spent(currency: &str, minor_units: i64) {
    if let Ok(n) = u64::try_from(minor_units)
        && n > 0
    {
        campaigns()
            .spend
            .add(n, &[Attribute::new("currency", currency.to_string())]);
    }
}
