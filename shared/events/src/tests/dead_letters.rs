//! Dead letters an operator handles: listed with their reason and deliveries,
//! paged, inspected, replayed to their group alone (applied once) and
//! discarded (never applied), on Redis and on the in-process bus.

use super::*;

/// Refuses the `poison` events as permanent failures until fixed; records each
/// delivery and applies each event at most once (an inbox, as
/// [`first_delivery`] gives a real handler).
struct Fixable {
    refusing: AtomicBool,
    poison: HashSet<String>,
    deliveries: Mutex<HashMap<String, usize>>,
    applied: Mutex<HashMap<String, usize>>,
}

impl Fixable {
    fn refusing(poison: &[&str]) -> Arc<Fixable> {
        Arc::new(Fixable {
            refusing: AtomicBool::new(true),
            poison: poison.iter().map(|p| p.to_string()).collect(),
            deliveries: Mutex::default(),
            applied: Mutex::default(),
        })
    }

    fn fix(&self) {
        self.refusing.store(false, Ordering::SeqCst);
    }

    fn deliveries(&self, id: &str) -> usize {
        self.deliveries
            .lock()
            .map_or(0, |m| m.get(id).copied().unwrap_or(0))
    }

    fn applied(&self, id: &str) -> usize {
        self.applied
            .lock()
            .map_or(0, |m| m.get(id).copied().unwrap_or(0))
    }
}

impl EventHandler for Fixable {
    fn handle<'a>(&'a self, env: &'a EventEnvelope) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let id = env.event_id.clone();
            if let Ok(mut m) = self.deliveries.lock() {
                *m.entry(id.clone()).or_default() += 1;
            }
            if self.refusing.load(Ordering::SeqCst) && self.poison.contains(&id) {
                return Err(HandlerError::Permanent(format!("cannot apply {id}")));
            }
            if let Ok(mut m) = self.applied.lock() {
                // The inbox: a second delivery of an applied event changes nothing.
                m.entry(id).or_insert(1);
            }
            Ok(())
        })
    }
}

fn ids(views: &[DeadLetterView]) -> Vec<&str> {
    views.iter().map(|v| v.event_id.as_str()).collect()
}

