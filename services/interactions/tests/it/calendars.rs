//! Business-hour calendars over gRPC: create, get, list, update with etags,
//! validation, SLA policies naming a calendar, and due times counted in working
//! time.

use chrono::{TimeZone, Utc};
use retention_interactions::app::NewComplaint;
use retention_interactions::domain::{ComplaintCategory, Severity};
use retention_proto::interactions as pb;
use retention_testkit::{Backend, on_both_backends};
use tonic::Code;

use crate::harness::*;

pub(crate) fn period(day: pb::DayOfWeek, start_minute: i32, end_minute: i32) -> pb::WorkingPeriod {
    pb::WorkingPeriod {
        day_of_week: day as i32,
        start_minute,
        end_minute,
    }
}

/// Monday to Friday, 09:00-17:00 in Berlin.
pub(crate) fn office_hours(display_name: &str) -> pb::BusinessCalendar {
    use pb::DayOfWeek::*;
    pb::BusinessCalendar {
        display_name: display_name.into(),
        time_zone: "Europe/Berlin".into(),
        periods: [Monday, Tuesday, Wednesday, Thursday, Friday]
            .into_iter()
            .map(|d| period(d, 9 * 60, 17 * 60))
            .collect(),
        holidays: vec!["2026-12-24".into(), "2026-12-25".into()],
        ..Default::default()
    }
}

pub(crate) async fn create(app: &mut TestApp, c: pb::BusinessCalendar) -> pb::BusinessCalendar {
    let req = app.req(pb::CreateBusinessCalendarRequest {
        calendar: Some(c),
        request_id: String::new(),
    });
    app.client
        .create_business_calendar(req)
        .await
        .expect("create calendar")
        .into_inner()
}

