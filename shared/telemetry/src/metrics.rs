//! Metrics: OpenTelemetry instruments, read on demand by a Prometheus scrape
//! (the admin port's `/metrics`, see `retention_server::admin`) and pushed over
//! OTLP when a collector is configured.
//!
//! There is one meter provider per process: the all-in-one binary's four
//! services share it, as they share one admin port. Instruments come from
//! [`meter`]; one created before [`install`] records nothing, so the host
//! installs the provider before it builds a service.
//!
//! Names follow the OpenTelemetry semantic conventions (`rpc.server.duration`)
//! or `retention.*`; [`render`] writes them the way the OpenTelemetry
//! Prometheus compatibility rules say: dots to underscores, the unit as a
//! suffix (`_milliseconds`, `_seconds`), `_total` on counters, resource
//! attributes on `target_info`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::Meter;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::{
    AggregatedMetrics, HistogramDataPoint, Metric, MetricData, ResourceMetrics,
};
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{
    InstrumentKind, ManualReader, Pipeline, SdkMeterProvider, Temporality,
};

use crate::TelemetryError;

/// What a service needs to make and feed its own instruments, without a
/// dependency of its own on the OpenTelemetry crates.
pub use opentelemetry::KeyValue as Attribute;
pub use opentelemetry::metrics::{Counter, Gauge, Histogram, ObservableCounter};

/// The instrumentation scope of every instrument of the suite.
const SCOPE: &str = "retention";

struct Installed {
    provider: SdkMeterProvider,
    reader: Arc<ManualReader>,
}

static INSTALLED: OnceLock<Installed> = OnceLock::new();

/// The scrape reader, shared between the provider (which owns its readers) and
/// [`render`].
#[derive(Debug, Clone)]
struct SharedReader(Arc<ManualReader>);

impl MetricReader for SharedReader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline)
    }
    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }
    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0.temporality(kind)
    }
}

/// Installs the process's meter provider: the scrape reader always, an OTLP
/// exporter every `otlp_interval` when `otlp_endpoint` is set. Later calls
/// change nothing (the first service of a process configures it).
pub fn install(
    service_name: &str,
    otlp_endpoint: Option<&str>,
    otlp_interval: Duration,
) -> Result<(), TelemetryError> {
    if INSTALLED.get().is_some() {
        return Ok(());
    }
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service_name.to_string())
        .with_attribute(KeyValue::new("service.namespace", "retention"))
        .build();
    let reader = Arc::new(ManualReader::builder().build());
    let mut builder = SdkMeterProvider::builder()
        .with_resource(resource)
        .with_reader(SharedReader(reader.clone()));
    if let Some(endpoint) = otlp_endpoint.filter(|e| !e.is_empty()) {
        use opentelemetry_otlp::WithExportConfig;
        let exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()
            .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        let periodic = opentelemetry_sdk::metrics::PeriodicReader::builder(exporter)
            .with_interval(otlp_interval)
            .build();
        builder = builder.with_reader(periodic);
    }
    let provider = builder.build();
    if INSTALLED
        .set(Installed {
            provider: provider.clone(),
            reader,
        })
        .is_ok()
    {
        opentelemetry::global::set_meter_provider(provider);
    }
    Ok(())
}

static RECORDING: AtomicBool = AtomicBool::new(true);

/// Whether [`install`] ran in this process.
pub fn installed() -> bool {
    INSTALLED.get().is_some()
}

/// Whether the per-call and per-event instruments record: installed and not
/// switched off with [`set_recording`].
pub fn recording() -> bool {
    installed() && RECORDING.load(Ordering::Relaxed)
}

/// Switches the per-call and per-event recording on or off at run time, so a
/// benchmark can measure what it costs in one process (rounds alternating).
pub fn set_recording(on: bool) {
    RECORDING.store(on, Ordering::Relaxed);
}

/// The suite's meter (a no-op one until [`install`]).
pub fn meter() -> Meter {
    opentelemetry::global::meter(SCOPE)
}

/// Pushes what the OTLP exporter has not sent yet and stops the provider.
pub fn shutdown() {
    if let Some(i) = INSTALLED.get() {
        let _ = i.provider.force_flush();
        let _ = i.provider.shutdown();
    }
}

/// Everything recorded so far in the Prometheus text exposition format
/// (version 0.0.4); only `target_info` of an empty process when nothing is
/// installed.
pub fn render() -> String {
    let mut rm = ResourceMetrics::default();
    if let Some(i) = INSTALLED.get()
        && let Err(e) = i.reader.collect(&mut rm)
    {
        tracing::warn!(error = %e, "metrics not collected");
    }
    encode(&rm)
}

/// One metric family of the exposition: its type and help, then its samples.
#[derive(Default)]
struct Family {
    kind: &'static str,
    help: String,
    samples: String,
}

