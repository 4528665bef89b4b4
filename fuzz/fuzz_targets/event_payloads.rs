//! Any bytes as an event on any stream of the suite (issue #19): the four
//! services run in this process on one in-process bus, as in `service_requests`,
//! and every input is one event published on a stream their consumers read,
//! which the run waits for until each consumer group of every stream has
//! applied it or buried it as a dead letter (`events.max_deliveries = 1`: a
//! failing event is dead-lettered at once, not retried with backoff).
//!
//! Input: the first byte's low two bits choose the stream (profile,
//! interactions, segmentation, winback) and its bit 2 the mode:
//! * 0 — an envelope built here: a fresh UUIDv7 `event_id`, the second byte
//!   choosing the `customer_id` among [`CUSTOMERS`] (so events of one customer
//!   meet), the third choosing the `event_type` among the event messages of the
//!   stream's package (those named `…Event` in `retention.<ctx>.v1`, from the
//!   compiled descriptor set), and the rest as the payload's value: any bytes,
//!   as `type.googleapis.com/<event_type>`. Missing bytes count as zero.
//! * 1 — the rest published as the envelope's bytes, as they are (an
//!   undecodable envelope must be dead-lettered, not crash a consumer).
//!
//! The dead letters are discarded after each input (a long run's memory stays
//! flat). A crash is a panic anywhere in a service (libfuzzer aborts on any panic,
//! whatever task it happens in, even one a consumer catches) or an event some
//! group has neither applied nor buried after 10 s.

#![no_main]

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant, SystemTime};

use libfuzzer_sys::fuzz_target;
use prost::Message;
use retention_events::{DeadLetters, EventBus, InProcessBus, MAX_DEAD_LETTER_PAGE, Publisher};
use retention_proto::common::EventEnvelope;

#[path = "suite.rs"]
mod suite;

use suite::SERVICES;

/// The customers built envelopes are about; the empty one is an event about no
/// customer.
const CUSTOMERS: [&str; 4] = [
    "01900000-0000-7000-8000-000000000001",
    "01900000-0000-7000-8000-000000000002",
    "01900000-0000-7000-8000-000000000003",
    "",
];

/// How long an event may take to be applied or buried by every group.
const DEADLINE: Duration = Duration::from_secs(10);

struct Stream {
    name: String,
    /// Fully qualified event message names of the stream's package, in
    /// declaration order.
    event_types: Vec<String>,
}

struct Fuzzed {
    suite: suite::Suite,
    bus: InProcessBus,
    publisher: Arc<dyn Publisher>,
    /// In the order of [`SERVICES`].
    streams: Vec<Stream>,
    /// Each consumer group's, emptied after every input so a long run's
    /// memory stays flat.
    dead_letters: Vec<DeadLetters>,
}

/// Each service's stream and the event messages its package declares.
fn streams() -> Vec<Stream> {
    let set = prost_types::FileDescriptorSet::decode(retention_proto::FILE_DESCRIPTOR_SET)
        .expect("the compiled descriptor set decodes");
    SERVICES
        .iter()
        .map(|ctx| {
            let package = format!("retention.{ctx}.v1");
            let event_types: Vec<String> = set
                .file
                .iter()
                .filter(|f| f.package() == package)
                .flat_map(|f| &f.message_type)
                .filter(|m| m.name().ends_with("Event"))
                .map(|m| format!("{package}.{}", m.name()))
                .collect();
            assert!(!event_types.is_empty(), "{package} declares no event");
            Stream {
                name: format!("retention.{ctx}.events"),
                event_types,
            }
        })
        .collect()
}

