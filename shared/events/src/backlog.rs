//! The operator's view of the pipeline: what waits in a service's outbox and how
//! far behind each consumer group of its stream is (`GetEventBacklog`).

use std::time::Duration;

use retention_proto::common::{ConsumerGroupLag, EventBacklog};
use sea_orm::DatabaseConnection;

use crate::publisher::GroupLag;
use crate::relay::RelayStatus;
use crate::{EventBus, EventsError, outbox};

/// Reads the backlog of one service: its database's outbox and its stream's groups.
#[derive(Clone)]
pub struct BacklogProbe {
    db: DatabaseConnection,
    bus: EventBus,
    stream: String,
    groups: Vec<String>,
    bound: u64,
    relay: RelayStatus,
}

impl BacklogProbe {
    /// The backlog of `stream`, published from `db`'s outbox through `bus` by
    /// the relay whose status is `relay`.
    pub fn new(
        db: DatabaseConnection,
        bus: &EventBus,
        stream: &str,
        events: &retention_config::EventSettings,
        relay: RelayStatus,
    ) -> Self {
        BacklogProbe {
            db,
            bus: bus.clone(),
            stream: stream.to_string(),
            groups: events.groups_of(stream),
            bound: events.stream_max_len,
            relay,
        }
    }

    /// The backlog now; UNAVAILABLE when the database or Redis does not answer.
    pub async fn report(&self) -> Result<EventBacklog, tonic::Status> {
        self.read().await.map_err(|e| {
            tracing::warn!(error = %e, "event backlog not readable");
            retention_errors::unavailable("the event backlog", Duration::from_secs(1))
        })
    }

    /// The backlog and, per consumer group, its entries delivered and not yet
    /// acknowledged (for the metrics; the gRPC report has the lag only).
    pub async fn sample(&self) -> Result<(EventBacklog, Vec<(String, u64)>), EventsError> {
        let (report, lags) = self.read_with_lags().await?;
        Ok((
            report,
            lags.into_iter().map(|l| (l.group, l.pending)).collect(),
        ))
    }

    async fn read(&self) -> Result<EventBacklog, EventsError> {
        Ok(self.read_with_lags().await?.0)
    }

    async fn read_with_lags(&self) -> Result<(EventBacklog, Vec<GroupLag>), EventsError> {
        let backlog = outbox::backlog(&self.db).await?;
        let mut lags = self.bus.group_lags(&self.stream, &self.groups).await?;
        lags.sort_by(|a, b| b.lag.cmp(&a.lag).then_with(|| a.group.cmp(&b.group)));
        let bound = match &self.bus {
            // The in-process bus never holds more than its own cap.
            EventBus::InProcess(bus) => bus.max_len() as u64,
            EventBus::Redis { .. } => self.bound,
        };
        let held = self.relay.held();
        let oldest = backlog.oldest_age;
        let report = EventBacklog {
            stream: self.stream.clone(),
            outbox_rows: i64::try_from(backlog.rows).unwrap_or(i64::MAX),
            outbox_oldest_age: Some(duration(oldest)),
            groups: lags
                .iter()
                .map(|l| ConsumerGroupLag {
                    group: l.group.clone(),
                    lag: i64::try_from(l.lag).unwrap_or(i64::MAX),
                })
                .collect(),
            bound: i64::try_from(bound).unwrap_or(i64::MAX),
            held_back: held.is_some(),
            held_for: held.map(|(_, d)| duration(d)),
        };
        Ok((report, lags))
    }
}

fn duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}
