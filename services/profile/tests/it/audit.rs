//! The audit trail: PII reads, exports, merges, erasures and backfills each leave
//! one record naming who did what to which customer, as a log line and as a row
//! of the hash chain in the service's database (listed by ListAuditRecords,
//! verified, swept); masked reads leave none.

use std::time::Duration;

use retention_config::Settings;
use retention_db::audit::{BrokenReason, VerifyReport};
use retention_db::sea_orm::ConnectionTrait;
use retention_proto::common::AuditRecord;
use retention_proto::profile as pb;
use retention_proto::profile::customer_profile_service_client::CustomerProfileServiceClient;
use retention_testkit::{AuditCapture, Backend, TestDb, with_token};

use crate::harness::*;

#[tokio::test]
async fn pii_reads_exports_merges_and_erasures_are_audited() {
    let audit = AuditCapture::install();
    let mut app = TestApp::spawn(Backend::Sqlite).await;
    let (a, b) = (app.create("Audited A").await, app.create("Audited B").await);
    audit.take();

    // Masked reads are not PII reads.
    app.client
        .get_customer(app.req_scopes(
            pb::GetCustomerRequest {
                name: a.name.clone(),
            },
            &["profile.read"],
        ))
        .await
        .unwrap();
    assert!(audit.take().is_empty(), "a masked read is not audited");

    app.client
        .get_customer(app.req(pb::GetCustomerRequest {
            name: a.name.clone(),
        }))
        .await
        .unwrap();
    app.client
        .export_customer_data(app.req(pb::ExportCustomerDataRequest {
            name: a.name.clone(),
        }))
        .await
        .unwrap();
    app.merge(&a.name, &b.name).await;
    app.erase(&a.name).await;

    let got: Vec<(String, String, String)> = audit
        .take()
        .into_iter()
        .map(|r| {
            assert!(
                r.contains_key("at_unix_ms") && r.contains_key("trace_id"),
                "{r:?}"
            );
            (
                r["who"].clone(),
                r["action"].clone(),
                r["resources"].clone(),
            )
        })
        .collect();
    let who = "test-user";
    assert_eq!(
        got,
        vec![
            (who.into(), "customer.read_pii".into(), a.name.clone()),
            (who.into(), "customer.export".into(), a.name.clone()),
            (
                who.into(),
                "customer.merge".into(),
                format!("{} {}", a.name, b.name)
            ),
            (who.into(), "customer.erase".into(), a.name.clone()),
        ]
    );
    app.stop().await;
}

/// Every record of the service matching `req`'s filter, page by page (`size`
/// per page), with a token carrying `audit.read` only.
async fn audit_rows(
    app: &mut TestApp,
    req: pb::ListAuditRecordsRequest,
    size: i32,
) -> Vec<AuditRecord> {
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let page = app
            .client
            .list_audit_records(app.req_scopes(
                pb::ListAuditRecordsRequest {
                    page_size: size,
                    page_token: token,
                    ..req.clone()
                },
                &["audit.read"],
            ))
            .await
            .expect("list audit records")
            .into_inner();
        assert!(page.audit_records.len() <= size as usize);
        all.extend(page.audit_records);
        if page.next_page_token.is_empty() {
            return all;
        }
        token = page.next_page_token;
    }
}

fn actions(rows: &[AuditRecord]) -> Vec<&str> {
    rows.iter().map(|r| r.action.as_str()).collect()
}

async fn verify(app: &TestApp) -> VerifyReport {
    let db = app.database().await;
    let report = retention_db::audit::verify(&db).await.expect("verify");
    db.close().await.unwrap();
    report
}

