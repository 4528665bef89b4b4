//! Customer lifecycle: create, read, update with etags, list with filters and
//! stable paging, consent, PII masking.

use prost_types::FieldMask;
use retention_proto::profile as pb;
use retention_testkit::Backend;
use tonic::Code;

use crate::harness::*;
use retention_testkit::on_both_backends;

async fn create_get_update_list(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let created = app.create("Li Lei").await;
    assert!(created.name.starts_with("customers/"));
    assert_eq!(created.display_name, "Li Lei");
    assert_eq!(created.email, "li.lei@example.com");
    assert_eq!(created.phone, "+8613800138000", "phone normalised");
    assert_eq!(created.etag, "\"1\"");
    assert!(!created.pii_masked);

    let got = app.get(&created.name).await;
    assert_eq!(got, created);

    // Update with the right etag succeeds and bumps it.
    let mut patch = created.clone();
    patch.email = "lei@example.org".into();
    patch.display_name = "ignored: not in mask".into();
    let updated = app
        .client
        .update_customer(app.req(pb::UpdateCustomerRequest {
            customer: Some(patch.clone()),
            update_mask: Some(FieldMask {
                paths: vec!["email".into()],
            }),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.email, "lei@example.org");
    assert_eq!(updated.display_name, "Li Lei");
    assert_eq!(updated.etag, "\"2\"");

    // The stale etag is refused with ABORTED and a precondition failure.
    let err = app
        .client
        .update_customer(app.req(pb::UpdateCustomerRequest {
            customer: Some(patch),
            update_mask: Some(FieldMask {
                paths: vec!["email".into()],
            }),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Aborted, "{err:?}");

    // Batch get returns request order.
    let other = app.create("Han Meimei").await;
    let batch = app
        .client
        .batch_get_customers(app.req(pb::BatchGetCustomersRequest {
            names: vec![other.name.clone(), created.name.clone()],
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        batch
            .customers
            .iter()
            .map(|c| c.name.clone())
            .collect::<Vec<_>>(),
        vec![other.name.clone(), created.name.clone()]
    );

    // Consent per channel.
    let consented = app
        .consent(
            &created.name,
            pb::ContactChannel::Email,
            pb::ConsentStatus::Withdrawn,
            "unsubscribe-link",
        )
        .await;
    assert_eq!(consented.consents.len(), 1);
    assert_eq!(
        consented.consents[0].status,
        pb::ConsentStatus::Withdrawn as i32
    );
    assert_eq!(consented.consents[0].source, "unsubscribe-link");
    app.stop().await;
}
on_both_backends!(create_get_update_list_works, create_get_update_list);

async fn list_filters_and_pages(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let mut business = Vec::new();
    for i in 0..7 {
        let mut c = customer(&format!("Firm {i}"));
        c.kind = pb::CustomerKind::Business as i32;
        c.tags = if i % 2 == 0 {
            vec!["key-account".into()]
        } else {
            vec![]
        };
        c.attributes.insert(
            "tier".into(),
            if i < 3 { "gold".into() } else { "iron".into() },
        );
        c.firmographics = Some(pb::Firmographics {
            credit_rating: pb::CreditRating::Good as i32,
            share_of_wallet: Some(i as f64 / 10.0),
            ..Default::default()
        });
        business.push(app.create_with(c).await.name);
    }
    app.create("Private Person").await;

    let list = |filter: &str, page_size: i32, token: String| pb::ListCustomersRequest {
        filter: filter.into(),
        page_size,
        page_token: token,
        email: String::new(),
    };
    let names = |r: &pb::ListCustomersResponse| {
        r.customers
            .iter()
            .map(|c| c.name.clone())
            .collect::<Vec<_>>()
    };

    let all_business = app.list("kind == \"BUSINESS\"", 100, String::new()).await;
    assert_eq!(names(&all_business), business, "id order is creation order");

    let tagged = app
        .list(
            "\"key-account\" in tags && attributes.tier == \"gold\"",
            100,
            String::new(),
        )
        .await;
    assert_eq!(
        names(&tagged),
        vec![business[0].clone(), business[2].clone()]
    );

    let wallet = app
        .list(
            "share_of_wallet >= 0.5 || credit_rating == \"BEST\"",
            100,
            String::new(),
        )
        .await;
    assert_eq!(names(&wallet), business[5..].to_vec());

    // A missing value fails a predicate (two-valued, like in-memory evaluation), so
    // its negation matches the customer without firmographics.
    let negated = app
        .list("!(credit_rating == \"GOOD\")", 100, String::new())
        .await;
    assert_eq!(negated.customers.len(), 1);
    assert_eq!(negated.customers[0].display_name, "Private Person");

    // Paging of 3: concurrent inserts land after the cursor, nothing repeats or is skipped.
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = app.list("kind == \"BUSINESS\"", 3, token.clone()).await;
        seen.extend(names(&page));
        pages += 1;
        if pages == 1 {
            // A write between pages: update one already seen and create a new one.
            let mut late = customer("Late Firm");
            late.kind = pb::CustomerKind::Business as i32;
            business.push(app.create_with(late).await.name);
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, business, "every row exactly once, in order");
    assert_eq!(pages, 3);

    // A token cannot be reused with another filter.
    let first = app.list("kind == \"BUSINESS\"", 2, String::new()).await;
    let err = app
        .client
        .list_customers(app.req(list("kind == \"INDIVIDUAL\"", 2, first.next_page_token)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&err), vec!["page_token"]);
    app.stop().await;
}
on_both_backends!(list_filters_and_pages_stably, list_filters_and_pages);

#[tokio::test]
async fn create_is_idempotent_on_request_id() {
    let mut app = TestApp::spawn(Backend::Postgres).await;
    let request_id = uuid::Uuid::new_v4().to_string();
    let mk = |app: &TestApp| {
        app.req(pb::CreateCustomerRequest {
            customer: Some(customer("Wang Fang")),
            request_id: request_id.clone(),
        })
    };
    let first = app
        .client
        .create_customer(mk(&app))
        .await
        .unwrap()
        .into_inner();
    let second = app
        .client
        .create_customer(mk(&app))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        first.name, second.name,
        "a retried request returns the first result"
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM customers").await, 1);
    assert_eq!(app.outbox_count("CustomerCreatedEvent").await, 1);
    app.stop().await;
}

#[tokio::test]
async fn pii_is_masked_without_the_pii_scope() {
    let mut app = TestApp::spawn(Backend::Postgres).await;
    let created = app.create("Zhang Wei").await;
    let masked = app
        .client
        .get_customer(app.req_scopes(
            pb::GetCustomerRequest {
                name: created.name.clone(),
            },
            &["profile.read"],
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(masked.pii_masked);
    assert_eq!(masked.display_name, "Z***");
    assert_eq!(masked.email, "z***@example.com");
    assert_eq!(masked.phone, "***00");
    // Non-PII fields are intact.
    assert_eq!(masked.tags, created.tags);
    app.stop().await;
}

#[tokio::test]
async fn unknown_customers_are_not_found() {
    let mut app = TestApp::spawn(Backend::Postgres).await;
    let name = format!("customers/{}", uuid::Uuid::now_v7());
    let err = app
        .client
        .get_customer(app.req(pb::GetCustomerRequest { name: name.clone() }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains(&name));
    let err = app
        .client
        .batch_get_customers(app.req(pb::BatchGetCustomersRequest {
            names: vec![name.clone()],
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = app
        .client
        .record_purchase(app.req(pb::RecordPurchaseRequest {
            purchase: Some(purchase(&name, "o-1", 100)),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    app.stop().await;
}

#[tokio::test]
async fn identities_are_unique_per_namespace() {
    let mut app = TestApp::spawn(Backend::Postgres).await;
    let mut a = customer("Owner");
    a.identities = vec![identity("crm", "C-42")];
    let owner = app.create_with(a.clone()).await;
    let before = app.outbox_count("CustomerCreatedEvent").await;
    let err = app
        .client
        .create_customer(app.req(pb::CreateCustomerRequest {
            customer: Some(a),
            request_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    assert!(err.message().contains(&owner.name), "{err:?}");
    // The rolled-back create left neither a row nor an event.
    assert_eq!(app.count("SELECT COUNT(*) FROM customers").await, 1);
    assert_eq!(app.outbox_count("CustomerCreatedEvent").await, before);
    app.stop().await;
}