/// The whole operator round trip on `bus`, with consumers built by `opts`.
async fn operator_handles_dead_letters(
    bus: &EventBus,
    opts: impl Fn(&str, &str) -> ConsumerOptions,
) -> anyhow::Result<()> {
    let g = Fixable::refusing(&["p0", "p1", "p2"]);
    // Another group of the stream, which refuses an event `g` applies.
    let other = Fixable::refusing(&["f1"]);
    let shutdown = CancellationToken::new();
    let tasks = [
        bus.spawn_consumer(opts("g", "g1"), g.clone(), shutdown.clone()),
        bus.spawn_consumer(opts("other", "o1"), other.clone(), shutdown.clone()),
    ];
    let envs: Vec<EventEnvelope> = ["p0", "f0", "p1", "p2", "f1"]
        .iter()
        .enumerate()
        .map(|(n, id)| envelope(id, n))
        .collect();
    publish_envelopes(bus.publisher().as_ref(), &envs).await?;

    let dead = DeadLetters::new(bus, "g", [STREAM]);
    let others = DeadLetters::new(bus, "other", [STREAM]);
    eventually(Duration::from_secs(10), "the dead letters", || async {
        Ok(dead.list(100, None).await?.len() == 3
            && others.list(100, None).await?.len() == 1
            && g.applied("f0") == 1
            && g.applied("f1") == 1
            && other.applied("f0") == 1)
    })
    .await?;

    // Listed oldest first, with what an operator needs; only the group's own.
    let all = dead.list(100, None).await?;
    let mut listed = ids(&all);
    listed.sort_unstable();
    assert_eq!(listed, vec!["p0", "p1", "p2"]);
    assert!(all.windows(2).all(|w| w[0].buried_at <= w[1].buried_at));
    for v in &all {
        assert_eq!(v.stream, STREAM);
        assert_eq!(v.group, "g");
        assert_eq!(v.event_type, MERGED);
        assert_eq!(v.reason, format!("cannot apply {}", v.event_id));
        assert_eq!(v.deliveries, 1);
        let n = envs
            .iter()
            .position(|e| e.event_id == v.event_id)
            .context("listed event")?;
        assert_eq!(v.customer_id.as_deref(), Some(format!("c{n}").as_str()));
        assert!(chrono::Utc::now() - v.buried_at < chrono::Duration::minutes(1));
    }
    assert_eq!(ids(&others.list(100, None).await?), vec!["f1"]);

    // Paging by id.
    let first = dead.list(2, None).await?;
    assert_eq!(first, all[..2].to_vec());
    let second = dead.list(2, Some(&first[1].id)).await?;
    assert_eq!(second, all[2..].to_vec());
    assert!(dead.list(2, Some(&second[0].id)).await?.is_empty());
    assert!(dead.list(2, Some("bogus")).await.is_err());
    assert!(
        dead.list(0, None).await?.len() == 1,
        "a page holds at least one"
    );

    // Inspect.
    let p0 = all.iter().find(|v| v.event_id == "p0").context("p0")?;
    let p1 = all.iter().find(|v| v.event_id == "p1").context("p1")?;
    let detail = dead.get(&p0.id).await?.context("p0 detail")?;
    assert_eq!(&detail.view, p0);
    assert_eq!(EventEnvelope::decode(detail.envelope.as_slice())?, envs[0]);
    assert_eq!(dead.get("bogus").await?, None);
    assert_eq!(
        others.get(&p0.id).await?,
        None,
        "another group's dead letter"
    );
    assert!(!others.discard(&p0.id).await?);

    // Replay after the fix: applied once, by this group alone, and gone.
    g.fix();
    assert!(dead.replay(&p0.id).await?);
    eventually(Duration::from_secs(10), "p0 applied", || async {
        Ok(g.applied("p0") == 1)
    })
    .await?;
    assert!(!dead.replay(&p0.id).await?, "replayed already");
    assert_eq!(dead.get(&p0.id).await?, None);
    assert_eq!(ids(&dead.list(100, None).await?), {
        let mut rest: Vec<&str> = ids(&all);
        rest.retain(|id| *id != "p0");
        rest
    });

    // Discard: gone for good, never applied.
    assert!(dead.discard(&p1.id).await?);
    assert!(!dead.discard(&p1.id).await?);
    assert!(!dead.replay(&p1.id).await?);
    assert_eq!(dead.get(&p1.id).await?, None);

    // The other group's replay reaches it alone.
    other.fix();
    let f1 = others.list(10, None).await?;
    assert!(others.replay(&f1[0].id).await?);
    eventually(
        Duration::from_secs(10),
        "f1 applied by the other group",
        || async { Ok(other.applied("f1") == 1) },
    )
    .await?;

    // Let any stray delivery arrive before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(g.deliveries("p0"), 2, "refused once, replayed once");
    assert_eq!(g.applied("p0"), 1);
    assert_eq!(
        other.deliveries("p0"),
        1,
        "a replay is addressed to its group"
    );
    assert_eq!(
        g.deliveries("p1"),
        1,
        "a discarded event is not delivered again"
    );
    assert_eq!(g.applied("p1"), 0);
    assert_eq!(
        g.deliveries("f1"),
        1,
        "the other group's replay is not ours"
    );
    assert_eq!(other.deliveries("f1"), 2);
    assert_eq!(ids(&dead.list(100, None).await?), vec!["p2"]);
    assert!(others.list(100, None).await?.is_empty());

    shutdown.cancel();
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(5), t).await??;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_replayed_and_discarded_on_redis() -> anyhow::Result<()> {
    let redis = RedisNs::new().await?;
    let bus = EventBus::redis(&retention_testkit::redis_url(), &redis.ns, 10_000, vec![])?;
    operator_handles_dead_letters(&bus, |group, consumer| redis.opts(group, consumer)).await?;
    // The dead-letter stream now holds only the one left.
    assert_eq!(redis.xlen(&dead_letter_key(&redis.ns, STREAM)).await?, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_replayed_and_discarded_in_process() -> anyhow::Result<()> {
    init_tracing();
    let bus = EventBus::in_process();
    operator_handles_dead_letters(&bus, |group, consumer| ConsumerOptions {
        claim_idle: Duration::from_millis(100),
        max_deliveries: 3,
        ..ConsumerOptions::new("", STREAM, group, consumer)
    })
    .await?;
    let EventBus::InProcess(inner) = &bus else {
        bail!("in-process bus expected");
    };
    // The bus's own list agrees.
    let left: Vec<String> = inner
        .dead_letters()
        .into_iter()
        .map(|d| d.event_id)
        .collect();
    assert_eq!(left, vec!["p2"]);
    Ok(())
}

/// Pages over many dead letters of several streams come out whole, in order,
/// without repeats.
async fn pages_cover_every_dead_letter(
    bus: &EventBus,
    opts: impl Fn(&str) -> ConsumerOptions,
) -> anyhow::Result<()> {
    const OTHER: &str = "retention.segmentation.events";
    let names: Vec<String> = (0..25).map(|n| format!("x{n}")).collect();
    let refuse_all = Fixable::refusing(&names.iter().map(String::as_str).collect::<Vec<_>>());
    let shutdown = CancellationToken::new();
    let tasks = [
        bus.spawn_consumer(opts(STREAM), refuse_all.clone(), shutdown.clone()),
        bus.spawn_consumer(opts(OTHER), refuse_all.clone(), shutdown.clone()),
    ];
    let publisher = bus.publisher();
    for n in 0..25 {
        let e = envelope(&format!("x{n}"), n);
        let stream = if n % 3 == 0 { OTHER } else { STREAM };
        publisher
            .publish(stream, &e.event_id, &e.encode_to_vec())
            .await?;
    }
    let dead = DeadLetters::new(bus, "g", [STREAM, OTHER]);
    eventually(Duration::from_secs(10), "25 dead letters", || async {
        Ok(dead.list(100, None).await?.len() == 25)
    })
    .await?;
    let all = dead.list(100, None).await?;
    let mut paged = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = dead.list(4, after.as_deref()).await?;
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 4);
        after = page.last().map(|v| v.id.clone());
        paged.extend(page);
    }
    assert_eq!(paged, all);
    let distinct: HashSet<&str> = paged.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(distinct.len(), 25);
    assert_eq!(paged.iter().filter(|v| v.stream == OTHER).count(), 9);
    assert!(paged.windows(2).all(|w| w[0].buried_at <= w[1].buried_at));
    shutdown.cancel();
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(5), t).await??;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_page_across_streams_on_redis() -> anyhow::Result<()> {
    let redis = RedisNs::new().await?;
    let bus = EventBus::redis(&retention_testkit::redis_url(), &redis.ns, 10_000, vec![])?;
    pages_cover_every_dead_letter(&bus, |stream| ConsumerOptions {
        stream: stream.to_string(),
        ..redis.opts("g", &format!("c-{stream}"))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_page_across_streams_in_process() -> anyhow::Result<()> {
    init_tracing();
    pages_cover_every_dead_letter(&EventBus::in_process(), |stream| {
        ConsumerOptions::new("", stream, "g", format!("c-{stream}"))
    })
    .await
}

/// A group's few dead letters behind many of another group's are still found,
/// page by page (the scan reads the shared dead-letter stream in chunks).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_groups_dead_letters_are_found_behind_many_of_another_group() -> anyhow::Result<()> {
    let redis = RedisNs::new().await?;
    let dlq = dead_letter_key(&redis.ns, STREAM);
    let mut pipe = redis::pipe();
    for n in 0..700 {
        let group = if n % 300 == 299 { "g" } else { "other" };
        let env = envelope(&format!("d{n}"), n);
        pipe.cmd("XADD")
            .arg(&dlq)
            .arg("*")
            .arg("envelope")
            .arg(env.encode_to_vec())
            .arg("id")
            .arg(&env.event_id)
            .arg("type")
            .arg(MERGED)
            .arg("reason")
            .arg("refused")
            .arg("original_id")
            .arg("1-1")
            .arg("group")
            .arg(group)
            .arg("consumer")
            .arg("c")
            .arg("deliveries")
            .arg(2)
            .ignore();
    }
    let mut conn = redis.conn.clone();
    pipe.query_async::<()>(&mut conn).await?;
    let bus = EventBus::redis(&retention_testkit::redis_url(), &redis.ns, 10_000, vec![])?;
    let dead = DeadLetters::new(&bus, "g", [STREAM]);
    let first = dead.list(1, None).await?;
    assert_eq!(ids(&first), vec!["d299"]);
    assert_eq!(first[0].deliveries, 2);
    assert_eq!(first[0].reason, "refused");
    let second = dead.list(1, Some(&first[0].id)).await?;
    assert_eq!(ids(&second), vec!["d599"]);
    assert!(dead.list(1, Some(&second[0].id)).await?.is_empty());
    assert_eq!(ids(&dead.list(10, None).await?), vec!["d299", "d599"]);
    Ok(())
}
