//! Tracing for every service: `tracing` spans bridged to OpenTelemetry, exported over
//! OTLP when an endpoint is configured, and W3C trace context carried across gRPC
//! metadata and event envelopes so one trace id connects a whole workflow.

use std::collections::HashMap;

pub mod metrics;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

pub use opentelemetry_sdk::trace::SdkTracerProvider as TracerProvider;

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("OTLP exporter could not be built: {0}")]
    Exporter(String),
    #[error("invalid log filter {0:?}: {1}")]
    Filter(String, String),
    #[error("a global subscriber is already installed")]
    AlreadyInstalled,
}

/// What `init` needs; mirrors `retention_config::TelemetrySettings` without the
/// dependency, so tools and tests can build one directly.
#[derive(Debug, Clone)]
pub struct TelemetryOptions {
    pub service_name: String,
    pub otlp_endpoint: Option<String>,
    pub log_filter: String,
    pub log_format: String,
}

/// How often metrics are pushed to the OTLP collector (a scrape reads them when
/// it comes).
const OTLP_METRICS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

/// Keeps the tracer provider alive; dropping it flushes pending spans.
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl TelemetryGuard {
    pub fn provider(&self) -> &SdkTracerProvider {
        &self.provider
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        metrics::shutdown();
        let _ = self.provider.force_flush();
        let _ = self.provider.shutdown();
    }
}

/// A provider exporting to the configured OTLP endpoint in batches; with no endpoint
/// spans still get real ids (so propagation works) but are only logged.
pub fn provider_from_options(opts: &TelemetryOptions) -> Result<SdkTracerProvider, TelemetryError> {
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(opts.service_name.clone())
        .with_attribute(KeyValue::new("service.namespace", "retention"))
        .build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    if let Some(endpoint) = opts.otlp_endpoint.as_deref().filter(|e| !e.is_empty()) {
        use opentelemetry_otlp::WithExportConfig;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()
            .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        builder = builder.with_batch_exporter(exporter);
    }
    Ok(builder.build())
}

/// Installs the global subscriber (env filter, log formatter, OpenTelemetry layer)
/// and the W3C trace-context propagator.
pub fn init(opts: &TelemetryOptions) -> Result<TelemetryGuard, TelemetryError> {
    let provider = provider_from_options(opts)?;
    metrics::install(
        &opts.service_name,
        opts.otlp_endpoint.as_deref(),
        OTLP_METRICS_INTERVAL,
    )?;
    init_with_provider(opts, provider)
}

/// As [`init`], with a caller-built provider (tests use an in-memory exporter).
pub fn init_with_provider(
    opts: &TelemetryOptions,
    provider: SdkTracerProvider,
) -> Result<TelemetryGuard, TelemetryError> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let filter = EnvFilter::try_new(&opts.log_filter)
        .map_err(|e| TelemetryError::Filter(opts.log_filter.clone(), e.to_string()))?;
    let tracer = provider.tracer(opts.service_name.clone());
    let otel = tracing_opentelemetry::layer().with_tracer(tracer);
    // Without a collector, span close lines are the "traces to stdout" of embedded mode.
    let span_events = if opts.otlp_endpoint.as_deref().unwrap_or("").is_empty() {
        FmtSpan::CLOSE
    } else {
        FmtSpan::NONE
    };
    let fmt = match opts.log_format.as_str() {
        "json" => tracing_subscriber::fmt::layer()
            .json()
            .with_span_events(span_events)
            .boxed(),
        "pretty" => tracing_subscriber::fmt::layer()
            .pretty()
            .with_span_events(span_events)
            .boxed(),
        _ => tracing_subscriber::fmt::layer()
            .compact()
            .with_span_events(span_events)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    opentelemetry::global::set_tracer_provider(provider.clone());
    Ok(TelemetryGuard { provider })
}

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(k, v);
        }
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The trace context carried by incoming HTTP/2 headers (`traceparent`, `tracestate`).
pub fn extract_from_headers(headers: &http::HeaderMap) -> Context {
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// Writes the current span's trace context into outgoing gRPC metadata.
pub fn inject_current(metadata: &mut tonic::metadata::MetadataMap) {
    let cx = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&cx, &mut MetadataInjector(metadata));
}

/// A tonic client interceptor that propagates the caller's trace to the callee.
pub fn propagate_trace(
    mut request: tonic::Request<()>,
) -> Result<tonic::Request<()>, tonic::Status> {
    inject_current(request.metadata_mut());
    Ok(request)
}

/// `(traceparent, tracestate)` of the current span, for event envelopes. Empty
/// strings when there is no valid trace.
pub fn current_traceparent() -> (String, String) {
    let cx = tracing::Span::current().context();
    let mut carrier: HashMap<String, String> = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    (
        carrier.remove("traceparent").unwrap_or_default(),
        carrier.remove("tracestate").unwrap_or_default(),
    )
}

/// The context an event's consumer continues: the producer's trace.
pub fn context_from_traceparent(traceparent: &str, tracestate: &str) -> Context {
    let mut carrier: HashMap<String, String> = HashMap::new();
    if !traceparent.is_empty() {
        carrier.insert("traceparent".into(), traceparent.to_string());
    }
    if !tracestate.is_empty() {
        carrier.insert("tracestate".into(), tracestate.to_string());
    }
    TraceContextPropagator::new().extract(&carrier)
}

/// Makes `span` a child of `parent` when `parent` carries a valid remote span.
pub fn set_parent(span: &tracing::Span, parent: Context) {
    if parent.span().span_context().is_valid() {
        // Fails only if the span was already started with another parent.
        let _ = span.set_parent(parent);
    }
}

/// Writes one audit record to the `audit` log target: who (the token subject) did
/// what (`action`, e.g. `customer.read_pii`) to which resources, when (Unix ms)
/// and in which trace. Records name resources, never PII values; operators route
/// the `audit` target to an append-only sink.
pub fn audit(who: &str, action: &str, resources: &[&str]) {
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    tracing::info!(
        target: "audit",
        who,
        action,
        resources = %resources.join(" "),
        at_unix_ms = at,
        trace_id = %current_trace_id().unwrap_or_default(),
        "audit"
    );
}

/// Hex trace id of the current span, if it is being traced (for logs and audit rows).
pub fn current_trace_id() -> Option<String> {
    let cx = tracing::Span::current().context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_through_a_carrier() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let cx = context_from_traceparent(tp, "");
        let sc = cx.span().span_context().clone();
        assert!(sc.is_valid());
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(sc.is_remote());
    }

    #[test]
    fn garbage_traceparent_gives_an_invalid_context() {
        let cx = context_from_traceparent("not-a-traceparent", "");
        assert!(!cx.span().span_context().is_valid());
    }

    #[test]
    fn headers_are_extracted() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
                .parse()
                .unwrap(),
        );
        let cx = extract_from_headers(&headers);
        assert_eq!(
            cx.span().span_context().trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
    }
}
