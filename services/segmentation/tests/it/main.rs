//! Service tests of the segmentation service on real PostgreSQL / Redis and SQLite.

mod dead_letters;
mod events;
mod harness;
mod replicas;
mod retention;
mod scoring;
mod segments;
mod validation;
