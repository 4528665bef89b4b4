//! Small helpers shared by the relay and the consumers.

use std::time::Duration;

/// Exponential backoff with jitter, so replicas that lost Redis together do not
/// reconnect in lockstep.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        let min = min.max(Duration::from_millis(1));
        Backoff {
            min,
            max: max.max(min),
            current: min,
        }
    }

    /// The next delay: the current one with ±25 % jitter; doubles for next time.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let base = self.current;
        self.current = (self.current * 2).min(self.max);
        let jitter = (uuid::Uuid::new_v4().as_u128() % 501) as f64 / 1000.0; // 0..=0.5
        base.mul_f64(0.75 + jitter)
    }

    pub(crate) fn reset(&mut self) {
        self.current = self.min;
    }
}

/// `now` as a protobuf timestamp.
pub(crate) fn timestamp(now: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: now.timestamp(),
        nanos: i32::try_from(now.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(400));
        let d1 = b.next_delay();
        assert!(d1 >= Duration::from_millis(75) && d1 <= Duration::from_millis(125));
        b.next_delay();
        let d3 = b.next_delay();
        assert!(d3 >= Duration::from_millis(300) && d3 <= Duration::from_millis(500));
        let d4 = b.next_delay();
        assert!(d4 <= Duration::from_millis(500));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(125));
    }
}
