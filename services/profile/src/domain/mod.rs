//! Pure rules of the profile context: no I/O, unit-tested in place.

pub mod customer;
pub mod enums;
pub mod filter;
pub mod money;
pub mod purchase;
pub mod replay;
pub mod validate;

pub use customer::*;
pub use enums::*;
pub use money::*;
pub use purchase::*;
pub use replay::*;

pub use retention_domain::now;
