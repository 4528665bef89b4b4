//! Waiting on the customer: a paused resolution clock that does not breach, is
//! resumed through the API or by the customer's answer, and keeps each wait on the
//! complaint's holds; and the next-response clock that each customer message
//! starts.

use chrono::{DateTime, TimeZone, Utc};
use retention_interactions::app::{AppError, AppResult};
use retention_interactions::domain::{Action, Channel, ComplaintState, Direction, Interaction};
use retention_proto::interactions as pb;
use retention_testkit::{Backend, on_both_backends};
use tonic::Code;

use crate::calendars::{create, office_hours, parcel_late};
use crate::harness::*;

/// A call of the replica, again while SQLite refuses it: the replica is a second
/// connection beside the service's own, and a write of the service (its outbox
/// relay) between the replica's read and write fails the replica's transaction
/// (SQLITE_BUSY_SNAPSHOT), as the sweep already retries.
pub(crate) async fn retried<T, Fut>(mut call: impl FnMut() -> Fut) -> T
where
    Fut: std::future::Future<Output = AppResult<T>>,
{
    for _ in 0..50 {
        match call().await {
            Err(AppError::Db(e)) if e.to_string().contains("database is locked") => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            result => return result.expect("replica call"),
        }
    }
    panic!("database stayed locked")
}

fn get(name: &str) -> pb::GetComplaintRequest {
    pb::GetComplaintRequest { name: name.into() }
}

fn pause(name: &str) -> pb::PauseComplaintRequest {
    pb::PauseComplaintRequest {
        name: name.into(),
        etag: String::new(),
    }
}

fn resume(name: &str) -> pb::ResumeComplaintRequest {
    pb::ResumeComplaintRequest {
        name: name.into(),
        etag: String::new(),
    }
}

fn answer(customer: &str, complaint: &str, direction: pb::Direction) -> pb::LogInteractionRequest {
    pb::LogInteractionRequest {
        interaction: Some(pb::Interaction {
            customer: customer.into(),
            channel: pb::Channel::Email as i32,
            direction: direction as i32,
            summary: "Sent the order number".into(),
            complaint: complaint.into(),
            ..Default::default()
        }),
        request_id: String::new(),
    }
}

fn ts(t: DateTime<Utc>) -> i64 {
    t.timestamp()
}

