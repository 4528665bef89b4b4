//! The dead-letter admin methods of the consuming services (interactions,
//! segmentation, win-back): `ListDeadLetters`, `GetDeadLetter`,
//! `ReplayDeadLetter` and `DiscardDeadLetter` answered the same way in each,
//! on the service's [`DeadLetters`] handle (its own consumer group).
//!
//! Errors: an unknown id is NOT_FOUND, a bad page size or token or an empty id
//! INVALID_ARGUMENT with field violations, Redis or the database down
//! UNAVAILABLE, a dead letter whose envelope cannot be decoded (so cannot be
//! replayed) FAILED_PRECONDITION. Replays and discards are audited (a row of the
//! service's audit trail, see [`crate::audit`]).

use std::time::Duration;

use retention_db::audit::AuditEntry;
use retention_db::sea_orm::{DatabaseConnection, TransactionTrait};
use retention_errors::FieldViolations;
use retention_events::{DeadLetterView, DeadLetters, EventsError};
use retention_proto::common::{DeadLetter, ListDeadLettersResponse};
use tonic::{Request, Response, Status};

use crate::paging::{decode_token, encode_token, page_size, split_page};

const TOKEN_KIND: &str = "dead_letters";

/// The dead-letter admin methods every consuming service serves (its admin scope).
pub const METHODS: [&str; 4] = [
    "ListDeadLetters",
    "GetDeadLetter",
    "ReplayDeadLetter",
    "DiscardDeadLetter",
];

/// A ListDeadLetters request of any consuming service: the page it asks for.
pub trait PageRequest {
    fn page(&self) -> (i32, &str);
}

/// A Get/Replay/DiscardDeadLetter request of any consuming service: the id.
pub trait IdRequest {
    fn id(&self) -> &str;
}

/// The consuming services' requests carry the same fields.
macro_rules! consumer_messages {
    ($($pb:ident),*) => {$(
        impl PageRequest for retention_proto::$pb::ListDeadLettersRequest {
            fn page(&self) -> (i32, &str) {
                (self.page_size, &self.page_token)
            }
        }
        consumer_messages!(@id $pb: GetDeadLetterRequest, ReplayDeadLetterRequest, DiscardDeadLetterRequest);
    )*};
    (@id $pb:ident: $($req:ident),*) => {$(
        impl IdRequest for retention_proto::$pb::$req {
            fn id(&self) -> &str {
                &self.id
            }
        }
    )*};
}

consumer_messages!(interactions, segmentation, winback);
const MAX_ID: usize = 512;

/// One service's dead letters behind its gRPC admin methods (cheap to clone).
#[derive(Clone)]
pub struct DeadLetterAdmin {
    letters: DeadLetters,
    /// Where replays and discards are recorded (the service's audit trail).
    db: DatabaseConnection,
}

impl DeadLetterAdmin {
    pub fn new(letters: DeadLetters, db: DatabaseConnection) -> Self {
        DeadLetterAdmin { letters, db }
    }

    /// The consumer group whose dead letters these are.
    pub fn group(&self) -> &str {
        self.letters.group()
    }

    /// `ListDeadLetters`: a page, oldest first, and the next page's token.
    pub async fn list(
        &self,
        size: i32,
        page_token: &str,
    ) -> Result<ListDeadLettersResponse, Status> {
        let mut v = FieldViolations::new();
        let limit = page_size(size, &mut v);
        let after = decode_token(page_token, TOKEN_KIND, self.group(), &mut v);
        v.into_result()?;
        let rows = match self
            .letters
            .list(limit as usize + 1, after.as_deref())
            .await
        {
            Ok(rows) => rows,
            Err(EventsError::InvalidEntry { .. }) => {
                let mut v = FieldViolations::new();
                v.add("page_token", "is not a valid page token");
                return Err(v.into_status());
            }
            Err(e) => return Err(unavailable(&e)),
        };
        let (rows, next) = split_page(rows, limit, |last| last.id.clone());
        Ok(ListDeadLettersResponse {
            dead_letters: rows.into_iter().map(|r| to_proto(r, Vec::new())).collect(),
            next_page_token: next
                .map(|last| encode_token(TOKEN_KIND, self.group(), &last))
                .unwrap_or_default(),
        })
    }

    /// `GetDeadLetter`: the dead letter with its envelope.
    pub async fn get(&self, id: &str) -> Result<DeadLetter, Status> {
        check_id(id)?;
        match self.letters.get(id).await {
            Ok(Some(d)) => Ok(to_proto(d.view, d.envelope)),
            Ok(None) => Err(not_found(id)),
            Err(e) => Err(unavailable(&e)),
        }
    }

