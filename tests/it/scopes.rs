//! The scope table: every RPC the contract declares is listed in its service's
//! policy, and is refused without a token, refused to a token lacking any one of
//! its scopes, and let past the guard with exactly its scopes.

use retention_server::host::Service;
use std::collections::BTreeSet;
use std::time::Duration;

use retention_auth::{Decision, ScopePolicy};
use retention_events::EventBus;
use retention_testkit::{TestService, mint_token, with_token};
use tonic::Code;
use tonic::codegen::http::uri::PathAndQuery;

use crate::{Mode, four_services};

/// (service, method path) of every RPC in the compiled contract.
fn contract() -> Vec<(String, String)> {
    retention_proto::rpcs()
        .into_iter()
        .map(|r| (r.service, r.path))
        .collect()
}

/// What the guard answers to a call of `path` with an empty message; any status
/// past the guard (the empty message is usually invalid) comes back as it is.
async fn call(service: &TestService, path: &str, scopes: Option<&[&str]>) -> Code {
    let mut grpc = tonic::client::Grpc::new(service.channel.clone());
    grpc.ready().await.expect("channel ready");
    let mut req = match scopes {
        Some(s) => with_token((), &mint_token(&service.settings, s)),
        None => tonic::Request::new(()),
    };
    req.set_timeout(Duration::from_secs(10));
    let path = PathAndQuery::try_from(path.to_string()).expect("a method path");
    match grpc
        .unary::<(), (), _>(req, path, tonic_prost::ProstCodec::default())
        .await
    {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    }
}

#[tokio::test]
async fn every_method_refuses_a_token_lacking_any_of_its_scopes() {
    let services = four_services(&Mode::Embedded(EventBus::in_process_for_suite())).await;
    let policies: [ScopePolicy; 4] = [
        retention_profile::Profile::scope_policy(),
        retention_interactions::Interactions::scope_policy(),
        retention_segmentation::Segmentation::scope_policy(),
        retention_winback::Winback::scope_policy(),
    ];
    let every_scope: BTreeSet<&str> = policies
        .iter()
        .flat_map(|p| p.methods().flat_map(|(_, s)| s.iter().map(String::as_str)))
        .collect();
    let mut checked = Vec::new();
    for (service, path) in contract() {
        let i = policies
            .iter()
            .position(|p| p.services().contains(service.as_str()))
            .unwrap_or_else(|| panic!("{service} has no scope policy"));
        let Decision::Scopes(needed) = policies[i].required(&path) else {
            panic!("{path} is not in the scope table");
        };
        assert!(!needed.is_empty(), "{path} needs no scope");
        let target = &services[i];
        assert_eq!(
            call(target, &path, None).await,
            Code::Unauthenticated,
            "{path} without a token"
        );
        for missing in needed {
            let lacking: Vec<&str> = every_scope
                .iter()
                .copied()
                .filter(|s| *s != missing.as_str())
                .collect();
            assert_eq!(
                call(target, &path, Some(&lacking)).await,
                Code::PermissionDenied,
                "{path} with every scope but {missing}"
            );
        }
        let holding: Vec<&str> = needed.iter().map(String::as_str).collect();
        let code = call(target, &path, Some(&holding)).await;
        assert!(
            !matches!(code, Code::PermissionDenied | Code::Unauthenticated),
            "{path} with {holding:?} was refused: {code:?}"
        );
        checked.push(path);
    }
    // The table covers the whole contract, not just what one service lists.
    let listed: usize = policies.iter().map(|p| p.methods().count()).sum();
    assert_eq!(
        checked.len(),
        listed,
        "methods in the policies but not the contract"
    );
    for s in services {
        s.stop().await.unwrap();
    }
}