/// In the future, so the service's own sweep (on the real clock) leaves the
/// complaints to the sweeps the test runs. Berlin office hours (Mon-Fri
/// 09:00-17:00, CET = UTC+1); targets 7 h to the first
/// response and 8 h to resolution. Opened Friday 2036-12-05 09:00: the resolution
/// is due Friday 17:00. Paused Friday 16:00 with one working hour left; the sweep
/// on Monday 09:30, past the original due time, records nothing; resumed Monday
/// 10:00, the resolution is due one working hour later, Monday 11:00. The original
/// due time has moved by exactly the working time that passed while paused (Friday
/// 16:00-17:00 and Monday 09:00-10:00: two hours).
async fn paused_over_the_weekend(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let calendar = create(&mut app, office_hours("Berlin office")).await;
    app.client
        .create_sla_policy(app.req(pb::CreateSlaPolicyRequest {
            policy: Some(pb::SlaPolicy {
                priority: pb::Priority::Normal as i32,
                customer_tier: pb::CustomerTier::Ordinary as i32,
                first_response_minutes: 7 * 60,
                resolution_minutes: 8 * 60,
                calendar: calendar.name.clone(),
                ..Default::default()
            }),
        }))
        .await
        .unwrap();
    let berlin = |d: u32, h: u32| Utc.with_ymd_and_hms(2036, 12, d, h - 1, 0, 0).unwrap();
    let replica = app.second_replica().await;
    let opened = replica
        .open_complaint_at(parcel_late(), "", berlin(5, 9))
        .await
        .unwrap();
    assert_eq!(opened.resolution_due, berlin(5, 17));
    let name = format!("complaints/{}", opened.id);

    let paused = retried(|| replica.pause_complaint_at(&opened.id, "", berlin(5, 16))).await;
    assert_eq!(paused.state, ComplaintState::WaitingOnCustomer);
    assert_eq!(paused.first_response_time, Some(berlin(5, 16)));
    assert_eq!(
        paused.resolution_remaining,
        Some(chrono::Duration::hours(1))
    );
    assert_eq!(
        replica
            .sweep(berlin(8, 9) + chrono::Duration::minutes(30))
            .await
            .unwrap()
            .breaches,
        0
    );
    let waiting = app
        .client
        .get_complaint(app.req(get(&name)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(waiting.state, pb::ComplaintState::WaitingOnCustomer as i32);
    assert!(!waiting.first_response_breached && !waiting.resolution_breached);
    assert_eq!(waiting.holds.len(), 1);
    assert_eq!(secs(&waiting.holds[0].start_time), ts(berlin(5, 16)));
    assert!(waiting.holds[0].end_time.is_none());

    let resumed = retried(|| replica.resume_complaint_at(&opened.id, "", berlin(8, 10))).await;
    assert_eq!(resumed.state, ComplaintState::InProgress);
    assert_eq!(resumed.resolution_due, berlin(8, 11));
    let c = app
        .client
        .get_complaint(app.req(get(&name)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(secs(&c.resolution_due_time), ts(berlin(8, 11)));
    assert_eq!(
        c.holds,
        vec![pb::ComplaintHold {
            start_time: Some(prost_types::Timestamp {
                seconds: ts(berlin(5, 16)),
                nanos: 0
            }),
            end_time: Some(prost_types::Timestamp {
                seconds: ts(berlin(8, 10)),
                nanos: 0
            }),
            resumed_by: String::new(),
        }]
    );
    assert_eq!(app.outbox_count("ComplaintStatusChangedEvent").await, 2);

    // Due at 11:00 sharp: not breached then, breached once a minute later.
    assert_eq!(replica.sweep(berlin(8, 11)).await.unwrap().breaches, 0);
    let late = berlin(8, 11) + chrono::Duration::minutes(1);
    assert_eq!(replica.sweep(late).await.unwrap().breaches, 1);
    assert_eq!(replica.sweep(late).await.unwrap().breaches, 0);
    let c = app
        .client
        .get_complaint(app.req(get(&name)))
        .await
        .unwrap()
        .into_inner();
    assert!(c.resolution_breached && !c.first_response_breached);
    app.stop().await;
}

on_both_backends!(
    a_paused_complaint_does_not_breach_and_resumes_with_the_time_it_had_left,
    paused_over_the_weekend
);

/// Wall-clock targets (the built-in defaults): the customer's inbound answer,
/// logged for the waiting complaint, resumes it; an outbound message, an answer
/// logged without the complaint, or one from before the wait began does not.
async fn answer_resumes(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let who = customer();
    let opened = app.open(&who, pb::Severity::Medium).await;
    let name = opened.name.clone();
    let before_wait = retention_interactions::domain::now();
    let paused = app
        .client
        .pause_complaint(app.req(pause(&name)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(paused.state, pb::ComplaintState::WaitingOnCustomer as i32);
    assert!(paused.first_response_time.is_some());

    for unrelated in [
        answer(&who, &name, pb::Direction::Outbound),
        answer(&who, "", pb::Direction::Inbound),
        {
            let mut early = answer(&who, &name, pb::Direction::Inbound);
            if let Some(i) = early.interaction.as_mut() {
                i.occur_time = Some(prost_types::Timestamp {
                    seconds: ts(before_wait) - 60,
                    nanos: 0,
                });
            }
            early
        },
    ] {
        app.client
            .log_interaction(app.req(unrelated))
            .await
            .unwrap();
        let c = app
            .client
            .get_complaint(app.req(get(&name)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(c.state, pb::ComplaintState::WaitingOnCustomer as i32);
    }

    let logged = app
        .client
        .log_interaction(app.req(answer(&who, &name, pb::Direction::Inbound)))
        .await
        .unwrap()
        .into_inner();
    let c = app
        .client
        .get_complaint(app.req(get(&name)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(c.state, pb::ComplaintState::InProgress as i32);
    assert_eq!(c.holds.len(), 1);
    let hold = &c.holds[0];
    assert_eq!(hold.resumed_by, logged.name);
    assert_eq!(secs(&hold.end_time), secs(&logged.occur_time));
    // The time left when the wait began is the time left after it (to the second:
    // the timestamps compared are truncated to seconds).
    let left_before = secs(&paused.resolution_due_time) - secs(&hold.start_time);
    let left_after = secs(&c.resolution_due_time) - secs(&hold.end_time);
    assert!(
        (left_before - left_after).abs() <= 1,
        "{left_before} vs {left_after}"
    );

    // The answer is on the customer's contact timeline, tied to the complaint.
    let listed = app
        .client
        .list_interactions(app.req(pb::ListInteractionsRequest {
            customer: who.clone(),
            page_size: 10,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(
        listed
            .interactions
            .iter()
            .any(|i| i.name == logged.name && i.complaint == name)
    );
    // Paused, then resumed: two status changes of the complaint.
    assert_eq!(app.outbox_count("ComplaintStatusChangedEvent").await, 2);
    app.stop().await;
}

on_both_backends!(
    an_inbound_answer_resumes_a_waiting_complaint,
    answer_resumes
);

/// Pausing needs an unresolved complaint that is not waiting yet; resuming needs a
/// waiting one; resolving a waiting complaint resumes it first.
async fn illegal(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let name = app.open(&customer(), pb::Severity::Low).await.name;
    let err = app
        .client
        .resume_complaint(app.req(resume(&name)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    app.client
        .pause_complaint(app.req(pause(&name)))
        .await
        .unwrap();
    let err = app
        .client
        .pause_complaint(app.req(pause(&name)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    let err = app
        .client
        .acknowledge_complaint(app.req(pb::AcknowledgeComplaintRequest {
            name: name.clone(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");

    let resolved = app
        .client
        .resolve_complaint(app.req(compensated(&name, 0)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resolved.state, pb::ComplaintState::Resolved as i32);
    assert_eq!(resolved.holds.len(), 1);
    assert!(resolved.holds[0].end_time.is_some());
    assert!(!resolved.resolution_breached);
    let err = app
        .client
        .pause_complaint(app.req(pause(&name)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("cannot pause"), "{}", err.message());

    let err = app
        .client
        .pause_complaint(app.req(pause(&format!("complaints/{}", uuid::Uuid::now_v7()))))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = app
        .client
        .pause_complaint(app.req(pb::PauseComplaintRequest {
            name: name.clone(),
            etag: "\"1\"".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Aborted);
    app.stop().await;
}

on_both_backends!(pausing_and_resuming_follow_the_state_machine, illegal);

async fn scopes(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let name = app.open(&customer(), pb::Severity::Low).await.name;
    let err = app
        .client
        .pause_complaint(app.inner.req(pause(&name), &["interactions.read"]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("interactions.write"));
    let err = app
        .client
        .resume_complaint(app.inner.req(resume(&name), &["interactions.read"]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    app.stop().await;
}

on_both_backends!(pausing_and_resuming_need_the_write_scope, scopes);

/// Berlin office hours, in December 2036 (after the real clock, as above); a
/// next-response target of 2 working hours. The clock
/// starts at the customer's message after the first response (not again while an
/// earlier one waits), stops at the next outbound message, and each clock is
/// breached at most once: by the sweep, or by the late answer itself.
async fn next_response(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let calendar = create(&mut app, office_hours("Berlin office")).await;
    let stored = app
        .client
        .create_sla_policy(app.req(pb::CreateSlaPolicyRequest {
            policy: Some(pb::SlaPolicy {
                priority: pb::Priority::Normal as i32,
                customer_tier: pb::CustomerTier::Ordinary as i32,
                first_response_minutes: 60,
                resolution_minutes: 40 * 60,
                calendar: calendar.name.clone(),
                next_response_minutes: 120,
                ..Default::default()
            }),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.next_response_minutes, 120);
    let berlin = |d: u32, h: u32, m: u32| Utc.with_ymd_and_hms(2036, 12, d, h - 1, m, 0).unwrap();
    let replica = app.second_replica().await;
    let opened = replica
        .open_complaint_at(parcel_late(), "", berlin(5, 9, 0))
        .await
        .unwrap();
    let name = format!("complaints/{}", opened.id);
    let message = |direction: Direction, at: DateTime<Utc>| Interaction {
        id: String::new(),
        customer_id: opened.customer_id.clone(),
        channel: Channel::Email,
        direction,
        kind: None,
        purchase_phase: None,
        agent: String::new(),
        summary: "about the parcel".into(),
        occur_time: at,
        complaint_id: Some(opened.id.clone()),
    };
    let due = |app: &TestApp| {
        let req = app.req(get(&name));
        let mut client = app.client.clone();
        async move {
            let c = client.get_complaint(req).await.unwrap().into_inner();
            (
                c.next_response_due_time.map(|t| t.seconds),
                c.next_response_breached,
            )
        }
    };

    // Before the first response a message starts nothing.
    retried(|| replica.log_interaction(message(Direction::Inbound, berlin(5, 9, 10)), "")).await;
    assert_eq!(due(&app).await, (None, false));
    retried(|| replica.act_at(&opened.id, Action::Acknowledge, "", berlin(5, 9, 30))).await;
    // Friday 16:00 + 2 working hours: Monday 10:00.
    retried(|| replica.log_interaction(message(Direction::Inbound, berlin(5, 16, 0)), "")).await;
    assert_eq!(due(&app).await, (Some(ts(berlin(8, 10, 0))), false));
    assert_eq!(replica.sweep(berlin(8, 9, 59)).await.unwrap().breaches, 0);
    retried(|| replica.log_interaction(message(Direction::Outbound, berlin(8, 9, 45)), "")).await;
    assert_eq!(due(&app).await, (None, false), "answered in time");

    // Monday 11:00 restarts it (due 13:00); 11:30 does not move it.
    for at in [berlin(8, 11, 0), berlin(8, 11, 30)] {
        retried(|| replica.log_interaction(message(Direction::Inbound, at), "")).await;
        assert_eq!(due(&app).await, (Some(ts(berlin(8, 13, 0))), false));
    }
    assert_eq!(replica.sweep(berlin(8, 13, 0)).await.unwrap().breaches, 0);
    assert_eq!(replica.sweep(berlin(8, 13, 1)).await.unwrap().breaches, 1);
    assert_eq!(replica.sweep(berlin(8, 14, 0)).await.unwrap().breaches, 0);
    assert_eq!(due(&app).await, (Some(ts(berlin(8, 13, 0))), true));
    retried(|| replica.log_interaction(message(Direction::Outbound, berlin(8, 14, 0)), "")).await;
    assert_eq!(due(&app).await, (None, true));
    assert_eq!(app.outbox_count("ComplaintSlaBreachedEvent").await, 1);

    // A new message, a new clock: answered late, the answer records the breach.
    retried(|| replica.log_interaction(message(Direction::Inbound, berlin(8, 15, 0)), "")).await;
    assert_eq!(due(&app).await, (Some(ts(berlin(8, 17, 0))), false));
    retried(|| replica.log_interaction(message(Direction::Outbound, berlin(8, 17, 30)), "")).await;
    assert_eq!(due(&app).await, (None, true));
    assert_eq!(replica.sweep(berlin(9, 12, 0)).await.unwrap().breaches, 0);
    assert_eq!(app.outbox_count("ComplaintSlaBreachedEvent").await, 2);
    let c = app
        .client
        .get_complaint(app.req(get(&name)))
        .await
        .unwrap()
        .into_inner();
    assert!(!c.first_response_breached && !c.resolution_breached);
    app.stop().await;
}

on_both_backends!(
    a_next_response_clock_restarts_at_each_customer_message,
    next_response
);
