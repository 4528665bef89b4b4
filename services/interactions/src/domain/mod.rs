//! Pure rules of the interactions context: no I/O, unit-tested in place.

pub mod calendar;
pub mod complaint;
pub mod enums;
pub mod policy;
pub mod records;
pub mod replay;
pub mod sla_report;
pub mod summary;
pub mod targets;
pub mod warnings;

pub use complaint::*;
pub use enums::*;
pub use policy::*;
pub use records::*;
pub use replay::*;
pub use retention_domain::now;
pub use sla_report::*;
pub use summary::*;
pub use targets::*;
pub use warnings::*;
