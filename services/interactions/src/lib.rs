//! The interactions service: contact history, complaint handling with SLAs, and
//! satisfaction surveys (DESIGN §1; DOMAIN §6-§7).
//!
//! Layers, each using only those before it: `domain` (pure rules: complaint state
//! machine, SLA clock, summary, replay), `convert` (proto <-> domain), `store`
//! (sea-orm), `events::publish` (the events it publishes), `app` (use cases on the
//! outbox, SLA sweep), `events::consume` (profile and segmentation events into its
//! read models), `grpc` (tonic); this file wires them on the shared host.

pub mod app;
pub mod convert;
pub mod domain;
pub mod events;
pub mod grpc;
pub mod metrics;
pub mod store;

use std::time::Duration;

use retention_auth::ScopePolicy;
use retention_proto::interactions::interaction_service_server::InteractionServiceServer;
use retention_server::dead_letters;
use retention_server::host::{HostError, Parts, Service, Wiring};
use sea_orm_migration::MigrationTrait;

/// How often the SLA sweep looks for missed targets.
const SWEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The service as the host runs it (`retention_server::host`).
pub struct Interactions;

/// Its migrations: the shared tables, then its own.
pub type Migrator = retention_server::host::Migrator<Interactions>;

impl Service for Interactions {
    const NAME: &'static str = "interactions";
    const DEFAULT_PORT: u16 = 50052;
    const GRPC_SERVICE: &'static str = "retention.interactions.v1.InteractionService";
    const STREAM: &'static str = events::STREAM;

    fn scope_policy() -> ScopePolicy {
        let read = [
            "ListInteractions",
            "GetComplaint",
            "ListComplaints",
            "ListSlaPolicies",
            "GetBusinessCalendar",
            "ListBusinessCalendars",
            "GetSatisfactionSummary",
            "GetSlaReport",
        ];
        let write = [
            "LogInteraction",
            "OpenComplaint",
            "AcknowledgeComplaint",
            "AssignComplaint",
            "EscalateComplaint",
            "ResolveComplaint",
            "ReopenComplaint",
            "CloseComplaint",
            "PauseComplaint",
            "ResumeComplaint",
            "CreateSlaPolicy",
            "CreateBusinessCalendar",
            "UpdateBusinessCalendar",
            "RecordSurvey",
        ];
        let admin = ["BackfillEvents", "GetEventBacklog"];
        ScopePolicy::new()
            .require_all(Self::GRPC_SERVICE, &read, &["interactions.read"])
            .require_all(Self::GRPC_SERVICE, &write, &["interactions.write"])
            .require_all(Self::GRPC_SERVICE, &admin, &["interactions.admin"])
            .require_all(
                Self::GRPC_SERVICE,
                &dead_letters::METHODS,
                &["interactions.admin"],
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
        let app = app::InteractionsApp::new(parts.outbox.clone());
        let sweeper = app.clone();
        let max = parts.max_message_bytes();
        let svc = InteractionServiceServer::new(grpc::InteractionsService::new(
            app,
            parts.backlog.clone(),
            parts.dead_letter_admin(),
            parts.audit_admin(),
        ))
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
        Ok(Wiring::serve(tonic::service::Routes::new(svc))
            .consume(
                parts.consumer(events::PROFILE_STREAM),
                events::consume::ProfileEventsHandler::new(parts.db.clone()),
            )
            .consume(
                parts.consumer(events::SEGMENTATION_STREAM),
                events::consume::SegmentationEventsHandler::new(parts.db.clone()),
            )
            .every(SWEEP_INTERVAL, move || {
                let app = sweeper.clone();
                async move {
                    match app.sweep(domain::now()).await {
                        Ok(app::Swept {
                            breaches: 0,
                            warnings: 0,
                        }) => {}
                        Ok(s) => tracing::info!(
                            breaches = s.breaches,
                            warnings = s.warnings,
                            "sla sweep recorded breaches and warnings"
                        ),
                        Err(e) => {
                            tracing::warn!(error = %e, "SLA sweep failed; retrying next round")
                        }
                    }
                }
            }))
    }
}