static FUZZED: LazyLock<Fuzzed> = LazyLock::new(|| {
    // The services' own streams, as their `Service::STREAM` names them.
    use retention_server::host::Service;
    let names = [
        retention_profile::Profile::STREAM,
        retention_interactions::Interactions::STREAM,
        retention_segmentation::Segmentation::STREAM,
        retention_winback::Winback::STREAM,
    ];
    let streams = streams();
    for (s, name) in streams.iter().zip(names) {
        assert_eq!(s.name, name, "the stream of a service");
    }
    let suite = suite::start("event-payloads-db", |s| s.events.max_deliveries = 1);
    let EventBus::InProcess(bus) = suite.bus.clone() else {
        unreachable!("the suite runs on the in-process bus")
    };
    let publisher = suite.bus.publisher();
    let events = retention_config::Settings::defaults("suite", 0).events;
    let groups: std::collections::BTreeSet<String> = events
        .declared_groups()
        .into_iter()
        .flat_map(|(_, groups)| groups)
        .collect();
    let dead_letters = groups
        .iter()
        .map(|g| DeadLetters::for_group(&suite.bus, &events, g))
        .collect();
    Fuzzed {
        suite,
        bus,
        publisher,
        streams,
        dead_letters,
    }
});

/// Waits until every group of `stream` has applied or buried all its entries;
/// the groups still behind at `deadline` if not.
fn drained(bus: &InProcessBus, stream: &str, deadline: Instant) -> Result<(), String> {
    let mut pause = Duration::from_micros(50);
    loop {
        let lags = bus.lags(stream);
        if lags.iter().all(|l| l.lag == 0) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(lags
                .iter()
                .filter(|l| l.lag > 0)
                .map(|l| format!("{} (lag {}, pending {})", l.group, l.lag, l.pending))
                .collect::<Vec<_>>()
                .join(", "));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(2));
    }
}

fuzz_target!(|data: &[u8]| {
    let fuzzed = &*FUZZED;
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let stream = &fuzzed.streams[usize::from(pick & 3)];
    let event_id = uuid::Uuid::now_v7().to_string();
    let (event_type, envelope) = if pick & 4 != 0 {
        ("raw envelope".to_string(), rest.to_vec())
    } else {
        let byte = |i: usize| usize::from(rest.get(i).copied().unwrap_or(0));
        let customer_id = CUSTOMERS[byte(0) % CUSTOMERS.len()];
        let event_type = stream.event_types[byte(1) % stream.event_types.len()].clone();
        let envelope = EventEnvelope {
            event_id: event_id.clone(),
            event_type: event_type.clone(),
            occurred_at: Some(prost_types::Timestamp::from(SystemTime::now())),
            customer_id: customer_id.to_string(),
            source: SERVICES[usize::from(pick & 3)].to_string(),
            payload: Some(prost_types::Any {
                type_url: format!("type.googleapis.com/{event_type}"),
                value: rest.get(2..).unwrap_or_default().to_vec(),
            }),
            ..Default::default()
        };
        (event_type, envelope.encode_to_vec())
    };
    fuzzed
        .suite
        .runtime
        .block_on(fuzzed.publisher.publish(&stream.name, &event_id, &envelope))
        .expect("the in-process bus takes the event");
    let deadline = Instant::now() + DEADLINE;
    if let Err(behind) = drained(&fuzzed.bus, &stream.name, deadline) {
        panic!(
            "{event_type} on {} neither applied nor buried after {DEADLINE:?} by {behind}",
            stream.name
        );
    }
    // And what the consumers published in turn, as far as it is out already.
    for other in &fuzzed.streams {
        if let Err(behind) = drained(&fuzzed.bus, &other.name, deadline) {
            panic!(
                "after {event_type} on {}: {} not drained after {DEADLINE:?} by {behind}",
                stream.name, other.name
            );
        }
    }
    fuzzed.suite.runtime.block_on(async {
        for dead in &fuzzed.dead_letters {
            loop {
                let page = dead.list(MAX_DEAD_LETTER_PAGE, None).await.unwrap();
                if page.is_empty() {
                    break;
                }
                for letter in page {
                    dead.discard(&letter.id).await.unwrap();
                }
            }
        }
    });
});