/// Writes `rm` in the Prometheus text format. Families with the same name from
/// different scopes are merged; the output is sorted by family name.
pub fn encode(rm: &ResourceMetrics) -> String {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for scope in rm.scope_metrics() {
        for metric in scope.metrics() {
            add_metric(&mut families, metric);
        }
    }
    let mut out = String::new();
    let mut info: Vec<(String, String)> = rm
        .resource()
        .iter()
        .map(|(k, v)| (label_name(k.as_str()), v.to_string()))
        .collect();
    info.sort();
    out.push_str("# HELP target_info Target metadata\n# TYPE target_info gauge\n");
    out.push_str("target_info");
    write_labels(&mut out, &info, None);
    out.push_str(" 1\n");
    for (name, f) in families {
        if f.samples.is_empty() {
            continue;
        }
        let _ = writeln!(out, "# HELP {name} {}", escape_help(&f.help));
        let _ = writeln!(out, "# TYPE {name} {}", f.kind);
        out.push_str(&f.samples);
    }
    out
}

fn add_metric(families: &mut BTreeMap<String, Family>, metric: &Metric) {
    let base = family_name(metric.name(), metric.unit());
    match metric.data() {
        AggregatedMetrics::F64(d) => add_data(families, &base, metric.description(), d, |v| v),
        AggregatedMetrics::U64(d) => {
            add_data(families, &base, metric.description(), d, |v| v as f64)
        }
        AggregatedMetrics::I64(d) => {
            add_data(families, &base, metric.description(), d, |v| v as f64)
        }
    }
}

fn add_data<T: Copy>(
    families: &mut BTreeMap<String, Family>,
    base: &str,
    help: &str,
    data: &MetricData<T>,
    to_f64: impl Fn(T) -> f64,
) {
    let (name, kind) = match data {
        MetricData::Sum(s) if s.is_monotonic() => (format!("{base}_total"), "counter"),
        MetricData::Sum(_) | MetricData::Gauge(_) => (base.to_string(), "gauge"),
        MetricData::Histogram(_) => (base.to_string(), "histogram"),
        // Not configured anywhere in the suite (no view asks for one).
        MetricData::ExponentialHistogram(_) => return,
    };
    let family = families.entry(name.clone()).or_insert_with(|| Family {
        kind,
        help: help.to_string(),
        samples: String::new(),
    });
    if family.kind != kind {
        tracing::warn!(metric = %name, "metric family with two types; the second is left out");
        return;
    }
    let out = &mut family.samples;
    match data {
        MetricData::Sum(s) => {
            for p in s.data_points() {
                sample(out, &name, &labels(p.attributes()), None, to_f64(p.value()));
            }
        }
        MetricData::Gauge(g) => {
            for p in g.data_points() {
                sample(out, &name, &labels(p.attributes()), None, to_f64(p.value()));
            }
        }
        MetricData::Histogram(h) => {
            for p in h.data_points() {
                histogram(out, &name, p, &to_f64);
            }
        }
        MetricData::ExponentialHistogram(_) => {}
    }
}

fn histogram<T: Copy>(
    out: &mut String,
    name: &str,
    p: &HistogramDataPoint<T>,
    to_f64: &impl Fn(T) -> f64,
) {
    let labels = labels(p.attributes());
    let bucket = format!("{name}_bucket");
    let mut cumulative = 0u64;
    let counts: Vec<u64> = p.bucket_counts().collect();
    for (i, bound) in p.bounds().enumerate() {
        cumulative += counts.get(i).copied().unwrap_or(0);
        sample(
            out,
            &bucket,
            &labels,
            Some(&number(bound)),
            cumulative as f64,
        );
    }
    sample(out, &bucket, &labels, Some("+Inf"), p.count() as f64);
    sample(out, &format!("{name}_sum"), &labels, None, to_f64(p.sum()));
    sample(
        out,
        &format!("{name}_count"),
        &labels,
        None,
        p.count() as f64,
    );
}

fn labels<'a>(attrs: impl Iterator<Item = &'a KeyValue>) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = attrs
        .map(|kv| (label_name(kv.key.as_str()), kv.value.to_string()))
        .collect();
    v.sort();
    v
}

fn sample(out: &mut String, name: &str, labels: &[(String, String)], le: Option<&str>, v: f64) {
    out.push_str(name);
    write_labels(out, labels, le);
    out.push(' ');
    out.push_str(&number(v));
    out.push('\n');
}

fn write_labels(out: &mut String, labels: &[(String, String)], le: Option<&str>) {
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    let le = le.map(|v| ("le".to_string(), v.to_string()));
    for (k, v) in labels.iter().chain(le.iter()) {
        if !first {
            out.push(',');
        }
        first = false;
        let _ = write!(out, "{k}=\"{}\"", escape_label(v));
    }
    out.push('}');
}

