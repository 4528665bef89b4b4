//! Timestamps between the wire and the domain, for every service alike: a time
//! out as `google.protobuf.Timestamp`, and a request's timestamp in, with a field
//! violation when it is out of range.

use chrono::{DateTime, Utc};

use crate::FieldViolations;

/// `t` as a protobuf timestamp.
pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// The instant `t` names, if it is a valid timestamp (nanos in 0..1e9, seconds
/// within what chrono represents).
pub fn instant(t: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    let nanos = u32::try_from(t.nanos).ok().filter(|n| *n < 1_000_000_000)?;
    DateTime::<Utc>::from_timestamp(t.seconds, nanos)
}

/// As [`instant`], recording a violation of `field` when `t` is not valid.
pub fn instant_arg(
    t: &prost_types::Timestamp,
    field: &str,
    v: &mut FieldViolations,
) -> Option<DateTime<Utc>> {
    let d = instant(t);
    if d.is_none() {
        v.add(field, "is not a valid timestamp");
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_what_is_out_of_range() {
        let t = DateTime::<Utc>::from_timestamp(1_700_000_000, 123_456_789).unwrap();
        assert_eq!(instant(&timestamp(t)), Some(t));
        let mut v = FieldViolations::new();
        let bad = prost_types::Timestamp {
            seconds: 0,
            nanos: 1_000_000_000,
        };
        assert_eq!(instant_arg(&bad, "occur_time", &mut v), None);
        let negative = prost_types::Timestamp {
            seconds: 0,
            nanos: -1,
        };
        assert_eq!(instant(&negative), None);
        assert!(!v.is_empty());
    }
}
