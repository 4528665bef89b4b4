//! Every method needs a bearer token with its scope; health is open.

use retention_proto::profile as pb;
use retention_server::host::Service;
use retention_testkit::Backend;
use tonic::Code;

use crate::harness::*;

#[tokio::test]
async fn calls_without_a_valid_token_are_unauthenticated() {
    let mut app = TestApp::spawn(Backend::Sqlite).await;
    let name = format!("customers/{}", uuid::Uuid::now_v7());
    let err = app
        .client
        .get_customer(tonic::Request::new(pb::GetCustomerRequest {
            name: name.clone(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let forged = retention_testkit::with_token(
        pb::GetCustomerRequest { name: name.clone() },
        "eyJhbGciOiJIUzI1NiJ9.e30.x",
    );
    assert_eq!(
        app.client.get_customer(forged).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    let mut other = app.settings.clone();
    other.auth.jwt_secret = "another-secret-of-enough-length".into();
    let wrong_key = retention_testkit::with_token(
        pb::GetCustomerRequest { name },
        &retention_testkit::mint_token(&other, ALL_SCOPES),
    );
    assert_eq!(
        app.client.get_customer(wrong_key).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    app.stop().await;
}

#[tokio::test]
async fn each_method_needs_its_scope() {
    let mut app = TestApp::spawn(Backend::Sqlite).await;
    let c = app.create("Scoped").await;
    // Read scope cannot write.
    let err = app
        .client
        .create_customer(app.req_scopes(
            pb::CreateCustomerRequest {
                customer: Some(customer("x")),
                request_id: String::new(),
            },
            &["profile.read"],
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("profile.write"), "{err:?}");
    // Write scope cannot read.
    let err = app
        .client
        .get_customer(app.req_scopes(
            pb::GetCustomerRequest {
                name: c.name.clone(),
            },
            &["profile.write"],
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // Erase, merge and export need the admin scope.
    let err = app
        .client
        .erase_customer(app.req_scopes(
            pb::EraseCustomerRequest {
                name: c.name.clone(),
                request_id: String::new(),
            },
            &["profile.read", "profile.write", "pii.read"],
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("profile.admin"));
    // Permission is checked before existence (AIP-193).
    let err = app
        .client
        .get_customer(app.req_scopes(
            pb::GetCustomerRequest {
                name: format!("customers/{}", uuid::Uuid::now_v7()),
            },
            &["pii.read"],
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // Every method of the service is in the policy (deny-by-default would hide a gap).
    let policy = <retention_profile::Profile as Service>::scope_policy();
    assert_eq!(policy.methods().count(), 16);
    app.stop().await;
}
