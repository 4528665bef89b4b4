//! gRPC transport: validation and proto <-> domain mapping.

pub mod error;
pub mod service;

pub use service::InteractionsService;
