//! Service tests of the interactions service on real PostgreSQL / Redis and SQLite.

mod backfill;
mod calendars;
mod clocks;
mod complaints;
mod harness;
mod profile_events;
mod report;
mod summary;
mod sweep;
mod validation;
mod warnings;
