//! `retention-cli`: the suite for operators and for trying it out. Every command is
//! a few gRPC calls to the four services (the same ones other teams make), printed
//! as readable tables.

pub mod audit;
pub mod backfill;
pub mod backlog;
pub mod client;
pub mod dead_letters;
pub mod demo;
pub mod html_report;
pub mod retention;
pub mod scoring;
pub mod show;
pub mod sla;
pub mod synth;

pub use client::Clients;
