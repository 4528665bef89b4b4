//! Persistence of the interactions context: entities, migrations, queries.

pub mod entities;
pub mod migrations;
pub mod repo;
