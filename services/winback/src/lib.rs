//! The win-back service (DESIGN §1, §3; DOMAIN §8-§9): why customers left, campaigns
//! that win them back or keep them, with a holdout control group, and measured
//! outcomes per campaign and per strategy.
//!
//! Layers, each using only those before it: `domain` (pure: churn taxonomy,
//! campaign state machine, targeting, attribution, statistics, playbook),
//! `convert` (proto <-> domain), `store` (sea-orm), `clients` (segmentation, with
//! deadlines and trace context), `events::publish` (the events it publishes),
//! `app` (use cases on the outbox), `events::consume` (upstream events consumed),
//! `grpc` (tonic); this file wires them on the shared host.

pub mod app;
pub mod clients;
pub mod convert;
pub mod domain;
pub mod events;
pub mod grpc;
pub mod metrics;
pub mod store;

use std::time::Duration;

use retention_auth::ScopePolicy;
use retention_proto::winback::winback_service_server::WinbackServiceServer;
use retention_server::dead_letters;
use retention_server::host::{HostError, Parts, Service, Wiring};
use sea_orm_migration::MigrationTrait;

use crate::events::consume::{
    InteractionsEventsHandler, ProfileEventsHandler, SegmentationEventsHandler,
};

/// The service as the host runs it (`retention_server::host`).
pub struct Winback;

/// Its migrations: the shared tables, then its own.
pub type Migrator = retention_server::host::Migrator<Winback>;

impl Service for Winback {
    const NAME: &'static str = "winback";
    const DEFAULT_PORT: u16 = 50054;
    const GRPC_SERVICE: &'static str = "retention.winback.v1.WinbackService";
    const STREAM: &'static str = events::STREAM;

    fn scope_policy() -> ScopePolicy {
        let read = [
            "GetChurnRecord",
            "ListChurnRecords",
            "ClassifyChurn",
            "GetCampaign",
            "ListCampaigns",
            "ListCampaignTargets",
            "GetCampaignResults",
            "CompareStrategies",
            "RecommendRetentionActions",
        ];
        let write = ["RecordChurn", "CreateCampaign", "RecordContactOutcome"];
        // Launching spends money and contacts customers; pausing, completing and
        // cancelling change what a running campaign does: an administrator's calls.
        let admin = [
            "LaunchCampaign",
            "PauseCampaign",
            "CompleteCampaign",
            "CancelCampaign",
            "GetEventBacklog",
        ];
        ScopePolicy::new()
            .require_all(Self::GRPC_SERVICE, &read, &["winback.read"])
            .require_all(Self::GRPC_SERVICE, &write, &["winback.write"])
            .require_all(Self::GRPC_SERVICE, &admin, &["winback.admin"])
            .require_all(
                Self::GRPC_SERVICE,
                &dead_letters::METHODS,
                &["winback.admin"],
            )
            .require_all(
                Self::GRPC_SERVICE,
                &[retention_server::audit::METHOD],
                &[retention_server::audit::SCOPE],
            )
    }

    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        store::migrations::own()
    }

    async fn build(parts: Parts) -> Result<Wiring, HostError> {
        let segmentation = clients::SegmentationClient::from_settings(&parts.settings)
            .map_err(HostError::service)?;
        let app = app::WinbackApp::new(parts.outbox.clone(), segmentation, parts.settings.consent);
        let scheduler = app.clone();
        let max = parts.max_message_bytes();
        let svc = WinbackServiceServer::new(grpc::WinbackGrpc::new(
            app.clone(),
            parts.backlog.clone(),
            parts.dead_letter_admin(),
            parts.audit_admin(),
        ))
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
        // Launches scheduled campaigns when due (0: never).
        let schedule_check = Duration::from_secs(parts.settings.winback.schedule_check_secs);
        Ok(Wiring::serve(tonic::service::Routes::new(svc))
            .consume(
                parts.consumer(events::PROFILE_STREAM),
                ProfileEventsHandler::new(app.clone()),
            )
            .consume(
                parts.consumer(events::INTERACTIONS_STREAM),
                InteractionsEventsHandler::new(app.clone()),
            )
            .consume(
                parts.consumer(events::SEGMENTATION_STREAM),
                SegmentationEventsHandler::new(app),
            )
            .every(schedule_check, move || {
                let app = scheduler.clone();
                async move {
                    match app.launch_due(retention_domain::now()).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(campaigns = n, "scheduled campaigns launched"),
                        Err(e) => tracing::warn!(error = %e, "scheduled launches not checked"),
                    }
                }
            }))
    }
}