async fn crud(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let created = create(&mut app, office_hours("Berlin office")).await;
    assert!(created.name.starts_with("calendars/"));
    assert_eq!(created.display_name, "Berlin office");
    assert_eq!(created.periods.len(), 5);
    assert_eq!(created.periods[0], period(pb::DayOfWeek::Monday, 540, 1020));
    assert_eq!(created.holidays, vec!["2026-12-24", "2026-12-25"]);
    assert_eq!(created.etag, "\"1\"");

    let got = app
        .client
        .get_business_calendar(app.req(pb::GetBusinessCalendarRequest {
            name: created.name.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, created);

    // Idempotent on request_id.
    let mut again = Vec::new();
    for _ in 0..2 {
        let req = app.req(pb::CreateBusinessCalendarRequest {
            calendar: Some(office_hours("Shanghai office")),
            request_id: "cal-1".into(),
        });
        again.push(
            app.client
                .create_business_calendar(req)
                .await
                .unwrap()
                .into_inner()
                .name,
        );
    }
    assert_eq!(again[0], again[1]);
    create(&mut app, office_hours("Night desk")).await;

    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = app
            .client
            .list_business_calendars(app.req(pb::ListBusinessCalendarsRequest {
                page_size: 2,
                page_token: token,
            }))
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.calendars.into_iter().map(|c| c.display_name));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, vec!["Berlin office", "Shanghai office", "Night desk"]);

    // A lunch break: two periods on Monday; the rest of the definition is replaced.
    let mut changed = created.clone();
    changed.display_name = "Berlin office (lunch)".into();
    changed.periods = vec![
        period(pb::DayOfWeek::Monday, 13 * 60, 17 * 60),
        period(pb::DayOfWeek::Monday, 9 * 60, 12 * 60),
    ];
    changed.holidays.clear();
    let updated = app
        .client
        .update_business_calendar(app.req(pb::UpdateBusinessCalendarRequest {
            calendar: Some(changed.clone()),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.etag, "\"2\"");
    assert_eq!(updated.display_name, "Berlin office (lunch)");
    assert_eq!(
        updated.periods,
        vec![
            period(pb::DayOfWeek::Monday, 540, 720),
            period(pb::DayOfWeek::Monday, 780, 1020),
        ]
    );
    assert!(updated.holidays.is_empty());
    assert_eq!(updated.create_time, created.create_time);

    // The etag sent with `changed` is now stale.
    let err = app
        .client
        .update_business_calendar(app.req(pb::UpdateBusinessCalendarRequest {
            calendar: Some(changed),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Aborted);

    let err = app
        .client
        .get_business_calendar(app.req(pb::GetBusinessCalendarRequest {
            name: format!("calendars/{}", uuid::Uuid::now_v7()),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = app
        .client
        .update_business_calendar(app.req(pb::UpdateBusinessCalendarRequest {
            calendar: Some(pb::BusinessCalendar {
                name: format!("calendars/{}", uuid::Uuid::now_v7()),
                ..office_hours("gone")
            }),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    app.stop().await;
}

on_both_backends!(calendars_are_created_read_listed_and_updated, crud);

async fn invalid(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let mut bad = office_hours("");
    bad.time_zone = "Europe/Atlantis".into();
    // Index 5 overlaps Monday's 09:00-17:00 at index 0.
    bad.periods
        .push(period(pb::DayOfWeek::Monday, 16 * 60, 18 * 60));
    bad.periods.push(period(pb::DayOfWeek::Unspecified, 0, 60));
    bad.periods.push(period(pb::DayOfWeek::Sunday, 600, 1441));
    bad.holidays.push("24.12.2026".into());
    let err = app
        .client
        .create_business_calendar(app.req(pb::CreateBusinessCalendarRequest {
            calendar: Some(bad),
            request_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let mut fields = violated_fields(&err);
    fields.sort();
    assert_eq!(
        fields,
        vec![
            "calendar.display_name",
            "calendar.holidays[2]",
            "calendar.periods[5]",
            "calendar.periods[6].day_of_week",
            "calendar.periods[7].end_minute",
            "calendar.time_zone",
        ]
    );
    let overlap = retention_errors::field_violations(&err)
        .into_iter()
        .find(|(f, _)| f == "calendar.periods[5]")
        .map(|(_, d)| d)
        .unwrap_or_default();
    assert_eq!(overlap, "overlaps calendar.periods[0]");

    // Update validates the same way.
    let created = create(&mut app, office_hours("Berlin office")).await;
    let err = app
        .client
        .update_business_calendar(app.req(pb::UpdateBusinessCalendarRequest {
            calendar: Some(pb::BusinessCalendar {
                name: created.name.clone(),
                time_zone: "Mars/Olympus_Mons".into(),
                ..office_hours("Berlin office")
            }),
        }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), vec!["calendar.time_zone"]);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM business_calendars").await,
        1
    );
    app.stop().await;
}

on_both_backends!(invalid_calendars_get_field_violations, invalid);

/// A delivery complaint of the test customer (opened at a chosen time).
pub(crate) fn parcel_late() -> NewComplaint {
    NewComplaint {
        customer_id: customer().trim_start_matches("customers/").into(),
        category: ComplaintCategory::Delivery,
        severity: Severity::Medium,
        priority: None,
        channel: None,
        subject: "Parcel late".into(),
        description: String::new(),
    }
}

pub(crate) fn policy(calendar: &str) -> pb::CreateSlaPolicyRequest {
    pb::CreateSlaPolicyRequest {
        policy: Some(pb::SlaPolicy {
            priority: pb::Priority::Normal as i32,
            customer_tier: pb::CustomerTier::Ordinary as i32,
            first_response_minutes: 60,
            resolution_minutes: 8 * 60,
            calendar: calendar.into(),
            ..Default::default()
        }),
    }
}

async fn unknown_calendar(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let missing = format!("calendars/{}", uuid::Uuid::now_v7());
    let err = app
        .client
        .create_sla_policy(app.req(policy(&missing)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&err), vec!["policy.calendar"]);
    let err = app
        .client
        .create_sla_policy(app.req(policy("teams/berlin")))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), vec!["policy.calendar"]);
    let listed = app
        .client
        .list_sla_policies(app.req(pb::ListSlaPoliciesRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.policies.is_empty());
    app.stop().await;
}

on_both_backends!(
    a_policy_naming_an_unknown_calendar_is_refused,
    unknown_calendar
);

/// The open time cannot be chosen over gRPC (the service stamps its own clock),
/// so the complaint is opened through the application layer on the same database
/// at the chosen instant; the due times are read back through GetComplaint.
async fn friday_evening(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let calendar = create(&mut app, office_hours("Berlin office")).await;
    let stored = app
        .client
        .create_sla_policy(app.req(policy(&calendar.name)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.calendar, calendar.name);
    let listed = app
        .client
        .list_sla_policies(app.req(pb::ListSlaPoliciesRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.policies, vec![stored]);

    // Friday 2026-12-04 16:30 in Berlin (CET, UTC+1).
    let open = Utc.with_ymd_and_hms(2026, 12, 4, 15, 30, 0).unwrap();
    let replica = app.second_replica().await;
    let opened = replica
        .open_complaint_at(parcel_late(), "", open)
        .await
        .unwrap();
    let get = |app: &TestApp| {
        app.req(pb::GetComplaintRequest {
            name: format!("complaints/{}", opened.id),
        })
    };
    let c = app
        .client
        .get_complaint(get(&app))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(c.priority, pb::Priority::Normal as i32);
    // 30 minutes on Friday, 30 on Monday: Monday 09:30 Berlin = 08:30 UTC.
    let monday_0930 = Utc.with_ymd_and_hms(2026, 12, 7, 8, 30, 0).unwrap();
    assert_eq!(secs(&c.first_response_due_time), monday_0930.timestamp());
    // 8 h: 30 minutes on Friday, 7 h 30 on Monday: 16:30 Berlin.
    let monday_1630 = Utc.with_ymd_and_hms(2026, 12, 7, 15, 30, 0).unwrap();
    assert_eq!(secs(&c.resolution_due_time), monday_1630.timestamp());

    // Nothing is due over the weekend.
    let saturday = Utc.with_ymd_and_hms(2026, 12, 5, 12, 0, 0).unwrap();
    assert_eq!(replica.sweep(saturday).await.unwrap().breaches, 0);

    // Open complaints keep the due times computed when they were opened.
    let mut always = calendar.clone();
    always.periods = [
        pb::DayOfWeek::Monday,
        pb::DayOfWeek::Tuesday,
        pb::DayOfWeek::Wednesday,
        pb::DayOfWeek::Thursday,
        pb::DayOfWeek::Friday,
        pb::DayOfWeek::Saturday,
        pb::DayOfWeek::Sunday,
    ]
    .into_iter()
    .map(|d| period(d, 0, 24 * 60))
    .collect();
    app.client
        .update_business_calendar(app.req(pb::UpdateBusinessCalendarRequest {
            calendar: Some(always),
        }))
        .await
        .unwrap();
    let c = app
        .client
        .get_complaint(get(&app))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(secs(&c.first_response_due_time), monday_0930.timestamp());
    app.stop().await;
}

on_both_backends!(
    friday_evening_first_response_is_due_monday_morning,
    friday_evening
);

/// Berlin, Monday to Friday 09:00-12:00 and 13:00-17:00 (a lunch break), with
/// Christmas Eve and Day 2036 off; first response in 60 working minutes,
/// resolution in 480.
fn berlin_desk() -> pb::BusinessCalendar {
    use pb::DayOfWeek::*;
    pb::BusinessCalendar {
        display_name: "Berlin desk".into(),
        time_zone: "Europe/Berlin".into(),
        periods: [Monday, Tuesday, Wednesday, Thursday, Friday]
            .into_iter()
            .flat_map(|d| [period(d, 9 * 60, 12 * 60), period(d, 13 * 60, 17 * 60)])
            .collect(),
        holidays: vec!["2036-12-24".into(), "2036-12-25".into()],
        ..Default::default()
    }
}

/// The due times of complaints opened at chosen instants, read back over gRPC:
/// a lunch break, two holidays and both DST changes of 2036 skipped to the
/// minute. Instants are UTC; Berlin is UTC+1 in winter and UTC+2 in summer.
async fn working_time_edges(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let calendar = create(&mut app, berlin_desk()).await;
    app.client
        .create_sla_policy(app.req(policy(&calendar.name)))
        .await
        .unwrap();
    let utc = |y, mo, d, h, mi| Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap();
    let cases = [
        // Monday 11:30 CET: 30 minutes before lunch, 30 after; the resolution
        // takes the rest of Monday (270) and Tuesday until 13:30.
        (
            "lunch break",
            utc(2036, 3, 3, 10, 30),
            utc(2036, 3, 3, 12, 30),
            utc(2036, 3, 4, 12, 30),
        ),
        // Tuesday 23 December 16:30 CET: 30 minutes, then Wednesday and Thursday
        // off; Friday 26th 09:30, and the resolution Monday 29th 09:30.
        (
            "holidays",
            utc(2036, 12, 23, 15, 30),
            utc(2036, 12, 26, 8, 30),
            utc(2036, 12, 29, 8, 30),
        ),
        // Friday 28 March 16:30 CET, 30 minutes; summer time from Sunday: Monday
        // 09:30 CEST is 07:30 UTC. A day holds 420 working minutes, so the
        // resolution is due Tuesday 09:30 CEST.
        (
            "spring forward",
            utc(2036, 3, 28, 15, 30),
            utc(2036, 3, 31, 7, 30),
            utc(2036, 4, 1, 7, 30),
        ),
        // Friday 24 October 16:30 CEST; winter time from Sunday: Monday 09:30 CET
        // is 08:30 UTC, the resolution Tuesday 09:30 CET.
        (
            "fall back",
            utc(2036, 10, 24, 14, 30),
            utc(2036, 10, 27, 8, 30),
            utc(2036, 10, 28, 8, 30),
        ),
    ];
    let replica = app.second_replica().await;
    for (case, open, first_response, resolution) in cases {
        let opened =
            crate::clocks::retried(|| replica.open_complaint_at(parcel_late(), "", open)).await;
        let c = app
            .client
            .get_complaint(app.req(pb::GetComplaintRequest {
                name: format!("complaints/{}", opened.id),
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (
                secs(&c.first_response_due_time),
                secs(&c.resolution_due_time)
            ),
            (first_response.timestamp(), resolution.timestamp()),
            "{case}"
        );
    }
    app.stop().await;
}
on_both_backends!(
    holidays_lunch_breaks_and_dst_are_skipped_to_the_minute,
    working_time_edges
);
