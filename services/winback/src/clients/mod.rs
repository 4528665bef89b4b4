//! Calls to other services of the suite. Each call carries a deadline (the caller's
//! remaining budget, capped), the trace context and a service token, and a peer that
//! is down or slow becomes a [`PeerError`] the use cases turn into a clear status.

pub mod segmentation;

pub use segmentation::{PeerError, SegmentationClient, TargetInsight};
