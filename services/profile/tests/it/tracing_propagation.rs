//! W3C trace context crosses the gRPC call: the server's span continues the
//! client's trace.

use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use retention_proto::profile as pb;
use retention_proto::profile::customer_profile_service_client::CustomerProfileServiceClient;
use retention_testkit::Backend;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

use crate::harness::*;

#[tokio::test]
async fn trace_context_crosses_a_grpc_call() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let mut app = TestApp::spawn(Backend::Sqlite).await;
    let c = app.create("Traced").await;

    let channel = app.service.as_ref().unwrap().channel().await.unwrap();
    let mut client = CustomerProfileServiceClient::with_interceptor(
        channel,
        retention_telemetry::propagate_trace,
    );
    let client_span = tracing::info_span!("client_call");
    let client_ctx = client_span.context();
    let trace_id = client_ctx.span().span_context().trace_id();
    let client_span_id = client_ctx.span().span_context().span_id();
    let req = app.req(pb::GetCustomerRequest {
        name: c.name.clone(),
    });
    client
        .get_customer(req)
        .instrument(client_span.clone())
        .await
        .unwrap();
    drop(client_span);
    app.stop().await;
    provider.force_flush().unwrap();

    let spans = exporter.get_finished_spans().unwrap();
    let server: Vec<_> = spans
        .iter()
        .filter(|s| s.span_context.trace_id() == trace_id && s.name != "client_call")
        .collect();
    assert!(
        !server.is_empty(),
        "a server span continued trace {trace_id}; spans: {:?}",
        spans
            .iter()
            .map(|s| (s.name.clone(), s.span_context.trace_id()))
            .collect::<Vec<_>>()
    );
    assert!(
        server.iter().any(|s| s.parent_span_id == client_span_id),
        "the server's request span is a child of the client span"
    );
}
