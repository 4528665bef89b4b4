//! Bad input gets INVALID_ARGUMENT with field violations, never a panic or INTERNAL.

use prost_types::FieldMask;
use retention_proto::profile as pb;
use retention_testkit::Backend;
use tonic::Code;

use crate::harness::*;

fn create(c: pb::Customer) -> pb::CreateCustomerRequest {
    pb::CreateCustomerRequest {
        customer: Some(c),
        request_id: String::new(),
    }
}

#[tokio::test]
async fn create_reports_each_bad_field() {
    let mut app = TestApp::spawn(Backend::Postgres).await;
    let cases: Vec<(pb::Customer, &str)> = vec![
        (
            pb::Customer {
                display_name: "   ".into(),
                ..customer("x")
            },
            "customer.display_name",
        ),
        (
            pb::Customer {
                email: "not-an-email".into(),
                ..customer("x")
            },
            "customer.email",
        ),
        (
            pb::Customer {
                phone: "12".into(),
                ..customer("x")
            },
            "customer.phone",
        ),
        (
            pb::Customer {
                kind: 0,
                ..customer("x")
            },
            "customer.kind",
        ),
        (
            pb::Customer {
                kind: 42,
                ..customer("x")
            },
            "customer.kind",
        ),
        (
            pb::Customer {
                display_name: "n".repeat(201),
                ..customer("x")
            },
            "customer.display_name",
        ),
        (
            pb::Customer {
                tags: vec!["Bad Tag!".into()],
                ..customer("x")
            },
            "customer.tags[0]",
        ),
        (
            pb::Customer {
                firmographics: Some(pb::Firmographics {
                    annual_revenue: Some(retention_proto::common::Money {
                        currency_code: "CNY".into(),
                        minor_units: -5,
                    }),
                    ..Default::default()
                }),
                ..customer("x")
            },
            "customer.firmographics.annual_revenue.minor_units",
        ),
        (
            pb::Customer {
                firmographics: Some(pb::Firmographics {
                    credit_rating: 99,
                    ..Default::default()
                }),
                ..customer("x")
            },
            "customer.firmographics.credit_rating",
        ),
    ];
    for (c, field) in cases {
        let err = app
            .client
            .create_customer(app.req(create(c)))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err:?}");
        assert!(
            violated_fields(&err).contains(&field.to_string()),
            "{field} not in {:?}",
            violated_fields(&err)
        );
    }
    let err = app
        .client
        .create_customer(app.req(pb::CreateCustomerRequest {
            customer: None,
            request_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), vec!["customer"]);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM customers").await,
        0,
        "nothing was written"
    );
    app.stop().await;
}

