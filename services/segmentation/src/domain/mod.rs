//! Pure rules of the segmentation context: no I/O, unit-tested in place.

pub mod backtest;
pub mod calibration;
pub mod changes;
pub mod classify;
pub mod config;
pub mod features;
pub mod filter;
pub mod models;
pub mod occasions;
pub mod portfolio;
pub mod scoring;
pub mod segments;
pub mod value;
