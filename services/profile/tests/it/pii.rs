//! PII at rest: names, addresses and phone numbers sealed in the database,
//! e-mail lookups through the keyed hash, key rotation and rows from before
//! encryption sealed again when the service starts.

use base64::Engine;
use retention_config::PiiSettings;
use retention_proto::profile as pb;
use retention_testkit::Backend;
use sea_orm::{ConnectionTrait, Statement};
use tonic::Code;

use crate::harness::*;

/// display_name, email, phone and email_hash as stored.
async fn stored(app: &TestApp, name: &str) -> [Option<String>; 4] {
    let id = name.trim_start_matches("customers/");
    let db = app.database().await;
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            format!(
                "SELECT display_name, email, phone, email_hash FROM customers WHERE id = '{id}'"
            ),
        ))
        .await
        .unwrap()
        .expect("the row");
    ["display_name", "email", "phone", "email_hash"].map(|c| row.try_get("", c).unwrap())
}

async fn by_email(app: &mut TestApp, email: &str, filter: &str) -> Vec<String> {
    let req = app.req(pb::ListCustomersRequest {
        email: email.into(),
        filter: filter.into(),
        ..Default::default()
    });
    let r = app.client.list_customers(req).await.unwrap().into_inner();
    r.customers.into_iter().map(|c| c.name).collect()
}

async fn get(app: &mut TestApp, name: &str) -> Result<pb::Customer, tonic::Status> {
    let req = app.req(pb::GetCustomerRequest { name: name.into() });
    app.client.get_customer(req).await.map(|r| r.into_inner())
}

fn keys(key: u8, id: &str, retired: &[(&str, u8)]) -> PiiSettings {
    let b64 = |n: u8| base64::engine::general_purpose::STANDARD.encode([n; 32]);
    PiiSettings {
        encryption_key: b64(key),
        key_id: id.into(),
        retired_keys: retired
            .iter()
            .map(|(id, k)| format!("{id}={}", b64(*k)))
            .collect::<Vec<_>>()
            .join(","),
        lookup_key: b64(99),
    }
}

