//! `retention-winback migrate` (the init container of the Kubernetes manifests):
//! the schema is created on a fresh database and a second run changes nothing.

use retention_testkit::{Backend, TestDb, test_settings};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};

async fn count(conn: &DatabaseConnection, sql: &str) -> i64 {
    let row = conn
        .query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            sql.to_string(),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

#[tokio::test]
async fn migrate_only_creates_the_schema_once_on_both_backends() {
    for backend in [Backend::Postgres, Backend::Sqlite] {
        let db = TestDb::new(backend).await.unwrap();
        let settings = test_settings("winback", &db, false);
        for _ in 0..2 {
            retention_db::migrate_only::<retention_winback::Migrator>(&settings.database)
                .await
                .unwrap();
        }
        let conn = Database::connect(settings.database.url.as_str())
            .await
            .unwrap();
        // Each migration recorded once: the host's shared ones and the service's.
        assert_eq!(
            count(&conn, "SELECT COUNT(*) FROM seaql_migrations").await,
            <retention_winback::Migrator as sea_orm_migration::MigratorTrait>::migrations().len()
                as i64
        );
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM campaigns").await, 0);
        conn.close().await.unwrap();
    }
}

/// Campaigns created before value bases existed keep ranking by the expected value
/// they were launched with; their targets hold no value if retained.
#[tokio::test]
async fn campaigns_from_before_value_bases_keep_the_expected_value() {
    use retention_winback::Migrator;
    use sea_orm_migration::MigratorTrait;
    for backend in [Backend::Postgres, Backend::Sqlite] {
        let db = TestDb::new(backend).await.unwrap();
        let settings = test_settings("winback", &db, false);
        let conn = Database::connect(settings.database.url.as_str())
            .await
            .unwrap();
        // Every migration before the value basis was added.
        let before = Migrator::migrations()
            .iter()
            .position(|m| m.name() == "m20261203_000001_add_value_basis")
            .expect("the value-basis migration") as u32;
        Migrator::up(&conn, Some(before)).await.unwrap();
        let now = "'2026-01-01 00:00:00+00:00'";
        for sql in [
            format!(
                "INSERT INTO campaigns (id, display_name, kind, strategy, offer_kind, \
                 offer_description, offer_cost_minor, currency, channel, target_segment, \
                 target_filter, budget_minor, max_cost_share_of_value, holdout_share, seed, \
                 win_window_days, cool_down_days, schedule_time, triggered, state, \
                 committed_minor, create_time, launch_time, end_time, update_time, version) \
                 VALUES ('c1', 'old', 'WINBACK', 'PRICE_PROMOTION', 'DISCOUNT', '', 100, 'CNY', \
                 'EMAIL', 's1', NULL, 1000, 0.5, 0.0, 1, 30, 0, NULL, false, 'RUNNING', 100, \
                 {now}, {now}, NULL, {now}, 2)"
            ),
            format!(
                "INSERT INTO campaign_targets (campaign_id, customer_id, arm, predicted_clv_minor, \
                 currency, window_start, win_deadline, dispatch_time, last_outcome, outcome_time, \
                 won_back_time, recovered_margin_minor, repeat_purchases) \
                 VALUES ('c1', 'u1', 'TREATED', 5000, 'CNY', {now}, {now}, {now}, NULL, NULL, \
                 NULL, 0, 0)"
            ),
        ] {
            conn.execute_unprepared(&sql).await.unwrap();
        }
        Migrator::up(&conn, None).await.unwrap();
        let old = retention_winback::store::repo::load_campaign(&conn, "c1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            old.value_basis,
            retention_winback::domain::targeting::ValueBasis::Expected,
            "{backend:?}"
        );
        let target = retention_winback::store::repo::find_target(&conn, "c1", "u1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(target.retained_clv_minor, None);
        conn.close().await.unwrap();
    }
}
