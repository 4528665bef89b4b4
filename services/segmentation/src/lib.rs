//! The segmentation service: a feature store fed by profile and interactions
//! events, the value and churn models of DOMAIN §2-§6, user-defined segments with
//! materialised memberships, scoring runs and the portfolio report (DESIGN §1, §3).
//!
//! Layers, each using only those before it: `domain` (pure: features, models,
//! classifications, scoring, segments, consumed changes), `convert` (proto <->
//! domain), `store` (sea-orm), `events::publish` (the events it publishes),
//! `app` (use cases, outbox, scoring runs), `events::consume` (upstream events
//! into the app), `grpc` (tonic); this file wires them on the shared host.

pub mod app;
pub mod convert;
pub mod domain;
pub mod events;
pub mod grpc;
pub mod metrics;
pub mod store;

use std::time::Duration;

use retention_auth::ScopePolicy;
use retention_cache::{Cache, CacheConfig};
use retention_events::ConsumerOptions;
use retention_proto::segmentation::segmentation_service_server::SegmentationServiceServer;
use retention_server::dead_letters;
use retention_server::host::{HostError, Parts, Service, Wiring};
use sea_orm_migration::MigrationTrait;

use crate::domain::scoring::ScoringConfig;

/// The service as the host runs it (`retention_server::host`).
pub struct Segmentation;

/// Its migrations: the shared tables, then its own.
pub type Migrator = retention_server::host::Migrator<Segmentation>;

impl Service for Segmentation {
    const NAME: &'static str = "segmentation";
    const DEFAULT_PORT: u16 = 50053;
    const GRPC_SERVICE: &'static str = "retention.segmentation.v1.SegmentationService";
    const STREAM: &'static str = events::STREAM;

    fn scope_policy() -> ScopePolicy {
        let read = [
            "GetCustomerInsight",
            "ListCustomerInsights",
            "GetSegment",
            "ListSegments",
            "ListSegmentMembers",
            "GetScoringRun",
            "GetModelParameters",
            "GetPortfolioReport",
            "ProjectRetention",
        ];
        let write = ["CreateSegment", "UpdateSegment", "DeleteSegment"];
        // A full recompute loads the whole population: an operator's call.
        let admin = ["RunScoring", "GetEventBacklog"];
        ScopePolicy::new()
            .require_all(Self::GRPC_SERVICE, &read, &["segmentation.read"])
            .require_all(Self::GRPC_SERVICE, &write, &["segmentation.write"])
            .require_all(Self::GRPC_SERVICE, &admin, &["segmentation.admin"])
            .require_all(
                Self::GRPC_SERVICE,
                &dead_letters::METHODS,
                &["segmentation.admin"],
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
        let cache = Cache::connect(CacheConfig::from_settings(&parts.settings)).await;
        cache.report_metrics("segmentation");
        let runs = app::RunOptions::from_settings(&parts.settings.scoring);
        let (poll, run_lease) = (runs.poll, runs.run_lease);
        let app = app::SegmentationApp::new(
            parts.outbox.clone(),
            cache,
            ScoringConfig::from_settings(&parts.settings.scoring),
        )
        .with_runs(runs);
        // Only runs whose coordinator stopped renewing its lease: a run another
        // replica is doing right now is left alone.
        let interrupted = app.sweep_runs().await.map_err(HostError::service)?;
        if interrupted > 0 {
            tracing::warn!(
                runs = interrupted,
                "failed scoring runs whose replica stopped during the run"
            );
        }
        let handler = events::consume::UpstreamHandler::new(app.clone());
        // The handler applies a batch in one transaction: larger reads mean fewer
        // transactions per event under load (a quiet stream still gets single events).
        let consumer = |stream: &str| ConsumerOptions {
            batch: 256,
            ..parts.consumer(stream)
        };
        // Full scoring runs every `interval_minutes` (0: only on RunScoring), once
        // per interval for the deployment.
        let every = match parts.settings.scoring.interval_secs {
            0 => Duration::from_secs(parts.settings.scoring.interval_minutes * 60),
            secs => Duration::from_secs(secs),
        };
        let scheduler = app.clone();
        let worker = app.clone();
        let sweeper = app.clone();
        let max = parts.max_message_bytes();
        let svc = SegmentationServiceServer::new(grpc::SegmentationGrpc::new(
            app,
            parts.backlog.clone(),
            parts.dead_letter_admin(),
            parts.audit_admin(),
        ))
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
        Ok(Wiring::serve(tonic::service::Routes::new(svc))
            .consume(consumer(events::PROFILE_STREAM), handler.clone())
            .consume(consumer(events::INTERACTIONS_STREAM), handler)
            .every(every, move || {
                let app = scheduler.clone();
                // A run in progress (here or on another replica) or this slot's
                // run already started by another replica makes the tick a no-op.
                async move {
                    match app.start_scheduled_run(every).await {
                        Ok(Some(run)) => {
                            tracing::info!(run = %run.id, "scheduled scoring run started");
                        }
                        Ok(None) | Err(app::AppError::RunInProgress(_)) => {}
                        Err(e) => tracing::warn!(error = %e, "scheduled scoring run not started"),
                    }
                }
            })
            // Every replica scores pages of the running run.
            .every(poll, move || {
                let app = worker.clone();
                async move {
                    if let Err(e) = app.work_pages().await {
                        tracing::warn!(error = %e, "scoring pages not scored");
                    }
                }
            })
            .every(run_lease, move || {
                let app = sweeper.clone();
                async move {
                    match app.sweep_runs().await {
                        Ok(0) => {}
                        Ok(n) => {
                            tracing::warn!(runs = n, "failed scoring runs whose replica stopped")
                        }
                        Err(e) => tracing::warn!(error = %e, "scoring runs not swept"),
                    }
                }
            }))
    }
}