#[tokio::test]
async fn pii_is_stored_sealed_and_customers_are_found_by_email_through_its_keyed_hash() {
    let mut app = TestApp::spawn(Backend::Postgres).await;
    let li = app.create("Li Lei").await;
    let han = app.create("Han Meimei").await;

    let [name, email, phone, hash] = stored(&app, &li.name).await;
    for (column, value) in [
        ("display_name", &name),
        ("email", &email),
        ("phone", &phone),
    ] {
        let value = value.as_deref().expect(column);
        assert!(value.starts_with("enc1:"), "{column}: {value}");
        for clear in ["Li Lei", "li.lei", "example.com", "138"] {
            assert!(!value.contains(clear), "{column} shows {clear:?}: {value}");
        }
    }
    let hash = hash.expect("a lookup hash");
    assert!(
        hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
        "{hash}"
    );
    assert_ne!(Some(hash), stored(&app, &han.name).await[3]);
    let read = get(&mut app, &li.name).await.unwrap();
    assert_eq!(
        (read.display_name.as_str(), read.email.as_str()),
        ("Li Lei", "li.lei@example.com")
    );
    assert_eq!(read.phone, li.phone);

    // Found by address, whatever its case and surrounding blanks, alone or with
    // a filter; an unknown address finds nobody.
    assert_eq!(
        by_email(&mut app, " LI.Lei@Example.COM ", "").await,
        vec![li.name.clone()]
    );
    assert_eq!(
        by_email(&mut app, "li.lei@example.com", "region == \"Shanghai\"").await,
        vec![li.name.clone()]
    );
    assert!(
        by_email(&mut app, "li.lei@example.com", "region == \"Beijing\"")
            .await
            .is_empty()
    );
    assert!(
        by_email(&mut app, "nobody@example.com", "")
            .await
            .is_empty()
    );

    // Probing addresses is reading PII.
    let req = app.req_scopes(
        pb::ListCustomersRequest {
            email: "li.lei@example.com".into(),
            ..Default::default()
        },
        &["profile.read"],
    );
    let denied = app.client.list_customers(req).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(denied.message().contains("pii.read"), "{denied:?}");

    // A changed address is found under the new one only.
    let req = app.req(pb::UpdateCustomerRequest {
        customer: Some(pb::Customer {
            name: li.name.clone(),
            email: "lei.li@example.org".into(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["email".into()],
        }),
    });
    app.client.update_customer(req).await.unwrap();
    assert!(
        by_email(&mut app, "li.lei@example.com", "")
            .await
            .is_empty()
    );
    assert_eq!(
        by_email(&mut app, "lei.li@example.org", "").await,
        vec![li.name.clone()]
    );

    // An erased customer keeps neither ciphertext nor hash.
    app.erase(&han.name).await;
    assert_eq!(stored(&app, &han.name).await, [None, None, None, None]);
    assert!(
        by_email(&mut app, "han.meimei@example.com", "")
            .await
            .is_empty()
    );
    app.stop().await;
}

#[tokio::test]
async fn rotated_keys_and_rows_from_before_encryption_are_sealed_again_at_start() {
    let mut app = TestApp::spawn_with(Backend::Sqlite, false, |s| {
        s.pii = keys(1, "k1", &[]);
    })
    .await;
    let sealed = app.create("Sealed Early").await;
    assert!(
        stored(&app, &sealed.name).await[1]
            .as_deref()
            .unwrap()
            .starts_with("enc1:k1:")
    );
    // A row as written before encryption: PII in the clear, no lookup hash.
    let legacy = app.create("Legacy Row").await;
    let id = legacy.name.trim_start_matches("customers/");
    app.database()
        .await
        .execute_unprepared(&format!(
            "UPDATE customers SET display_name = 'Legacy Row', email = 'legacy.row@example.com', \
             phone = '+8613900000000', email_hash = NULL WHERE id = '{id}'"
        ))
        .await
        .unwrap();

    // Rotate: k2 writes, k1 is retired but still read.
    app.restart_with(|s| s.pii = keys(2, "k2", &[("k1", 1)]))
        .await;
    assert_eq!(
        get(&mut app, &sealed.name).await.unwrap().email,
        "sealed.early@example.com"
    );
    assert_eq!(
        get(&mut app, &legacy.name).await.unwrap().display_name,
        "Legacy Row"
    );
    // The start-up sweep seals both rows under k2 and gives the legacy row its hash.
    let sql = "SELECT COUNT(*) FROM customers WHERE email LIKE 'enc1:k2:%' \
               AND display_name LIKE 'enc1:k2:%' AND phone LIKE 'enc1:k2:%' \
               AND email_hash IS NOT NULL";
    let mut resealed = 0;
    for _ in 0..200 {
        resealed = app.count(sql).await;
        if resealed == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(resealed, 2, "rows sealed under the new key");
    // The re-encryption is in the audit trail, committed with the rows.
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM audit_records WHERE action = 'pii.reseal' \
             AND actor = 'system' AND resources = '[\"pii_keys/k2\"]'"
        )
        .await,
        1
    );
    let [name, ..] = stored(&app, &legacy.name).await;
    assert!(!name.unwrap().contains("Legacy"));
    assert_eq!(
        by_email(&mut app, "legacy.row@example.com", "").await,
        vec![legacy.name.clone()]
    );

    // With every row under k2, k1 can go.
    app.restart_with(|s| s.pii = keys(2, "k2", &[])).await;
    assert_eq!(
        get(&mut app, &sealed.name).await.unwrap().display_name,
        "Sealed Early"
    );

    // Without the key a row was sealed under, it is an error, never garbage.
    app.restart_with(|s| s.pii = keys(1, "k1", &[])).await;
    let err = get(&mut app, &sealed.name).await.unwrap_err();
    assert_eq!(err.code(), Code::Internal, "{err:?}");
    assert!(!err.message().contains("Sealed"), "{err:?}");
    app.stop().await;
}

#[tokio::test]
async fn outside_the_embedded_mode_the_service_does_not_start_without_pii_keys() {
    let db = retention_testkit::TestDb::sqlite().unwrap();
    let mut settings = retention_testkit::test_settings("profile", &db, false);
    settings.auth.allow_dev_secret = false;
    settings.pii = PiiSettings::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = crate::harness::run(settings, listener, std::future::pending::<()>())
        .await
        .expect_err("started without keys");
    assert!(
        err.to_string().contains("RETENTION_PII__ENCRYPTION_KEY"),
        "{err}"
    );
}