#[tokio::test]
async fn purchases_refuse_negative_amounts_and_oversize_fields() {
    let mut app = TestApp::spawn(Backend::Postgres).await;
    let c = app.create("Buyer").await;
    let mut negative = purchase(&c.name, "o-1", -100);
    negative.gross_margin = cny(0);
    let err = app
        .client
        .record_purchase(app.req(pb::RecordPurchaseRequest {
            purchase: Some(negative),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&err), vec!["purchase.amount.minor_units"]);

    let mut long = purchase(&c.name, &"o".repeat(129), 100);
    long.product_category = "c".repeat(65);
    let err = app
        .client
        .record_purchase(app.req(pb::RecordPurchaseRequest {
            purchase: Some(long),
        }))
        .await
        .unwrap_err();
    let fields = violated_fields(&err);
    assert!(
        fields.contains(&"purchase.order_id".to_string())
            && fields.contains(&"purchase.product_category".to_string()),
        "{fields:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn list_refuses_bad_page_sizes_filters_and_tokens() {
    let mut app = TestApp::spawn(Backend::Postgres).await;
    for (req, field) in [
        (
            pb::ListCustomersRequest {
                page_size: -1,
                ..Default::default()
            },
            "page_size",
        ),
        (
            pb::ListCustomersRequest {
                page_size: 1001,
                ..Default::default()
            },
            "page_size",
        ),
        (
            pb::ListCustomersRequest {
                filter: "kind ==".into(),
                ..Default::default()
            },
            "filter",
        ),
        (
            pb::ListCustomersRequest {
                filter: "email == \"x@y.z\"".into(),
                ..Default::default()
            },
            "filter",
        ),
        (
            pb::ListCustomersRequest {
                filter: "kind == \"ALIEN\"".into(),
                ..Default::default()
            },
            "filter",
        ),
        (
            pb::ListCustomersRequest {
                page_token: "garbage!".into(),
                ..Default::default()
            },
            "page_token",
        ),
    ] {
        let err = app.client.list_customers(app.req(req)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{field}");
        assert_eq!(violated_fields(&err), vec![field.to_string()]);
    }
    app.stop().await;
}

#[tokio::test]
async fn names_masks_and_request_ids_are_checked() {
    let mut app = TestApp::spawn(Backend::Postgres).await;
    let c = app.create("Someone").await;
    let err = app
        .client
        .get_customer(app.req(pb::GetCustomerRequest {
            name: "customer/1".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), vec!["name"]);
    let err = app
        .client
        .update_customer(app.req(pb::UpdateCustomerRequest {
            customer: Some(c.clone()),
            update_mask: Some(FieldMask {
                paths: vec!["create_time".into()],
            }),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&err), vec!["update_mask"]);
    let err = app
        .client
        .create_customer(app.req(pb::CreateCustomerRequest {
            customer: Some(customer("x")),
            request_id: "has spaces".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), vec!["request_id"]);
    let err = app
        .client
        .update_consent(app.req(pb::UpdateConsentRequest {
            name: c.name.clone(),
            channel: 77,
            status: 1,
            source: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), vec!["channel"]);
    app.stop().await;
}

#[tokio::test]
async fn purchases_refuse_amounts_beyond_max_minor_units() {
    let mut app = TestApp::spawn(Backend::Postgres).await;
    let c = app.create("Poison").await;
    let max = retention_domain::MAX_MINOR_UNITS;
    // Three purchases of 2^62 would wrap an i64 sum; one with an i64::MAX margin.
    let mut poison: Vec<(pb::Purchase, Vec<&str>)> = (0..3)
        .map(|i| {
            let mut p = purchase(&c.name, &format!("huge-{i}"), 1 << 62);
            p.gross_margin = cny(0);
            (p, vec!["purchase.amount.minor_units"])
        })
        .collect();
    let mut margin = purchase(&c.name, "margin", 100);
    margin.gross_margin = cny(i64::MAX);
    poison.push((margin, vec!["purchase.gross_margin.minor_units"]));

    // Single path: INVALID_ARGUMENT naming the field and the bound.
    for (p, fields) in &poison {
        let err = app
            .client
            .record_purchase(app.req(pb::RecordPurchaseRequest {
                purchase: Some(p.clone()),
            }))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert_eq!(&violated_fields(&err), fields);
        let described = retention_errors::field_violations(&err);
        assert!(described[0].1.contains(&max.to_string()), "{described:?}");
    }

    // Bulk path: each poison row is rejected by position, naming the field; the
    // good row beside them lands.
    let mut rows: Vec<pb::Purchase> = poison.iter().map(|(p, _)| p.clone()).collect();
    rows.push(purchase(&c.name, "fine", 100));
    let resp = app
        .client
        .record_purchases(app.req(tokio_stream::iter(vec![pb::RecordPurchasesRequest {
            purchases: rows,
        }])))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.recorded_count, 1, "{resp:?}");
    assert_eq!(resp.rejected_count, 4, "{resp:?}");
    for (r, (_, fields)) in resp.rejected.iter().zip(&poison) {
        assert!(
            r.reason.contains(fields[0]) && r.reason.contains(&max.to_string()),
            "{r:?}"
        );
    }
    assert_eq!(
        resp.rejected.iter().map(|r| r.index).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM purchases").await, 1);

    // Exactly at the bound is accepted, on both paths; a negative margin too.
    let mut at_bound = purchase(&c.name, "at-bound", max);
    at_bound.gross_margin = cny(-max);
    at_bound.discount = cny(max);
    let stored = app.record(at_bound).await;
    assert_eq!(stored.amount, cny(max));
    assert_eq!(stored.gross_margin, cny(-max));
    let resp = app
        .client
        .record_purchases(app.req(tokio_stream::iter(vec![pb::RecordPurchasesRequest {
            purchases: vec![purchase(&c.name, "at-bound-bulk", max)],
        }])))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (resp.recorded_count, resp.rejected_count),
        (1, 0),
        "{resp:?}"
    );

    // Customer money fields carry the same bound.
    let err = app
        .client
        .create_customer(app.req(create(pb::Customer {
            firmographics: Some(pb::Firmographics {
                annual_revenue: cny(max + 1),
                ..Default::default()
            }),
            ..customer("x")
        })))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&err),
        vec!["customer.firmographics.annual_revenue.minor_units"]
    );
    app.stop().await;
}
