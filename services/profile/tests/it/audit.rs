//! The audit log: PII reads, exports, merges and erasures each leave one record
//! naming who did what to which customer; masked reads leave none.

use retention_proto::profile as pb;
use retention_testkit::{AuditCapture, Backend};

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
