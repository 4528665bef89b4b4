//! gRPC transport: request validation, domain <-> proto through `crate::convert`,
//! PII masking.

pub mod error;
pub mod service;

pub use service::ProfileService;