/// A sample value as Prometheus reads it (`+Inf`, `-Inf`, `NaN` spelled its way).
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// The Prometheus name of an OpenTelemetry metric: `[a-zA-Z_:][a-zA-Z0-9_:]*`,
/// with its unit as a suffix (annotations in braces, e.g. `{event}`, dropped).
pub fn family_name(name: &str, unit: &str) -> String {
    let mut n = sanitize(name, true);
    let unit = unit_suffix(unit);
    if !unit.is_empty() && !n.ends_with(&format!("_{unit}")) {
        n.push('_');
        n.push_str(&unit);
    }
    n
}

fn unit_suffix(unit: &str) -> String {
    let plain: String = {
        let mut s = String::new();
        let mut depth = 0;
        for c in unit.chars() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                _ if depth == 0 => s.push(c),
                _ => {}
            }
        }
        s
    };
    match plain.as_str() {
        "" | "1" => String::new(),
        "ms" => "milliseconds".into(),
        "s" => "seconds".into(),
        "us" => "microseconds".into(),
        "By" => "bytes".into(),
        other => sanitize(other, false),
    }
}

fn label_name(key: &str) -> String {
    sanitize(key, false)
}

fn sanitize(s: &str, colons: bool) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || (colons && c == ':') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.chars().next().is_none_or(|c| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

fn escape_label(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', r"\\").replace('\n', r"\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::metrics::MeterProvider as _;

    fn provider() -> (SdkMeterProvider, Arc<ManualReader>) {
        let reader = Arc::new(ManualReader::builder().build());
        let provider = SdkMeterProvider::builder()
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name("retention-test")
                    .build(),
            )
            .with_reader(SharedReader(reader.clone()))
            .build();
        (provider, reader)
    }

    fn scrape(reader: &ManualReader) -> String {
        let mut rm = ResourceMetrics::default();
        reader.collect(&mut rm).unwrap();
        encode(&rm)
    }

    #[test]
    fn names_follow_the_prometheus_compatibility_rules() {
        assert_eq!(
            family_name("rpc.server.duration", "ms"),
            "rpc_server_duration_milliseconds"
        );
        assert_eq!(
            family_name("retention.outbox.backlog", "{event}"),
            "retention_outbox_backlog"
        );
        assert_eq!(
            family_name("retention.outbox.oldest_age", "s"),
            "retention_outbox_oldest_age_seconds"
        );
        assert_eq!(family_name("9lives", "1"), "_9lives");
    }

    #[test]
    fn a_counter_a_gauge_and_a_histogram_are_written_as_prometheus_reads_them() {
        let (provider, reader) = provider();
        let meter = provider.meter("retention");
        let calls = meter.u64_counter("retention.test.calls").build();
        calls.add(2, &[KeyValue::new("method", "Get\"Customer")]);
        calls.add(1, &[KeyValue::new("method", "Get\"Customer")]);
        let backlog = meter
            .u64_gauge("retention.test.backlog")
            .with_unit("{event}")
            .build();
        backlog.record(7, &[]);
        let h = meter
            .f64_histogram("rpc.server.duration")
            .with_unit("ms")
            .with_boundaries(vec![1.0, 10.0])
            .build();
        h.record(0.5, &[KeyValue::new("rpc.method", "A")]);
        h.record(5.0, &[KeyValue::new("rpc.method", "A")]);
        h.record(50.0, &[KeyValue::new("rpc.method", "A")]);
        let text = scrape(&reader);
        assert!(text.ends_with('\n'));
        assert!(
            text.contains("target_info{service_name=\"retention-test\""),
            "{text}"
        );
        assert!(text.contains("# TYPE retention_test_calls_total counter\n"));
        assert!(text.contains("retention_test_calls_total{method=\"Get\\\"Customer\"} 3\n"));
        assert!(text.contains("# TYPE retention_test_backlog gauge\nretention_test_backlog 7\n"));
        for line in [
            "# TYPE rpc_server_duration_milliseconds histogram",
            "rpc_server_duration_milliseconds_bucket{rpc_method=\"A\",le=\"1\"} 1",
            "rpc_server_duration_milliseconds_bucket{rpc_method=\"A\",le=\"10\"} 2",
            "rpc_server_duration_milliseconds_bucket{rpc_method=\"A\",le=\"+Inf\"} 3",
            "rpc_server_duration_milliseconds_sum{rpc_method=\"A\"} 55.5",
            "rpc_server_duration_milliseconds_count{rpc_method=\"A\"} 3",
        ] {
            assert!(
                text.contains(&format!("{line}\n")),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
