//! The Rust client's `tracing` lines, routed to the Python `logging.Logger` of the call
//! that produced them.
//!
//! Each native call runs inside a `runtimeuse_python` span carrying a route: the call's
//! logger, its effective level at the start of the call, and the bridge of the caller's
//! loop. The client's own spans and tasks nest under it, so every event they emit finds
//! the route up its scope. An event at or above the logger's level is formatted on the
//! thread that emitted it and handed, as a string, to the loop thread, which calls
//! `logger.log(level, ...)`: like every result, a log line never makes a Tokio thread touch
//! the interpreter (see [`crate::bridge`]). Lines outside any call are dropped.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use pyo3::prelude::*;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;

use crate::bridge::{BridgeQueue, LoopBridge};

/// Name of the span that carries a route.
const ROUTE_SPAN: &str = "runtimeuse_python";

/// Where the lines of one call go.
struct Route {
    logger: Arc<Py<PyAny>>,
    /// The most verbose level the logger wanted when the call started.
    level: Level,
    queue: Arc<BridgeQueue>,
}

/// Routes made by [`call_span`], waiting for their span's `on_new_span`.
static PENDING: Mutex<Option<HashMap<u64, Route>>> = Mutex::new(None);
static NEXT_ROUTE: AtomicU64 = AtomicU64::new(1);
/// The most verbose level any route asked for so far (a `tracing::Level` as 0 = off,
/// 1 = ERROR … 5 = TRACE); quieter events are discarded before any formatting.
static MAX_VERBOSITY: AtomicUsize = AtomicUsize::new(0);

/// Installs the routing subscriber for this process (once; a no-op if the host already
/// installed one, in which case that one receives the lines instead).
pub(crate) fn install() {
    let _ =
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(PythonLogs));
}

/// A span routing the lines of the call made while it is entered to `logger`.
pub(crate) fn call_span(
    py: Python<'_>,
    bridge: &LoopBridge,
    logger: Py<PyAny>,
) -> PyResult<tracing::Span> {
    let python_level: i64 = logger
        .bind(py)
        .call_method0(pyo3::intern!(py, "getEffectiveLevel"))?
        .extract()?;
    let Some(level) = tracing_level(python_level) else {
        return Ok(tracing::Span::none());
    };
    let verbosity = verbosity(level);
    if MAX_VERBOSITY.fetch_max(verbosity, Ordering::SeqCst) < verbosity {
        // Callsites disabled under the previous maximum are asked again.
        tracing::callsite::rebuild_interest_cache();
    }
    let id = NEXT_ROUTE.fetch_add(1, Ordering::Relaxed);
    PENDING
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get_or_insert_with(HashMap::new)
        .insert(
            id,
            Route {
                logger: Arc::new(logger),
                level,
                queue: bridge.queue(),
            },
        );
    let span = tracing::error_span!(ROUTE_SPAN, route = id);
    // A span the subscriber did not take (another subscriber is installed) leaves its
    // route behind: drop it.
    PENDING
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get_or_insert_with(HashMap::new)
        .remove(&id);
    Ok(span)
}

/// Python's numeric level as the most verbose `tracing` level it lets through; `None`
/// when it lets nothing through (above CRITICAL).
fn tracing_level(python_level: i64) -> Option<Level> {
    Some(match python_level {
        i64::MIN..=5 => Level::TRACE,
        6..=10 => Level::DEBUG,
        11..=20 => Level::INFO,
        21..=30 => Level::WARN,
        31..=50 => Level::ERROR,
        _ => return None,
    })
}

fn python_level(level: Level) -> i64 {
    match level {
        Level::TRACE => 5,
        Level::DEBUG => 10,
        Level::INFO => 20,
        Level::WARN => 30,
        _ => 40,
    }
}

fn verbosity(level: Level) -> usize {
    match level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        _ => 5,
    }
}

struct PythonLogs;

impl<S> Layer<S> for PythonLogs
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn enabled(&self, metadata: &Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        metadata.name() == ROUTE_SPAN
            || verbosity(*metadata.level()) <= MAX_VERBOSITY.load(Ordering::Relaxed)
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != ROUTE_SPAN {
            return;
        }
        let mut visitor = RouteId(None);
        attrs.record(&mut visitor);
        let route = visitor.0.and_then(|route| {
            PENDING
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_mut()
                .and_then(|pending| pending.remove(&route))
        });
        if let (Some(route), Some(span)) = (route, ctx.span(id)) {
            span.extensions_mut().insert(route);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(scope) = ctx.event_scope(event) else {
            return;
        };
        for span in scope {
            let extensions = span.extensions();
            let Some(route) = extensions.get::<Route>() else {
                continue;
            };
            let level = *event.metadata().level();
            if level > route.level {
                return;
            }
            let mut text = Message::default();
            event.record(&mut text);
            let line = format!(
                "{}: {}{}",
                event.metadata().target(),
                text.message,
                text.fields
            );
            let logger = Arc::clone(&route.logger);
            route.queue.run_on_loop(Box::new(move |py| {
                logger
                    .bind(py)
                    .call_method1(pyo3::intern!(py, "log"), (python_level(level), "%s", line))?;
                Ok(())
            }));
            return;
        }
    }
}

/// Reads the `route` field of a route span.
struct RouteId(Option<u64>);

impl Visit for RouteId {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "route" {
            self.0 = Some(value);
        }
    }

    fn record_debug(&mut self, _field: &Field, _value: &dyn std::fmt::Debug) {}
}

/// An event as one line: its message, then its other fields as ` name=value`.
#[derive(Default)]
struct Message {
    message: String,
    fields: String,
}

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}
