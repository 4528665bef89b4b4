//! Building blocks shared by the services' pure domain layers.

pub use serde;

pub mod sim;

/// The largest absolute amount one money field may carry, in minor units: 10^15,
/// ten trillion in a currency with two decimals, far beyond any purchase, offer or
/// budget, while 9,000 of them still sum inside an `i64`. Every API field holding
/// money is checked against it at the edge (INVALID_ARGUMENT naming the field);
/// sums over many amounts use checked or 128-bit arithmetic, never a silent wrap.
pub const MAX_MINOR_UNITS: i64 = 1_000_000_000_000_000;

/// Whether `minor_units` is within [`MAX_MINOR_UNITS`] either way.
pub fn money_in_bounds(minor_units: i64) -> bool {
    minor_units
        .checked_abs()
        .is_some_and(|a| a <= MAX_MINOR_UNITS)
}

/// A closed domain vocabulary stored and filtered by its upper-case names, so the
/// database and filter expressions read like the domain (`LifecycleStage::Decline`
/// is stored as "DECLINE").
#[macro_export]
macro_rules! domain_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, $crate::serde::Serialize, $crate::serde::Deserialize)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }

            pub fn names() -> Vec<String> {
                Self::ALL.iter().map(|v| v.as_str().to_string()).collect()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// The current time at the precision both databases store (microseconds), so a
/// value returned before and after a round trip through the database is equal.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(6)
}

#[cfg(test)]
mod tests {
    domain_enum!(Stage { Growth = "GROWTH", Decline = "DECLINE" });

    #[test]
    fn names_round_trip_and_are_case_sensitive() {
        for s in Stage::ALL {
            assert_eq!(Stage::parse(s.as_str()), Some(*s));
        }
        assert_eq!(Stage::parse("decline"), None);
        assert_eq!(Stage::names(), vec!["GROWTH", "DECLINE"]);
        assert_eq!(Stage::Decline.to_string(), "DECLINE");
    }

    #[test]
    fn now_has_microsecond_precision() {
        assert_eq!(super::now().timestamp_subsec_nanos() % 1000, 0);
    }
}
