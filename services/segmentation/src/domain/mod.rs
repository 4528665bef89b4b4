//! Pure rules of the segmentation context: no I/O, unit-tested in place.

pub mod classify;
pub mod features;
pub mod models;
pub mod value;
