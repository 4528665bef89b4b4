//! gRPC transport: validation, errors as statuses; the proto <-> domain mapping
//! is the crate's `convert`.

pub mod error;
pub mod service;

pub use service::SegmentationGrpc;