    /// `ReplayDeadLetter` recorded as `audit`: the event back to this group
    /// alone, the dead letter removed; the dead letter as it was.
    pub async fn replay(&self, audit: AuditEntry, id: &str) -> Result<DeadLetter, Status> {
        let letter = self.get(id).await?;
        self.audited(audit, async || match self.letters.replay(id).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(not_found(id)),
            Err(e @ (EventsError::InvalidEntry { .. } | EventsError::Decode(_))) => {
                Err(retention_errors::failed_precondition(
                    "DEAD_LETTER_NOT_REPLAYABLE",
                    id,
                    &format!("{e}; discard it instead"),
                ))
            }
            Err(e) => Err(unavailable(&e)),
        })
        .await?;
        Ok(DeadLetter {
            envelope: Vec::new(),
            ..letter
        })
    }

    /// `DiscardDeadLetter` recorded as `audit`: the dead letter removed for
    /// good; the dead letter as it was.
    pub async fn discard(&self, audit: AuditEntry, id: &str) -> Result<DeadLetter, Status> {
        let letter = self.get(id).await?;
        self.audited(audit, async || match self.letters.discard(id).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(not_found(id)),
            Err(e) => Err(unavailable(&e)),
        })
        .await?;
        Ok(DeadLetter {
            envelope: Vec::new(),
            ..letter
        })
    }

    /// Runs `op` (on the bus, outside the database) inside a transaction holding
    /// its audit record, committed only when `op` succeeded: a failed operation
    /// leaves no record, and one that succeeded is answered only once its record
    /// committed (the commit itself is the one step that can still fail after it).
    async fn audited(
        &self,
        audit: AuditEntry,
        op: impl AsyncFnOnce() -> Result<(), Status>,
    ) -> Result<(), Status> {
        let txn = self
            .db
            .begin()
            .await
            .map_err(|e| crate::audit::unavailable(&e))?;
        retention_db::audit::append(&txn, &audit)
            .await
            .map_err(|e| crate::audit::unavailable(&e))?;
        op().await?;
        txn.commit()
            .await
            .map_err(|e| crate::audit::unavailable(&e))?;
        crate::audit::log(&audit);
        Ok(())
    }
}

/// The four methods as a service's gRPC handlers call them: the request in,
/// the response out, the caller audited on replay and discard.
impl DeadLetterAdmin {
    pub async fn serve_list<R: PageRequest>(
        &self,
        req: Request<R>,
    ) -> Result<Response<ListDeadLettersResponse>, Status> {
        let (size, token) = req.get_ref().page();
        self.list(size, token).await.map(Response::new)
    }

    pub async fn serve_get<R: IdRequest>(
        &self,
        req: Request<R>,
    ) -> Result<Response<DeadLetter>, Status> {
        self.get(req.get_ref().id()).await.map(Response::new)
    }

    pub async fn serve_replay<R: IdRequest>(
        &self,
        req: Request<R>,
    ) -> Result<Response<DeadLetter>, Status> {
        let id = req.get_ref().id();
        let audit = crate::audit::entry(&req, "events.dead_letter.replay", [self.group(), id]);
        self.replay(audit, id).await.map(Response::new)
    }

    pub async fn serve_discard<R: IdRequest>(
        &self,
        req: Request<R>,
    ) -> Result<Response<DeadLetter>, Status> {
        let id = req.get_ref().id();
        let audit = crate::audit::entry(&req, "events.dead_letter.discard", [self.group(), id]);
        self.discard(audit, id).await.map(Response::new)
    }
}

fn check_id(id: &str) -> Result<(), Status> {
    let mut v = FieldViolations::new();
    if id.is_empty() {
        v.add("id", "is required");
    } else {
        v.check(
            id.len() <= MAX_ID,
            "id",
            format!("must be at most {MAX_ID} characters"),
        );
    }
    v.into_result()
}

fn not_found(id: &str) -> Status {
    retention_errors::not_found("dead letter", id)
}

fn unavailable(e: &EventsError) -> Status {
    tracing::warn!(error = %e, "dead letters not reachable");
    retention_errors::unavailable("the dead letters", Duration::from_secs(1))
}

/// The proto of a dead letter (`envelope` only for `GetDeadLetter`).
pub fn to_proto(v: DeadLetterView, envelope: Vec<u8>) -> DeadLetter {
    DeadLetter {
        id: v.id,
        stream: v.stream,
        consumer_group: v.group,
        event_id: v.event_id,
        event_type: v.event_type,
        customer_id: v.customer_id.unwrap_or_default(),
        reason: v.reason,
        deliveries: i64::try_from(v.deliveries).unwrap_or(i64::MAX),
        bury_time: Some(retention_errors::time::timestamp(v.buried_at)),
        envelope,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_required_and_bounded() {
        assert!(check_id("retention.profile.events/1-0").is_ok());
        for bad in [String::new(), "x".repeat(MAX_ID + 1)] {
            let s = check_id(&bad).unwrap_err();
            assert_eq!(s.code(), tonic::Code::InvalidArgument);
            let fields: Vec<String> = retention_errors::field_violations(&s)
                .into_iter()
                .map(|(f, _)| f)
                .collect();
            assert_eq!(fields, ["id"]);
        }
    }

    #[test]
    fn a_view_maps_to_the_proto() {
        let at = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let p = to_proto(
            DeadLetterView {
                id: "s/1-0".into(),
                stream: "s".into(),
                group: "g".into(),
                event_id: "e".into(),
                event_type: "t".into(),
                customer_id: None,
                reason: "r".into(),
                deliveries: 3,
                buried_at: at,
            },
            vec![1],
        );
        assert_eq!(p.consumer_group, "g");
        assert_eq!(p.customer_id, "");
        assert_eq!(p.deliveries, 3);
        assert_eq!(p.bury_time.unwrap().seconds, 1_700_000_000);
        assert_eq!(p.envelope, [1]);
    }
}
