//! `retention-winback migrate` (the init container of the Kubernetes manifests):
//! the schema is created on a fresh database and a second run changes nothing.

use retention_testkit::{Backend, TestDb, test_settings};
use sea_orm::{ConnectionTrait, Database, Statement};

#[tokio::test]
async fn migrate_only_creates_the_schema_once_on_both_backends() {
    for backend in [Backend::Postgres, Backend::Sqlite] {
        let db = TestDb::new(backend).await.unwrap();
        let settings = test_settings("winback", &db, false);
        for _ in 0..2 {
            retention_db::migrate_only::<retention_winback::store::Migrator>(&settings.database)
                .await
                .unwrap();
        }
        let conn = Database::connect(settings.database.url.as_str())
            .await
            .unwrap();
        let row = conn
            .query_one_raw(Statement::from_string(
                conn.get_database_backend(),
                "SELECT COUNT(*) FROM seaql_migrations".to_string(),
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.try_get_by_index::<i64>(0).unwrap(), 4);
        let row = conn
            .query_one_raw(Statement::from_string(
                conn.get_database_backend(),
                "SELECT COUNT(*) FROM campaigns".to_string(),
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.try_get_by_index::<i64>(0).unwrap(), 0);
        conn.close().await.unwrap();
    }
}
