//! Persistence of the profile context: sea-orm entities, migrations, queries.

pub mod convert;
pub mod entities;
pub mod filter_sql;
pub mod migrations;
pub mod repo;

pub use migrations::Migrator;
pub use repo::StoreError;
