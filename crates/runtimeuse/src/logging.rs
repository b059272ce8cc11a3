//! The runtime's subscriber: a `RUST_LOG` filter, then redaction wrapping every exporter
//! (text or JSON lines on stderr, and OpenTelemetry traces when built with the `otel`
//! feature and `OTEL_EXPORTER_OTLP_ENDPOINT` is set).

use runtimeuse_server::logging::RedactionLayer;
use runtimeuse_server::redact::Redactor;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::cli::LogFormat;

/// A layer of the subscriber, boxed so that exporters can be chosen at run time.
pub type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// Keeps exporters running; dropping it flushes them (pending trace batches included).
#[must_use = "dropping the guard stops exporting"]
pub struct LogGuard {
    #[cfg(feature = "otel")]
    otel: Option<crate::otel::OtelGuard>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        #[cfg(feature = "otel")]
        if let Some(otel) = self.otel.take() {
            otel.shutdown();
        }
    }
}

/// Installs the global subscriber. `global` (the runtime's token) is redacted from every
/// line and span; sessions add their own secrets to their spans.
///
/// # Errors
///
/// When the OpenTelemetry exporter cannot be set up from its environment variables.
pub fn init(format: LogFormat, global: Redactor) -> anyhow::Result<LogGuard> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = format == LogFormat::Text && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let writer: BoxedLayer = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    #[cfg_attr(not(feature = "otel"), allow(unused_mut))]
    let mut exporters: Vec<BoxedLayer> = vec![writer];
    #[cfg(feature = "otel")]
    let otel = match crate::otel::layer()? {
        Some((layer, guard)) => {
            exporters.push(layer);
            Some(guard)
        }
        None => None,
    };
    // Installing twice (tests calling in) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(RedactionLayer::new(exporters, global).with_filter(filter))
        .try_init();
    Ok(LogGuard {
        #[cfg(feature = "otel")]
        otel,
    })
}
