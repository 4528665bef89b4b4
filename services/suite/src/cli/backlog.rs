//! `retention-cli backlog`: what waits between each service and its consumers
//! (`GetEventBacklog` on the four services), so an operator sees at once which
//! consumer group holds which producer back.

use retention_proto::common::EventBacklog;
use retention_proto::interactions as ipb;
use retention_proto::profile as ppb;
use retention_proto::segmentation as spb;
use retention_proto::winback as wpb;

use super::Clients;
use super::show::table;

/// Each service's backlog, in the order profile, interactions, segmentation, win-back.
pub async fn backlogs(c: &Clients) -> anyhow::Result<Vec<(&'static str, EventBacklog)>> {
    Ok(vec![
        (
            "profile",
            c.profile
                .clone()
                .get_event_backlog(c.req(ppb::GetEventBacklogRequest {}))
                .await?
                .into_inner(),
        ),
        (
            "interactions",
            c.interactions
                .clone()
                .get_event_backlog(c.req(ipb::GetEventBacklogRequest {}))
                .await?
                .into_inner(),
        ),
        (
            "segmentation",
            c.segmentation
                .clone()
                .get_event_backlog(c.req(spb::GetEventBacklogRequest {}))
                .await?
                .into_inner(),
        ),
        (
            "winback",
            c.winback
                .clone()
                .get_event_backlog(c.req(wpb::GetEventBacklogRequest {}))
                .await?
                .into_inner(),
        ),
    ])
}

/// Waits (up to `limit`) until no event waits anywhere: every outbox published
/// and every consumer group caught up. `false` when the token may not read the
/// backlog (it needs each service's admin scope), a service predates it, or the
/// pipeline stayed busy.
pub async fn wait_quiet(c: &Clients, limit: std::time::Duration) -> anyhow::Result<bool> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let all = match backlogs(c).await {
            Ok(all) => all,
            Err(e)
                if e.downcast_ref::<tonic::Status>().is_some_and(|s| {
                    matches!(
                        s.code(),
                        tonic::Code::PermissionDenied | tonic::Code::Unimplemented
                    )
                }) =>
            {
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        let quiet = all
            .iter()
            .all(|(_, b)| b.outbox_rows == 0 && b.groups.iter().all(|g| g.lag == 0));
        if quiet {
            return Ok(true);
        }
        if std::time::Instant::now() > deadline {
            return Ok(false);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// One row per service: its outbox, then each consumer group's lag.
pub fn report(backlogs: &[(&str, EventBacklog)]) -> String {
    let rows: Vec<Vec<String>> = backlogs
        .iter()
        .map(|(service, b)| {
            let age = b.outbox_oldest_age.as_ref().map_or(0, |d| d.seconds);
            let groups = if b.groups.is_empty() {
                "(none)".to_string()
            } else {
                b.groups
                    .iter()
                    .map(|g| format!("{} {}", g.group, g.lag))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            vec![
                service.to_string(),
                b.outbox_rows.to_string(),
                format!("{age} s"),
                match (&b.held_back, &b.held_for) {
                    (true, Some(d)) => format!("yes, {} s", d.seconds),
                    (true, None) => "yes".to_string(),
                    (false, _) => "no".to_string(),
                },
                b.bound.to_string(),
                groups,
            ]
        })
        .collect();
    table(
        &[
            "service",
            "outbox rows",
            "oldest",
            "held back",
            "bound",
            "groups (unacknowledged entries)",
        ],
        &rows,
    )
}
