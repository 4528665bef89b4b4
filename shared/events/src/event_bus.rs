//! [`EventBus`]: the bus a service runs on, so publishing and consuming are wired
//! the same way in production (Redis Streams) and embedded mode (in-process).

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::bus::{DEFAULT_MAX_LEN, InProcessBus};
use crate::bus_consumer::run_in_process;
use crate::consumer::{ConsumerOptions, RedisConsumer};
use crate::publisher::{GroupLag, Publisher, RedisPublisher};
use crate::{EventHandler, EventsError};

/// The bus a service runs on, so wiring is one code path: Redis Streams in
/// production, the in-process bus in embedded mode.
#[derive(Clone)]
pub enum EventBus {
    Redis {
        client: redis::Client,
        publisher: Box<RedisPublisher>,
    },
    InProcess(InProcessBus),
}

impl EventBus {
    /// Redis at `url` (connected lazily, so this works while Redis is down);
    /// streams prefixed with `namespace`. `groups` are the declared consumer
    /// groups per stream (see [`RedisPublisher::with_groups`]).
    pub fn redis(
        url: &str,
        namespace: &str,
        max_len: usize,
        groups: Vec<(String, Vec<String>)>,
    ) -> Result<Self, EventsError> {
        Ok(EventBus::Redis {
            client: redis::Client::open(url)?,
            publisher: Box::new(
                RedisPublisher::from_url(url, namespace, max_len)?.with_groups(groups),
            ),
        })
    }

    /// An in-process bus whose streams know only the groups that join them.
    pub fn in_process() -> Self {
        EventBus::InProcess(InProcessBus::new())
    }

    /// An in-process bus declaring the suite's default consumer groups: for one
    /// process running all four services (tests, tools).
    pub fn in_process_for_suite() -> Self {
        Self::in_process_declaring(&retention_config::Settings::defaults("suite", 0).events)
    }

    fn in_process_declaring(events: &retention_config::EventSettings) -> Self {
        let max_len = usize::try_from(events.stream_max_len).unwrap_or(usize::MAX);
        // In memory the bound is also the bus's footprint.
        let bus = InProcessBus::with_max_len(max_len.clamp(1, DEFAULT_MAX_LEN));
        for (stream, groups) in events.declared_groups() {
            bus.declare(&stream, &groups);
        }
        EventBus::InProcess(bus)
    }

    /// Redis when `redis.url` is set, with the consumer groups
    /// `events.consumer_groups` declares; else (embedded mode) an in-process bus
    /// for this service alone, which only the consumers of this process can
    /// read: they join it as they start.
    pub fn from_settings(settings: &retention_config::Settings) -> Result<Self, EventsError> {
        match settings.redis_url() {
            Some(url) => Self::redis(
                url,
                &settings.redis.namespace,
                usize::try_from(settings.events.stream_max_len).unwrap_or(usize::MAX),
                settings.events.declared_groups(),
            ),
            None => Ok(Self::in_process()),
        }
    }

    /// The bus of the all-in-one process: as [`from_settings`](Self::from_settings),
    /// but an in-process bus declares `events.consumer_groups` up front, since
    /// every consumer runs in this process; events published before a consumer
    /// started wait for it.
    pub fn for_suite(settings: &retention_config::Settings) -> Result<Self, EventsError> {
        match settings.redis_url() {
            Some(_) => Self::from_settings(settings),
            None => Ok(Self::in_process_declaring(&settings.events)),
        }
    }

    /// What one [`Relay`](crate::Relay) publishes through.
    pub fn publisher(&self) -> Arc<dyn Publisher> {
        match self {
            EventBus::Redis { publisher, .. } => Arc::new(publisher.as_ref().clone()),
            EventBus::InProcess(bus) => Arc::new(bus.publisher()),
        }
    }

    /// Each consumer group of `stream` (the `declared` ones, and any other the bus
    /// knows) and the entries it has not acknowledged.
    pub async fn group_lags(
        &self,
        stream: &str,
        declared: &[String],
    ) -> Result<Vec<GroupLag>, EventsError> {
        match self {
            EventBus::Redis { publisher, .. } => publisher.group_lags(stream, declared).await,
            EventBus::InProcess(bus) => {
                let mut lags = bus.lags(stream);
                for g in declared {
                    if !lags.iter().any(|l| &l.group == g) {
                        lags.push(GroupLag {
                            group: g.clone(),
                            lag: 0,
                            pending: 0,
                        });
                    }
                }
                Ok(lags)
            }
        }
    }

    /// Starts a consumer task for `opts` that stops on `shutdown`.
    pub fn spawn_consumer(
        &self,
        opts: ConsumerOptions,
        handler: Arc<dyn EventHandler>,
        shutdown: CancellationToken,
    ) -> JoinHandle<()> {
        match self {
            EventBus::Redis { client, .. } => {
                RedisConsumer::new(client.clone(), opts, handler).spawn(shutdown)
            }
            EventBus::InProcess(bus) => run_in_process(bus, opts, handler, shutdown),
        }
    }
}
