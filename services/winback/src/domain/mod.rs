//! Pure rules of the win-back context: no I/O, unit-tested in place.

pub mod attribution;
pub mod campaign;
pub mod churn;
pub mod playbook;
pub mod records;
pub mod results;
pub mod targeting;
