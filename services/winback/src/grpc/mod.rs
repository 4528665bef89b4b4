//! Transport: the tonic service (validation, then one use case per method) and
//! the one place errors become statuses; the proto mapping is `crate::convert`.

mod error;
mod service;

pub use service::WinbackGrpc;
