//! Several segmentation replicas on one PostgreSQL (DESIGN §8): one scoring run at
//! a time in the deployment, its pages scored by every replica, a replica killed
//! mid-run, and the scheduled run started once per interval.

use std::collections::HashMap;
use std::time::Duration;

use retention_config::Settings;
use retention_proto::segmentation as pb;
use retention_proto::segmentation::segmentation_service_client::SegmentationServiceClient;
use retention_testkit::Backend;
use sea_orm::ConnectionTrait;

use crate::harness::{ALL_SCOPES, TestApp, new_id};

/// Customers of the many-replica tests: 30 histories and 99 copies of each.
const CUSTOMERS: i64 = 3_000;

/// Small pages and short leases, so that a run has many pages and a dead
/// replica's claims lapse within the test.
fn replicated(s: &mut Settings) {
    s.scoring.interval_minutes = 0;
    s.scoring.page_size = 100;
    s.scoring.worker_poll_ms = 50;
    s.scoring.page_lease_secs = 3;
    s.scoring.run_lease_secs = 3;
}

/// A service with [`CUSTOMERS`] customers' features (none scored yet).
async fn populated() -> TestApp {
    let mut app = TestApp::spawn_with(Backend::Postgres, replicated).await;
    app.population(30, 400).await;
    app.inner
        .database()
        .await
        .unwrap()
        .execute_unprepared(
            "INSERT INTO features (customer_id, data, update_time) \
             SELECT md5(f.customer_id || '-' || g), f.data, f.update_time \
             FROM features f CROSS JOIN generate_series(1, 99) g",
        )
        .await
        .unwrap();
    assert_eq!(app.count("SELECT COUNT(*) FROM features").await, CUSTOMERS);
    app
}

fn run_id(name: &str) -> String {
    name.trim_start_matches("scoringRuns/").to_string()
}

/// Every customer scored exactly once by `run`: one insight stamped with it
/// each, and one CustomerScored event each (a first run: every insight is new).
async fn assert_scored_once(app: &TestApp, run: &str) {
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM insights WHERE scoring_run = '{run}'"
        ))
        .await,
        CUSTOMERS,
        "every insight comes from this run"
    );
    let mut events: HashMap<String, usize> = HashMap::new();
    for e in app.outbox::<pb::CustomerScoredEvent>().await {
        assert_eq!(e.scoring_run, run, "{e:?}");
        *events.entry(e.customer_id).or_default() += 1;
    }
    assert_eq!(events.len() as i64, CUSTOMERS, "one event per customer");
    let twice: Vec<_> = events.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        twice.is_empty(),
        "customers scored more than once: {twice:?}"
    );
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM scoring_run_pages WHERE run_id = '{run}' AND state <> 'done'"
        ))
        .await,
        0
    );
    assert_eq!(
        app.count(&format!(
            "SELECT CAST(COALESCE(SUM(customers_scored), 0) AS BIGINT) FROM scoring_run_pages WHERE run_id = '{run}'"
        ))
        .await,
        CUSTOMERS,
        "the pages' counts add up to the population"
    );
}

/// Replicas (an owner is `<replica>/<claim>`) that completed pages of `run`.
async fn page_owners(app: &TestApp, run: &str) -> i64 {
    app.count(&format!(
        "SELECT COUNT(DISTINCT regexp_replace(owner, '/[^/]*$', '')) FROM scoring_run_pages \
         WHERE run_id = '{run}' AND state = 'done'"
    ))
    .await
}

#[tokio::test]
async fn concurrent_runs_on_two_replicas_start_one_scored_by_both() {
    let a = populated().await;
    let mut b = a.replica(replicated).await;
    let start = |app: &TestApp, request_id: &str| {
        let mut client = app.client.clone();
        let req = app.req(pb::RunScoringRequest {
            request_id: request_id.into(),
            ..Default::default()
        });
        async move { client.run_scoring(req).await }
    };
    let (id_a, id_b) = (new_id(), new_id());
    let (on_a, on_b) = tokio::join!(start(&a, &id_a), start(&b, &id_b));
    let (run, refused, winner) = match (on_a, on_b) {
        (Ok(run), Err(refused)) => (run.into_inner(), refused, id_a),
        (Err(refused), Ok(run)) => (run.into_inner(), refused, id_b),
        other => panic!("exactly one run must start: {other:?}"),
    };
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
    assert!(
        refused.message().contains(&run.name),
        "the refusal names the run in progress: {refused:?}"
    );
    // Either replica answers for the run: it is the deployment's, not a process's.
    let done = b.wait_run(&run.name).await;
    assert_eq!(
        done.state,
        pb::ScoringRunState::Succeeded as i32,
        "{done:?}"
    );
    assert_eq!(done.customers_scored, CUSTOMERS);
    assert_eq!(done.percent_complete, 100);
    assert_eq!(a.count("SELECT COUNT(*) FROM scoring_runs").await, 1);
    let id = run_id(&run.name);
    assert_eq!(page_owners(&a, &id).await, 2, "both replicas scored pages");
    assert_scored_once(&a, &id).await;
    // The winning request id again, on either replica: the same run.
    for app in [&a, &b] {
        let again = start(app, &winner).await.unwrap().into_inner();
        assert_eq!(again.name, run.name);
    }
    assert_eq!(a.count("SELECT COUNT(*) FROM scoring_runs").await, 1);
    b.stop().await;
    a.stop().await;
}

