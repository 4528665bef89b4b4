//! The customer profile service: the system of record for customers, their contact
//! permissions, purchases and referrals (DESIGN §1).
//!
//! Layers, each importing only those before it: `domain` (pure rules),
//! `convert` (proto <-> domain), `store` (sea-orm entities, migrations, queries,
//! PII sealing), `events` (what it publishes), `app` (use cases: one transaction
//! per change, outbox events, cache invalidation), `grpc` (tonic service, request
//! validation, PII masking). It consumes no events.

pub mod app;
pub mod convert;
pub mod domain;
pub mod events;
pub mod grpc;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;

use retention_auth::ScopePolicy;
use retention_cache::{Cache, CacheConfig};
use retention_config::Settings;
use retention_proto::profile::customer_profile_service_server::CustomerProfileServiceServer;
use retention_server::host::{HostError, Parts, Service, Wiring};
use sea_orm_migration::MigrationTrait;

/// The service as the host runs it (`retention_server::host`).
pub struct Profile;

/// Its migrations: the shared tables, then its own.
pub type Migrator = retention_server::host::Migrator<Profile>;

impl Service for Profile {
    const NAME: &'static str = "profile";
    const DEFAULT_PORT: u16 = 50051;
    const GRPC_SERVICE: &'static str = "retention.profile.v1.CustomerProfileService";
    const STREAM: &'static str = events::STREAM;

    /// Every method and the scopes it needs (deny by default for anything unlisted).
    fn scope_policy() -> ScopePolicy {
        let read = [
            "GetCustomer",
            "BatchGetCustomers",
            "ListCustomers",
            "ListPurchases",
        ];
        let write = [
            "CreateCustomer",
            "UpdateCustomer",
            "UpdateConsent",
            "RecordPurchase",
            "RecordPurchases",
            "RecordReferral",
        ];
        let admin = [
            "MergeCustomers",
            "EraseCustomer",
            "ExportCustomerData",
            "BackfillEvents",
            "GetEventBacklog",
        ];
        ScopePolicy::new()
            .require_all(Self::GRPC_SERVICE, &read, &["profile.read"])
            .require_all(Self::GRPC_SERVICE, &write, &["profile.write"])
            .require_all(Self::GRPC_SERVICE, &admin, &["profile.admin"])
            .require_all(
                Self::GRPC_SERVICE,
                &[retention_server::audit::METHOD],
                &[retention_server::audit::SCOPE],
            )
    }

    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        store::migrations::own()
    }

    /// Keys first: a service that could not read its PII must not start.
    fn preflight(settings: &Settings) -> Result<(), HostError> {
        pii_cipher(settings).map(drop)
    }

    async fn build(parts: Parts) -> Result<Wiring, HostError> {
        let pii = Arc::new(pii_cipher(&parts.settings)?);
        let cache = Cache::connect(CacheConfig::from_settings(&parts.settings)).await;
        cache.report_metrics("profile");
        let app = app::ProfileApp::new(parts.outbox.clone(), cache, pii);
        let sweeper = app.clone();
        let max = parts.max_message_bytes();
        let svc = CustomerProfileServiceServer::new(grpc::ProfileService::new(
            app,
            parts.backlog.clone(),
            parts.audit_admin(),
        ))
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
        Ok(
            Wiring::serve(tonic::service::Routes::new(svc)).once(async move {
                match sweeper.reseal_pii().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(rows = n, "PII sealed under the current key"),
                    Err(e) => {
                        tracing::warn!(error = %e, "PII reseal sweep stopped; it runs again at the next start")
                    }
                }
            }),
        )
    }

    /// Embedded/dev mode only: a token and a ready-to-paste call, so a new user can
    /// try the service at once.
    fn dev_banner(settings: &Settings, addr: SocketAddr) {
        let token = retention_auth::TokenMinter::hs256(
            settings.auth.jwt_secret.as_bytes(),
            &settings.auth.issuer,
            &settings.auth.audience,
        )
        .mint(
            "dev-user",
            &["profile.read", "profile.write", "profile.admin", "pii.read"],
            std::time::Duration::from_secs(12 * 3600),
        );
        println!(
            "\nretention-profile listening on {addr} (embedded mode: {}; development token below, valid 12 h)\n\n\
             Try it (grpcurl):\n  grpcurl -plaintext -H 'authorization: Bearer {token}' \\\n    \
             -d '{{\"customer\":{{\"kind\":\"CUSTOMER_KIND_INDIVIDUAL\",\"display_name\":\"Li Lei\",\"email\":\"li.lei@example.com\"}}}}' \\\n    \
             {addr} retention.profile.v1.CustomerProfileService/CreateCustomer\n\n\
             or (buf curl, via npx):\n  npx buf curl --protocol grpc --http2-prior-knowledge -H 'authorization: Bearer {token}' \\\n    \
             -d '{{\"page_size\":10}}' http://{addr}/retention.profile.v1.CustomerProfileService/ListCustomers\n",
            settings.database.url
        );
    }
}

fn pii_cipher(settings: &Settings) -> Result<store::PiiCipher, HostError> {
    store::PiiCipher::from_settings(&settings.pii, settings.auth.allow_dev_secret)
        .map_err(HostError::service)
}
