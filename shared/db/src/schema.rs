//! What the services' migrations share: each schema change written once here, so
//! a service's migration lists only its own tables, columns and indexes. Every
//! helper may run again on a schema that already has the change (a create skips
//! what exists), as a replica starting beside another one does.

use sea_orm::DbErr;
use sea_orm_migration::SchemaManager;
use sea_orm_migration::prelude::{
    Alias, ColumnDef, Index, Table, TableAlterStatement, TableCreateStatement,
};

/// Names a migration: `migration!(AddValueBasis, "m20261203_000001_add_value_basis");`
/// declares the unit struct and its [`MigrationName`](sea_orm_migration::MigrationName);
/// doc comments before the name go on the struct.
#[macro_export]
macro_rules! migration {
    ($(#[$doc:meta])* $name:ident, $id:literal) => {
        $(#[$doc])*
        pub struct $name;

        impl $crate::sea_orm_migration::MigrationName for $name {
            fn name(&self) -> &str {
                $id
            }
        }
    };
}

/// Creates `table` unless it exists.
pub async fn create_table(
    m: &SchemaManager<'_>,
    table: &mut TableCreateStatement,
) -> Result<(), DbErr> {
    m.create_table(table.if_not_exists().to_owned()).await
}

/// Drops each of `tables` that exists.
pub async fn drop_tables(m: &SchemaManager<'_>, tables: &[&str]) -> Result<(), DbErr> {
    for t in tables {
        m.drop_table(Table::drop().table(Alias::new(*t)).if_exists().to_owned())
            .await?;
    }
    Ok(())
}

/// Adds `columns` to `table`, one statement each (SQLite alters one at a time).
pub async fn add_columns(
    m: &SchemaManager<'_>,
    table: &str,
    columns: impl IntoIterator<Item = ColumnDef>,
) -> Result<(), DbErr> {
    for mut c in columns {
        alter(m, table, |t| t.add_column(&mut c)).await?;
    }
    Ok(())
}

/// Drops `columns` of `table`, one statement each.
pub async fn drop_columns(
    m: &SchemaManager<'_>,
    table: &str,
    columns: &[&str],
) -> Result<(), DbErr> {
    for c in columns {
        alter(m, table, |t| t.drop_column(Alias::new(*c))).await?;
    }
    Ok(())
}

async fn alter(
    m: &SchemaManager<'_>,
    table: &str,
    change: impl FnOnce(&mut TableAlterStatement) -> &mut TableAlterStatement,
) -> Result<(), DbErr> {
    let mut stmt = Table::alter();
    stmt.table(Alias::new(table));
    m.alter_table(change(&mut stmt).to_owned()).await
}

/// Creates an index (unless it exists) named `name` on `cols` of `table`.
pub async fn create_index(
    m: &SchemaManager<'_>,
    name: &str,
    table: &str,
    cols: &[&'static str],
) -> Result<(), DbErr> {
    index(m, name, table, cols, false).await
}

/// As [`create_index`], refusing two rows with the same values in `cols`.
pub async fn create_unique_index(
    m: &SchemaManager<'_>,
    name: &str,
    table: &str,
    cols: &[&'static str],
) -> Result<(), DbErr> {
    index(m, name, table, cols, true).await
}

async fn index(
    m: &SchemaManager<'_>,
    name: &str,
    table: &str,
    cols: &[&'static str],
    unique: bool,
) -> Result<(), DbErr> {
    let mut idx = Index::create();
    idx.name(name).table(Alias::new(table)).if_not_exists();
    if unique {
        idx.unique();
    }
    for c in cols {
        idx.col(Alias::new(*c));
    }
    m.create_index(idx.to_owned()).await
}

/// Drops the index `name` of `table` if it exists.
pub async fn drop_index(m: &SchemaManager<'_>, name: &str, table: &str) -> Result<(), DbErr> {
    m.drop_index(
        Index::drop()
            .name(name)
            .table(Alias::new(table))
            .if_exists()
            .to_owned(),
    )
    .await
}
