//! Service tests: the real profile service on a random port against a fresh
//! PostgreSQL database (or SQLite file) and real Redis. One binary, many modules.

mod audit;
mod auth;
mod backfill;
mod cache;
mod customers;
mod faults;
mod harness;
mod merge_erase;
mod outbox;
mod pii;
mod purchases;
mod tracing_propagation;
mod validation;
