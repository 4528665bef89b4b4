//! `retention-cli dead-letters list|show|replay|discard --service <name>`: the
//! events a consuming service's consumer group gave up on (`ListDeadLetters`,
//! `GetDeadLetter`, `ReplayDeadLetter`, `DiscardDeadLetter`; the service's
//! admin scope). Replay sends the event back to that service's group alone.

use retention_proto::common::{DeadLetter, ListDeadLettersResponse};
use retention_proto::interactions as ipb;
use retention_proto::segmentation as spb;
use retention_proto::winback as wpb;

use super::Clients;
use super::show::table;

/// The services that consume events, so have dead letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consumer {
    Interactions,
    Segmentation,
    Winback,
}

impl Consumer {
    /// The names `--service` takes.
    pub const NAMES: [&'static str; 3] = ["interactions", "segmentation", "winback"];

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "interactions" => Some(Consumer::Interactions),
            "segmentation" => Some(Consumer::Segmentation),
            "winback" => Some(Consumer::Winback),
            _ => None,
        }
    }
}

/// One page of the service's dead letters (`page_token` empty: the first).
pub async fn page(
    c: &Clients,
    service: Consumer,
    page_size: i32,
    page_token: &str,
) -> anyhow::Result<ListDeadLettersResponse> {
    let page_token = page_token.to_string();
    Ok(match service {
        Consumer::Interactions => c
            .interactions
            .clone()
            .list_dead_letters(c.req(ipb::ListDeadLettersRequest {
                page_size,
                page_token,
            }))
            .await?
            .into_inner(),
        Consumer::Segmentation => c
            .segmentation
            .clone()
            .list_dead_letters(c.req(spb::ListDeadLettersRequest {
                page_size,
                page_token,
            }))
            .await?
            .into_inner(),
        Consumer::Winback => c
            .winback
            .clone()
            .list_dead_letters(c.req(wpb::ListDeadLettersRequest {
                page_size,
                page_token,
            }))
            .await?
            .into_inner(),
    })
}

/// Every dead letter of the service, oldest first (page by page).
pub async fn list(c: &Clients, service: Consumer) -> anyhow::Result<Vec<DeadLetter>> {
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let p = page(c, service, 500, &token).await?;
        all.extend(p.dead_letters);
        if p.next_page_token.is_empty() {
            return Ok(all);
        }
        token = p.next_page_token;
    }
}

/// One dead letter with its envelope.
pub async fn show(c: &Clients, service: Consumer, id: &str) -> anyhow::Result<DeadLetter> {
    let id = id.to_string();
    Ok(match service {
        Consumer::Interactions => c
            .interactions
            .clone()
            .get_dead_letter(c.req(ipb::GetDeadLetterRequest { id }))
            .await?
            .into_inner(),
        Consumer::Segmentation => c
            .segmentation
            .clone()
            .get_dead_letter(c.req(spb::GetDeadLetterRequest { id }))
            .await?
            .into_inner(),
        Consumer::Winback => c
            .winback
            .clone()
            .get_dead_letter(c.req(wpb::GetDeadLetterRequest { id }))
            .await?
            .into_inner(),
    })
}

/// Replays a dead letter to the service's group alone; the dead letter as it was.
pub async fn replay(c: &Clients, service: Consumer, id: &str) -> anyhow::Result<DeadLetter> {
    let id = id.to_string();
    Ok(match service {
        Consumer::Interactions => c
            .interactions
            .clone()
            .replay_dead_letter(c.req(ipb::ReplayDeadLetterRequest { id }))
            .await?
            .into_inner(),
        Consumer::Segmentation => c
            .segmentation
            .clone()
            .replay_dead_letter(c.req(spb::ReplayDeadLetterRequest { id }))
            .await?
            .into_inner(),
        Consumer::Winback => c
            .winback
            .clone()
            .replay_dead_letter(c.req(wpb::ReplayDeadLetterRequest { id }))
            .await?
            .into_inner(),
    })
}

/// Removes a dead letter for good; the dead letter as it was.
pub async fn discard(c: &Clients, service: Consumer, id: &str) -> anyhow::Result<DeadLetter> {
    let id = id.to_string();
    Ok(match service {
        Consumer::Interactions => c
            .interactions
            .clone()
            .discard_dead_letter(c.req(ipb::DiscardDeadLetterRequest { id }))
            .await?
            .into_inner(),
        Consumer::Segmentation => c
            .segmentation
            .clone()
            .discard_dead_letter(c.req(spb::DiscardDeadLetterRequest { id }))
            .await?
            .into_inner(),
        Consumer::Winback => c
            .winback
            .clone()
            .discard_dead_letter(c.req(wpb::DiscardDeadLetterRequest { id }))
            .await?
            .into_inner(),
    })
}

fn buried(d: &DeadLetter) -> String {
    d.bury_time
        .as_ref()
        .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// The dead letters as a table, oldest first.
pub fn report(letters: &[DeadLetter]) -> String {
    if letters.is_empty() {
        return "no dead letters\n".to_string();
    }
    let rows: Vec<Vec<String>> = letters
        .iter()
        .map(|d| {
            vec![
                d.id.clone(),
                d.event_type
                    .rsplit('.')
                    .next()
                    .unwrap_or_default()
                    .to_string(),
                d.customer_id.clone(),
                d.deliveries.to_string(),
                buried(d),
                d.reason.clone(),
            ]
        })
        .collect();
    table(
        &["id", "event", "customer", "deliveries", "buried", "reason"],
        &rows,
    )
}

/// One dead letter, field by field.
pub fn detail(d: &DeadLetter) -> String {
    let rows = vec![
        vec!["id".to_string(), d.id.clone()],
        vec!["stream".to_string(), d.stream.clone()],
        vec!["consumer group".to_string(), d.consumer_group.clone()],
        vec!["event id".to_string(), d.event_id.clone()],
        vec!["event type".to_string(), d.event_type.clone()],
        vec!["customer".to_string(), d.customer_id.clone()],
        vec!["deliveries".to_string(), d.deliveries.to_string()],
        vec!["buried".to_string(), buried(d)],
        vec!["reason".to_string(), d.reason.clone()],
        vec![
            "envelope".to_string(),
            format!("{} bytes", d.envelope.len()),
        ],
    ];
    table(&["field", "value"], &rows)
}
