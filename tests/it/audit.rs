//! `retention-cli audit` against the four services in embedded mode: each
//! service's trail is listed with filters, and `audit verify` recomputes the
//! chains client-side, passing an intact one and failing (non-zero exit, the
//! broken sequence named) once a row was altered in the database.

use std::process::{Command, Output, Stdio};

use retention_events::EventBus;
use retention_proto::profile as ppb;
use retention_suite::cli::audit::{self, AuditQuery, Audited};
use sea_orm::ConnectionTrait;

use super::{Mode, clients, four_services, url};
use retention_testkit::TestService;

/// `retention-cli --<service> <url>... audit <args>`, with the development
/// token (the services run on the default secret) and none of the test's
/// `RETENTION_*` variables. Waited for off the runtime, which serves the calls.
async fn cli(services: &[TestService; 4], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_retention-cli"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("RETENTION_") || k == "TOKEN") {
        cmd.env_remove(k);
    }
    for (flag, s) in ["--profile", "--interactions", "--segmentation", "--winback"]
        .iter()
        .zip(services)
    {
        cmd.args([*flag, url(s).as_str()]);
    }
    cmd.arg("audit").args(args).stdin(Stdio::null());
    tokio::task::spawn_blocking(move || cmd.output().expect("retention-cli runs"))
        .await
        .unwrap()
}

#[tokio::test]
async fn the_cli_lists_trails_and_verify_fails_on_a_tampered_row() {
    let bus = EventBus::in_process_for_suite();
    let services = four_services(&Mode::Embedded(bus)).await;
    let [profile, interactions, segmentation, winback] = &services;
    let clients = clients(profile, interactions, segmentation, winback).await;

    let mut pc = clients.profile.clone();
    let mut names = Vec::new();
    for who in ["Audit One", "Audit Two"] {
        let c = pc
            .create_customer(clients.req(ppb::CreateCustomerRequest {
                customer: Some(ppb::Customer {
                    kind: ppb::CustomerKind::Individual as i32,
                    display_name: who.into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            }))
            .await
            .unwrap()
            .into_inner();
        names.push(c.name);
    }
    for name in &names {
        pc.get_customer(clients.req(ppb::GetCustomerRequest { name: name.clone() }))
            .await
            .unwrap();
    }
    pc.erase_customer(clients.req(ppb::EraseCustomerRequest {
        name: names[0].clone(),
        request_id: String::new(),
    }))
    .await
    .unwrap();

    // Listing, with filters.
    let all = audit::list(&clients, Audited::Profile, &AuditQuery::default())
        .await
        .unwrap();
    let actions: Vec<&str> = all.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(
        actions,
        ["customer.read_pii", "customer.read_pii", "customer.erase"]
    );
    let erased = audit::list(
        &clients,
        Audited::Profile,
        &AuditQuery {
            action: "customer.erase".into(),
            resource: names[0].clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(erased.len(), 1);
    let table = audit::report(&all);
    assert!(
        table.contains("customer.erase") && table.contains(&names[1]),
        "{table}"
    );
    let listed = cli(
        &services,
        &["list", "--service", "profile", "--action", "customer.erase"],
    )
    .await;
    assert!(listed.status.success(), "{listed:?}");
    let out = String::from_utf8_lossy(&listed.stdout);
    assert!(
        out.contains(&names[0]) && !out.contains("read_pii"),
        "{out}"
    );

    // Intact chains verify, every service's (the others have none yet).
    for name in Audited::NAMES {
        let r = audit::verify(&clients, Audited::parse(name).unwrap())
            .await
            .unwrap();
        assert!(r.ok(), "{name}: {r:?}");
    }
    let ok = cli(&services, &["verify"]).await;
    assert!(ok.status.success(), "{ok:?}");
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(out.contains("profile: OK, 3 records"), "{out}");

    // One field of one row altered in the database: found, by its sequence.
    let db = profile.database().await.unwrap();
    db.execute_unprepared(&format!(
        "UPDATE audit_records SET resources = '[\"{}\"]' WHERE seq = 2",
        names[0]
    ))
    .await
    .unwrap();
    db.close().await.unwrap();
    let broken = cli(&services, &["verify", "--service", "profile"]).await;
    assert!(!broken.status.success(), "{broken:?}");
    let out = String::from_utf8_lossy(&broken.stdout);
    assert!(out.contains("BROKEN at sequence 2"), "{out}");
    let r = audit::verify(&clients, Audited::Profile).await.unwrap();
    assert_eq!(r.broken.map(|b| b.seq), Some(2));

    for s in services {
        s.stop().await.unwrap();
    }
}