/// The coordinating replica is a real process, SIGKILLed once it has scored a
/// page: its run still ends SUCCEEDED, finished by the other replica (the
/// killed one's claims lapse and are taken over), every customer scored once.
#[tokio::test]
async fn a_replica_killed_mid_run_leaves_the_run_to_the_others() {
    let a = populated().await;
    let dir = std::env::temp_dir().join(format!("retention-seg-kill-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = retention_testkit::free_port();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_retention-segmentation"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("RETENTION_")) {
        cmd.env_remove(k);
    }
    let s = &a.inner.settings;
    let mut child = cmd
        .current_dir(&dir)
        .env("RETENTION_SERVICE__HOST", "127.0.0.1")
        .env("RETENTION_SERVICE__PORT", port.to_string())
        .env("RETENTION_DATABASE__URL", &s.database.url)
        .env("RETENTION_REDIS__URL", &s.redis.url)
        .env("RETENTION_REDIS__NAMESPACE", &s.redis.namespace)
        .env("RETENTION_ADMIN__PORT", "0")
        .env("RETENTION_SCORING__INTERVAL_MINUTES", "0")
        .env("RETENTION_SCORING__PAGE_SIZE", "100")
        .env("RETENTION_SCORING__WORKER_POLL_MS", "50")
        .env("RETENTION_SCORING__PAGE_LEASE_SECS", "3")
        .env("RETENTION_SCORING__RUN_LEASE_SECS", "3")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the binary starts");
    let channel = {
        let endpoint = format!("http://127.0.0.1:{port}");
        let mut tries = 0;
        loop {
            if let Ok(ch) = tonic::transport::Endpoint::from_shared(endpoint.clone())
                .unwrap()
                .connect()
                .await
                && retention_testkit::wait_until_serving(ch.clone())
                    .await
                    .is_ok()
            {
                break ch;
            }
            tries += 1;
            if tries >= 600 {
                let _ = child.kill();
                panic!("the segmentation binary did not come up");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let mut killed = SegmentationServiceClient::new(channel);
    let token = retention_testkit::mint_token(&Settings::defaults("segmentation", 0), ALL_SCOPES);
    let run = killed
        .run_scoring(retention_testkit::with_token(
            pb::RunScoringRequest {
                request_id: new_id(),
                ..Default::default()
            },
            &token,
        ))
        .await
        .expect("the run starts on the process")
        .into_inner();
    let id = run_id(&run.name);
    // Pages of the process's claims in `state`.
    let by_process = |state: &str| {
        format!(
            "SELECT COUNT(*) FROM scoring_run_pages p JOIN scoring_runs r ON r.id = p.run_id \
             WHERE r.id = '{id}' AND p.state = '{state}' AND p.owner LIKE r.owner || '/%'"
        )
    };
    let mut waited = 0;
    // Killed once it has scored a page and while it holds a claim. It is frozen
    // (SIGSTOP) before the claim is looked at, and given a moment for a commit
    // already sent to land: a page it was finishing cannot turn done between
    // the look and the kill. Thawed and tried again if it held nothing.
    let signal = |sig: &str| {
        std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(child.id().to_string())
            .status()
            .expect("kill runs")
    };
    loop {
        while a.count(&by_process("done")).await == 0 || a.count(&by_process("pending")).await == 0
        {
            waited += 1;
            if waited >= 1200 {
                let _ = signal("KILL");
                panic!("the process never scored a page");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        signal("STOP");
        tokio::time::sleep(Duration::from_millis(200)).await;
        if a.count(&by_process("pending")).await > 0 {
            break;
        }
        signal("CONT");
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let held = a.count(&by_process("pending")).await;
    assert!(held > 0, "the process died holding a claim");
    let pending = a
        .count(&format!(
            "SELECT COUNT(*) FROM scoring_run_pages WHERE run_id = '{id}' AND state <> 'done'"
        ))
        .await;
    let mut a = a;
    let done = a.wait_run(&run.name).await;
    assert_eq!(
        done.state,
        pb::ScoringRunState::Succeeded as i32,
        "{done:?}"
    );
    assert_eq!(done.customers_scored, CUSTOMERS);
    assert!(
        pending > 0,
        "the process was killed with pages left (else the test shows nothing)"
    );
    assert_eq!(
        page_owners(&a, &id).await,
        2,
        "the survivor scored the rest"
    );
    assert!(
        a.count(&format!(
            "SELECT COUNT(*) FROM scoring_run_pages WHERE run_id = '{id}' AND attempts > 1"
        ))
        .await
            >= held,
        "the dead process's claims lapsed and were claimed again"
    );
    assert_scored_once(&a, &id).await;
    a.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two replicas scheduling every two seconds: each interval's run starts once
/// for both (one run per slot's request id, never two runs in one slot).
#[tokio::test]
async fn a_scheduled_run_starts_once_across_two_replicas() {
    let every = |s: &mut Settings| {
        replicated(s);
        s.scoring.interval_secs = 2;
    };
    let mut a = TestApp::spawn_with(Backend::Postgres, every).await;
    a.population(30, 400).await;
    let b = a.replica(every).await;
    tokio::time::sleep(Duration::from_millis(7_500)).await;
    // Both stopped before counting (the database kept): no tick starts a run
    // in between.
    b.stop().await;
    let service = a.inner.service.take().expect("running");
    service.stop().await.expect("clean shutdown");
    let url = a.inner.settings.database.url.clone();
    let count = |sql: String| {
        let url = url.clone();
        async move { retention_testkit::count_at(&url, &sql).await.unwrap() }
    };
    let runs = count("SELECT COUNT(*) FROM scoring_runs".into()).await;
    let slots = "FROM idempotency_keys WHERE key LIKE 'RunScoring:scheduled-%'";
    assert!(runs >= 2, "runs in several intervals: {runs}");
    assert_eq!(
        count(format!("SELECT COUNT(*) {slots}")).await,
        runs,
        "every run is one slot's"
    );
    assert_eq!(
        count(format!("SELECT COUNT(DISTINCT resource) {slots}")).await,
        runs,
        "no run for two slots"
    );
    assert_eq!(
        count(
            "SELECT COUNT(*) FROM scoring_runs r WHERE NOT EXISTS \
             (SELECT 1 FROM idempotency_keys k WHERE k.resource = r.id)"
                .into()
        )
        .await,
        0,
        "no run outside the schedule"
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM scoring_runs WHERE state = 'SUCCEEDED'".into()).await,
        runs - count("SELECT COUNT(*) FROM scoring_runs WHERE state <> 'SUCCEEDED'".into()).await,
    );
    drop(a);
}

/// A replica started while a run is fitting (its start-up sweep included)
/// leaves the run alone and joins its pages.
#[tokio::test]
async fn a_replica_started_mid_run_joins_it() {
    let mut a = populated().await;
    let run = a.run_scoring_started().await;
    let b = a.replica(replicated).await;
    let done = a.wait_run(&run.name).await;
    assert_eq!(
        done.state,
        pb::ScoringRunState::Succeeded as i32,
        "{done:?}"
    );
    let id = run_id(&run.name);
    assert_eq!(
        page_owners(&a, &id).await,
        2,
        "the new replica scored pages"
    );
    assert_scored_once(&a, &id).await;
    b.stop().await;
    a.stop().await;
}

/// A run whose replica stopped renewing its lease before writing pages blocks
/// new runs only until its lease lapses; while the lease holds, it is left alone.
#[tokio::test]
async fn a_run_is_failed_only_once_its_lease_lapsed() {
    let mut a = TestApp::spawn_with(Backend::Postgres, replicated).await;
    a.population(30, 400).await;
    let db = a.inner.database().await.unwrap();
    db.execute_unprepared(
        "INSERT INTO scoring_runs (id, state, percent_complete, stage, customers_scored, \
         create_time, error, owner, lease_until) VALUES ('elsewhere', 'RUNNING', 0, 'fitting', \
         0, now(), '', 'other-replica', now() + interval '1 hour')",
    )
    .await
    .unwrap();
    let req = a.req(pb::RunScoringRequest {
        request_id: new_id(),
        ..Default::default()
    });
    let refused = a.client.run_scoring(req).await.unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
    // The periodic sweep (every run lease) leaves a held run alone too.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    assert_eq!(
        a.count("SELECT COUNT(*) FROM scoring_runs WHERE id = 'elsewhere' AND state = 'RUNNING'")
            .await,
        1
    );
    db.execute_unprepared(
        "UPDATE scoring_runs SET lease_until = now() - interval '1 second' WHERE id = 'elsewhere'",
    )
    .await
    .unwrap();
    let run = a.run_scoring().await;
    assert_eq!(run.state, pb::ScoringRunState::Succeeded as i32, "{run:?}");
    assert_eq!(
        a.count(
            "SELECT COUNT(*) FROM scoring_runs WHERE id = 'elsewhere' AND state = 'FAILED' \
             AND error LIKE 'interrupted%'"
        )
        .await,
        1
    );
    a.stop().await;
}
