//! OpenTelemetry trace export (feature `otel`): when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, sessions and requests are exported as
//! spans over OTLP/HTTP (protobuf), batched on the SDK's own thread. The other standard
//! `OTEL_*` variables (headers, timeout, service name, batch sizes) apply as usual.
//!
//! The layer is one of the exporters wrapped by the redaction layer, so what it exports
//! is redacted like the log lines.

use anyhow::Context;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer;

use crate::logging::BoxedLayer;

/// Variables that turn the export on.
const ENDPOINT_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
];

/// Keeps the tracer provider; [`shutdown`](Self::shutdown) flushes pending spans.
pub struct OtelGuard(SdkTracerProvider);

impl OtelGuard {
    /// Exports what is pending and stops the exporter.
    pub fn shutdown(self) {
        if let Err(e) = self.0.shutdown() {
            eprintln!("runtimeuse: exporting the last traces failed: {e}");
        }
    }
}

/// The OpenTelemetry layer and its guard, or `None` when no endpoint is configured.
///
/// # Errors
///
/// When the exporter cannot be built from the `OTEL_*` variables (a malformed endpoint).
pub fn layer() -> anyhow::Result<Option<(BoxedLayer, OtelGuard)>> {
    let configured = ENDPOINT_VARS
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()));
    if !configured {
        return Ok(None);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .context("setting up the OTLP trace exporter from OTEL_EXPORTER_OTLP_*")?;
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("runtimeuse");
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    let tracer = provider.tracer("runtimeuse");
    let layer = tracing_opentelemetry::layer().with_tracer(tracer).boxed();
    Ok(Some((layer, OtelGuard(provider))))
}
