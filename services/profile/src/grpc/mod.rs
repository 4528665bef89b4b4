//! gRPC transport: request validation, proto <-> domain mapping, PII masking.

pub mod convert;
pub mod error;
pub mod service;

pub use service::ProfileService;
