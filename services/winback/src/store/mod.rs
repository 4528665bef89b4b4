//! Persistence of the win-back service: sea-orm entities, migrations (PostgreSQL and
//! SQLite) and the queries the use cases run.

pub mod entities;
pub mod migrations;
pub mod repo;
