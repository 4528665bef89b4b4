//! Persistence of the profile context: sea-orm entities, migrations, queries.

pub mod convert;
pub mod entities;
pub mod filter_sql;
pub mod migrations;
pub mod pii;
pub mod repo;
pub mod reseal;

pub use pii::{PiiCipher, PiiError, PiiKeyError};
pub use repo::StoreError;
