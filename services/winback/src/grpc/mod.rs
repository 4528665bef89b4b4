//! Transport: the tonic service, proto <-> domain mapping, and the one place
//! errors become statuses.

pub mod convert;
mod error;
mod service;

pub use service::WinbackGrpc;
