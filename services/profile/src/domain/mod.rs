//! Pure rules of the profile context: no I/O, unit-tested in place.

pub mod customer;
pub mod enums;
pub mod filter;
pub mod purchase;
pub mod validate;

pub use customer::*;
pub use enums::*;
pub use purchase::*;

/// The current time at the precision both databases store (microseconds), so a
/// value returned before and after a round trip through the database is equal.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(6)
}
