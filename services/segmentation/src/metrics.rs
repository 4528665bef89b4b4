//! The service's own instruments; the host adds the RED and event-pipeline
//! ones, and the cache reports its hits and misses itself.

use std::sync::OnceLock;
use std::time::Duration;

use retention_telemetry::metrics::{Attribute, Counter, Histogram, meter};

/// Run durations from seconds to hours (a run of 10 M customers).
const RUN_BOUNDS_S: [f64; 12] = [
    1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0,
];

struct Runs {
    duration: Histogram<f64>,
    customers: Counter<u64>,
}

fn runs() -> &'static Runs {
    static R: OnceLock<Runs> = OnceLock::new();
    R.get_or_init(|| {
        let m = meter();
        Runs {
            duration: m
                .f64_histogram("retention.scoring.run.duration")
                .with_unit("s")
                .with_description(
                    "Duration of scoring runs, by kind (live or backtest) and outcome",
                )
                .with_boundaries(RUN_BOUNDS_S.to_vec())
                .build(),
            customers: m
                .u64_counter("retention.scoring.customers")
                .with_unit("{customer}")
                .with_description(
                    "Customers scored (live) or evaluated (backtest) by finished runs",
                )
                .build(),
        }
    })
}

/// Records a finished run: `backtest` or live, succeeded or not, how long it
/// took and how many customers it scored.
pub fn run_finished(backtest: bool, succeeded: bool, took: Duration, customers: u64) {
    let kind = Attribute::new("kind", if backtest { "backtest" } else { "live" });
    let outcome = Attribute::new("outcome", if succeeded { "succeeded" } else { "failed" });
    let r = runs();
    r.duration
        .record(took.as_secs_f64(), &[kind.clone(), outcome]);
    if succeeded {
        r.customers.add(customers, &[kind]);
    }
}