#[tokio::test]
async fn audited_actions_are_rows_listed_with_filters_and_pages() {
    let mut app = TestApp::spawn(Backend::Postgres).await;
    let (a, b) = (app.create("Row A").await, app.create("Row B").await);
    // Creates and masked reads are not audited.
    app.client
        .get_customer(app.req_scopes(
            pb::GetCustomerRequest {
                name: a.name.clone(),
            },
            &["profile.read"],
        ))
        .await
        .unwrap();
    assert!(
        audit_rows(&mut app, Default::default(), 10)
            .await
            .is_empty()
    );

    app.get(&a.name).await;
    app.client
        .batch_get_customers(app.req(pb::BatchGetCustomersRequest {
            names: vec![a.name.clone(), b.name.clone()],
        }))
        .await
        .unwrap();
    app.list("", 10, String::new()).await;
    app.export(&a.name).await;
    let merge = pb::MergeCustomersRequest {
        survivor: a.name.clone(),
        merged: b.name.clone(),
        request_id: uuid::Uuid::new_v4().to_string(),
        ..Default::default()
    };
    app.client
        .merge_customers(app.req(merge.clone()))
        .await
        .unwrap();
    app.erase(&a.name).await;
    app.client
        .backfill_events(app.req(pb::BackfillEventsRequest {
            consumer_group: "segmentation".into(),
            ..Default::default()
        }))
        .await
        .unwrap();

    // All of them, two per page, oldest first, chained.
    let rows = audit_rows(&mut app, Default::default(), 2).await;
    assert_eq!(
        actions(&rows),
        [
            "customer.read_pii",
            "customer.read_pii",
            "customer.read_pii",
            "customer.export",
            "customer.merge",
            "customer.erase",
            "events.backfill",
        ]
    );
    assert_eq!(
        rows.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=7).collect::<Vec<_>>()
    );
    for (r, prev) in rows.iter().skip(1).zip(&rows) {
        assert_eq!(r.prev_hash, prev.hash);
    }
    assert!(
        rows.iter()
            .all(|r| r.actor == "test-user" && r.hash.len() == 64)
    );
    assert_eq!(rows[1].resources, [a.name.clone(), b.name.clone()]);
    assert_eq!(rows[4].resources, [a.name.clone(), b.name.clone()]);
    assert_eq!(
        rows[4].request_id, merge.request_id,
        "the call's request id"
    );
    assert!(
        !rows[0].request_id.is_empty(),
        "x-request-id when no AIP-155 id"
    );
    assert_eq!(rows[6].resources, ["segmentation"]);
    // No personal data in the trail.
    let text = format!("{rows:?}");
    assert!(!text.contains("Row A") && !text.contains("example.com"));

    // The rows are the records of truth, and they verify.
    let report = verify(&app).await;
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.checked, 7);

    // Filters.
    let by_action = audit_rows(
        &mut app,
        pb::ListAuditRecordsRequest {
            action: "customer.read_pii".into(),
            ..Default::default()
        },
        1,
    )
    .await;
    assert_eq!(by_action.len(), 3);
    let by_resource = audit_rows(
        &mut app,
        pb::ListAuditRecordsRequest {
            resource: b.name.clone(),
            ..Default::default()
        },
        50,
    )
    .await;
    assert_eq!(
        actions(&by_resource),
        ["customer.read_pii", "customer.read_pii", "customer.merge"]
    );
    let nobody = audit_rows(
        &mut app,
        pb::ListAuditRecordsRequest {
            actor: "someone-else".into(),
            ..Default::default()
        },
        50,
    )
    .await;
    assert!(nobody.is_empty());
    let erase_time = rows[5].time.unwrap();
    let since_erase = audit_rows(
        &mut app,
        pb::ListAuditRecordsRequest {
            since: Some(erase_time),
            ..Default::default()
        },
        50,
    )
    .await;
    assert_eq!(actions(&since_erase), ["customer.erase", "events.backfill"]);
    let until_erase = audit_rows(
        &mut app,
        pb::ListAuditRecordsRequest {
            until: Some(erase_time),
            ..Default::default()
        },
        50,
    )
    .await;
    assert!(until_erase.len() <= 5 && !actions(&until_erase).contains(&"customer.erase"));

    // Bad filters and tokens are field violations.
    let first = app
        .client
        .list_audit_records(app.req_scopes(
            pb::ListAuditRecordsRequest {
                page_size: 1,
                ..Default::default()
            },
            &["audit.read"],
        ))
        .await
        .unwrap()
        .into_inner();
    for (bad, field) in [
        (
            pb::ListAuditRecordsRequest {
                page_token: "junk".into(),
                ..Default::default()
            },
            "page_token",
        ),
        (
            pb::ListAuditRecordsRequest {
                action: "customer.erase".into(),
                page_token: first.next_page_token.clone(),
                ..Default::default()
            },
            "page_token",
        ),
        (
            pb::ListAuditRecordsRequest {
                page_size: 5000,
                ..Default::default()
            },
            "page_size",
        ),
        (
            pb::ListAuditRecordsRequest {
                since: Some(erase_time),
                until: Some(erase_time),
                ..Default::default()
            },
            "until",
        ),
    ] {
        let err = app
            .client
            .list_audit_records(app.req_scopes(bad, &["audit.read"]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        let fields: Vec<String> = retention_errors::field_violations(&err)
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        assert_eq!(fields, [field]);
    }

    // `audit.read` is needed, and no other scope stands in for it.
    let denied = app
        .client
        .list_audit_records(app.req(pb::ListAuditRecordsRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    app.stop().await;
}

#[tokio::test]
async fn an_altered_or_removed_row_is_found_by_its_sequence() {
    let mut app = TestApp::spawn(Backend::Postgres).await;
    let c = app.create("Tampered").await;
    for _ in 0..4 {
        app.get(&c.name).await;
    }
    assert!(verify(&app).await.ok());
    let db = app.database().await;
    db.execute_unprepared("UPDATE audit_records SET actor = 'nobody' WHERE seq = 2")
        .await
        .unwrap();
    let broken = verify(&app).await.broken.expect("tampering found");
    assert_eq!((broken.seq, broken.reason), (2, BrokenReason::HashMismatch));
    // Through gRPC, a client sees the same break with the same code.
    let rows = audit_rows(&mut app, Default::default(), 50).await;
    let mut chain = retention_db::audit::Chain::new();
    let seen = rows
        .iter()
        .map(|r| chain.check(&retention_server::audit::from_proto(r)))
        .find_map(Result::err)
        .expect("the client finds it too");
    assert_eq!(seen.seq, 2);

    // Put back as it was (the hash is over the field), then remove a middle row.
    db.execute_unprepared("UPDATE audit_records SET actor = 'test-user' WHERE seq = 2")
        .await
        .unwrap();
    assert!(verify(&app).await.ok());
    db.execute_unprepared("DELETE FROM audit_records WHERE seq = 3")
        .await
        .unwrap();
    let broken = verify(&app).await.broken.expect("deletion found");
    assert_eq!((broken.seq, broken.reason), (3, BrokenReason::Gap));
    db.close().await.unwrap();
    app.stop().await;
}

#[tokio::test]
async fn a_retention_sweep_keeps_a_chain_that_verifies_from_its_oldest_row() {
    let mut app = TestApp::spawn(Backend::Postgres).await;
    let c = app.create("Swept").await;
    for _ in 0..5 {
        app.get(&c.name).await;
    }
    let db = app.database().await;
    // Nothing is 400 days old (the default retention).
    assert_eq!(
        retention_db::audit::sweep(&db, Duration::from_secs(400 * 86_400))
            .await
            .unwrap(),
        0
    );
    // Everything is older than zero: all but the newest row go.
    assert_eq!(
        retention_db::audit::sweep(&db, Duration::ZERO)
            .await
            .unwrap(),
        4
    );
    let report = verify(&app).await;
    assert!(report.ok(), "{report:?}");
    assert_eq!((report.first_seq, report.last_seq), (Some(5), Some(5)));
    // The chain goes on from the row kept.
    app.get(&c.name).await;
    let rows = audit_rows(&mut app, Default::default(), 50).await;
    assert_eq!(rows.iter().map(|r| r.seq).collect::<Vec<_>>(), [5, 6]);
    assert_eq!(rows[1].prev_hash, rows[0].hash);
    assert!(verify(&app).await.ok());
    db.close().await.unwrap();
    app.stop().await;
}

#[tokio::test]
async fn the_sweep_runs_on_its_own_with_the_service() {
    // One-second sweeps and a one-day retention: the rows just written stay.
    let mut app = TestApp::spawn_with(Backend::Sqlite, false, |s| {
        s.audit.retention_days = 1;
        s.audit.sweep_interval_secs = 1;
    })
    .await;
    let c = app.create("Kept").await;
    app.get(&c.name).await;
    app.get(&c.name).await;
    // Age the first row past the retention, hash and all (as if written then).
    let db = app.database().await;
    let mut rows = retention_db::audit::list(&db, &Default::default(), None, 10)
        .await
        .unwrap();
    rows[0].time_ms -= 2 * 86_400_000;
    rows[0].hash = rows[0].computed_hash();
    rows[1].prev_hash = rows[0].hash.clone();
    rows[1].hash = rows[1].computed_hash();
    for r in &rows {
        db.execute_unprepared(&format!(
            "UPDATE audit_records SET time_ms = {}, prev_hash = '{}', hash = '{}' WHERE seq = {}",
            r.time_ms, r.prev_hash, r.hash, r.seq
        ))
        .await
        .unwrap();
    }
    db.close().await.unwrap();
    let mut left = i64::MAX;
    for _ in 0..100 {
        left = app.count("SELECT COUNT(*) FROM audit_records").await;
        if left == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, 1, "the old row was swept");
    let report = verify(&app).await;
    assert!(report.ok() && report.first_seq == Some(2), "{report:?}");
    app.stop().await;
}

/// The real binary against PostgreSQL, killed with SIGKILL the moment the erase
/// answered OK: the erase's audit row is in the database and the chain verifies.
#[tokio::test]
async fn an_erase_answered_ok_has_its_row_even_when_killed_right_after() {
    let db = TestDb::postgres().await.unwrap();
    let dir = std::env::temp_dir().join(format!("retention-audit-kill-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = retention_testkit::free_port();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_retention-profile"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("RETENTION_")) {
        cmd.env_remove(k);
    }
    let mut child = cmd
        .current_dir(&dir)
        .env("RETENTION_SERVICE__HOST", "127.0.0.1")
        .env("RETENTION_SERVICE__PORT", port.to_string())
        .env("RETENTION_DATABASE__URL", &db.url)
        .env("RETENTION_REDIS__URL", "")
        .env("RETENTION_ADMIN__PORT", "0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the binary starts");
    let channel = {
        let endpoint = format!("http://127.0.0.1:{port}");
        let mut tries = 0;
        loop {
            if let Ok(ch) = tonic::transport::Endpoint::from_shared(endpoint.clone())
                .unwrap()
                .connect()
                .await
                && retention_testkit::wait_until_serving(ch.clone())
                    .await
                    .is_ok()
            {
                break ch;
            }
            tries += 1;
            assert!(tries < 600, "the profile binary did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let token = retention_testkit::mint_token(&Settings::defaults("profile", 0), ALL_SCOPES);
    let mut client = CustomerProfileServiceClient::new(channel);
    let c = client
        .create_customer(with_token(
            pb::CreateCustomerRequest {
                customer: Some(customer("Killed")),
                request_id: String::new(),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    let erased = client
        .erase_customer(with_token(
            pb::EraseCustomerRequest {
                name: c.name.clone(),
                request_id: "erase-before-kill".into(),
            },
            &token,
        ))
        .await;
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    erased.expect("the erase answered OK");

    let conn = sea_orm::Database::connect(db.url.as_str()).await.unwrap();
    let rows = retention_db::audit::list(
        &conn,
        &retention_db::audit::AuditFilter {
            action: "customer.erase".into(),
            ..Default::default()
        },
        None,
        10,
    )
    .await
    .unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].entry.resources, [c.name.as_str()]);
    assert_eq!(rows[0].entry.request_id, "erase-before-kill");
    assert_eq!(rows[0].entry.actor, "test-user");
    let report = retention_db::audit::verify(&conn).await.unwrap();
    assert!(report.ok(), "{report:?}");
    conn.close().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Unmasked reads from many callers at once on PostgreSQL (a pool of several
/// connections): the appends queue on the advisory lock, so the chain has one
/// row per read, no gap and no fork.
#[tokio::test]
async fn concurrent_appends_keep_one_chain() {
    let mut app = TestApp::spawn(Backend::Postgres).await;
    let c = app.create("Concurrent").await;
    let reads = (0..24).map(|_| {
        let mut client = app.client.clone();
        let req = app.req(pb::GetCustomerRequest {
            name: c.name.clone(),
        });
        async move { client.get_customer(req).await.map(drop) }
    });
    for r in futures::future::join_all(reads).await {
        r.expect("read");
    }
    let report = verify(&app).await;
    assert!(report.ok(), "{report:?}");
    assert_eq!((report.checked, report.last_seq), (24, Some(24)));
    app.stop().await;
}
