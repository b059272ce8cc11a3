//! Log redaction as a `tracing` layer that wraps every exporter.
//!
//! [`RedactionLayer`] wraps the layers that write logs or export traces (a formatter, a JSON
//! formatter, an OpenTelemetry layer): each event and span field is redacted before the
//! wrapped layers see it, so no exporter can bypass redaction. The binary composes the
//! subscriber; this library only offers the layer.
//!
//! Secrets are scoped: [`register_secrets`] attaches them to the current span (a session's
//! span), and they redact the events and spans inside it. They are dropped with the span
//! when the session ends, so the set never grows past what live sessions hold. Secrets of
//! the whole process (the runtime's token) are given to the layer itself.
//!
//! An event logged outside any span (by a task that was not instrumented with its
//! session's span) is redacted with the secrets of every open session instead.
//!
//! Spans carrying secrets are created at `ERROR` level so that a log filter which lets any
//! of the runtime's events through also keeps the spans whose secrets they may quote.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::{LookupSpan, Registry};

use crate::redact::Redactor;

/// The secrets attached to one span (a span extension of the [`Registry`]).
struct SpanSecrets(Redactor);

/// Whether a [`RedactionLayer`] is installed, which removes spans from [`live`] as they
/// close; without one, nothing is added there.
static LAYER_INSTALLED: AtomicBool = AtomicBool::new(false);

/// The secrets of every open span that has some, by span id: they redact events logged
/// outside any span (by a task its session did not instrument), so that such an event
/// cannot leak a live session's secret. Bounded by the open sessions.
fn live() -> &'static Mutex<HashMap<u64, Redactor>> {
    static LIVE: OnceLock<Mutex<HashMap<u64, Redactor>>> = OnceLock::new();
    LIVE.get_or_init(Mutex::default)
}

fn live_secrets() -> std::sync::MutexGuard<'static, HashMap<u64, Redactor>> {
    live()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Adds `secrets` to the current span: every event and span inside it is redacted with
/// them by a [`RedactionLayer`] until the span closes. Outside any span, or when the global
/// subscriber is not built on a [`Registry`], this does nothing.
pub fn register_secrets(secrets: &Redactor) {
    add_span_secrets(&tracing::Span::current(), secrets);
}

/// Adds `secrets` to `span` (see [`register_secrets`]).
pub fn add_span_secrets(span: &tracing::Span, secrets: &Redactor) {
    if secrets.is_empty() {
        return;
    }
    span.with_subscriber(|(id, dispatch)| {
        let Some(registry) = dispatch.downcast_ref::<Registry>() else {
            return;
        };
        let Some(data) = registry.span(id) else {
            return;
        };
        let mut extensions = data.extensions_mut();
        let merged = match extensions.get_mut::<SpanSecrets>() {
            Some(known) => {
                known.0 = known.0.union(secrets);
                known.0.clone()
            }
            None => {
                extensions.insert(SpanSecrets(secrets.clone()));
                secrets.clone()
            }
        };
        if LAYER_INSTALLED.load(Ordering::Relaxed) {
            live_secrets().insert(id.into_u64(), merged);
        }
    });
}

/// Wraps the layers that write or export, redacting everything they are given.
///
/// ```
/// use tracing_subscriber::prelude::*;
/// use runtimeuse_server::logging::RedactionLayer;
/// use runtimeuse_server::redact::Redactor;
///
/// let subscriber = tracing_subscriber::registry()
///     .with(RedactionLayer::new(tracing_subscriber::fmt::layer(), Redactor::new(["token"])));
/// tracing::subscriber::with_default(subscriber, || tracing::info!("no token here"));
/// ```
#[derive(Debug)]
pub struct RedactionLayer<L> {
    inner: L,
    global: Redactor,
}

impl<L> RedactionLayer<L> {
    /// Wraps `inner`; `global` is redacted everywhere, in or out of spans.
    pub fn new(inner: L, global: Redactor) -> Self {
        Self { inner, global }
    }

    /// The redactors in force for a scope: the global one and every span's; outside any
    /// span, those of every open span.
    fn redactors<'a, S>(&self, scope: impl Iterator<Item = SpanRefSecrets<'a, S>>) -> Vec<Redactor>
    where
        S: Subscriber + for<'l> LookupSpan<'l> + 'a,
    {
        let mut out: Vec<Redactor> = Vec::new();
        if !self.global.is_empty() {
            out.push(self.global.clone());
        }
        let mut in_a_span = false;
        for span in scope {
            in_a_span = true;
            if let Some(secrets) = span.extensions().get::<SpanSecrets>() {
                out.push(secrets.0.clone());
            }
        }
        if !in_a_span {
            out.extend(live_secrets().values().cloned());
        }
        out
    }
}

type SpanRefSecrets<'a, S> = tracing_subscriber::registry::SpanRef<'a, S>;

impl<S, L> Layer<S> for RedactionLayer<L>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    L: Layer<S>,
{
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        self.inner.on_register_dispatch(subscriber);
    }

    fn on_layer(&mut self, subscriber: &mut S) {
        LAYER_INSTALLED.store(true, Ordering::Relaxed);
        self.inner.on_layer(subscriber);
    }

    fn register_callsite(
        &self,
        metadata: &'static Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        self.inner.register_callsite(metadata)
    }

    fn enabled(&self, metadata: &Metadata<'_>, ctx: Context<'_, S>) -> bool {
        self.inner.enabled(metadata, ctx)
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let parent = if attrs.is_contextual() {
            ctx.lookup_current()
        } else {
            attrs.parent().and_then(|p| ctx.span(p))
        };
        let scope: Vec<_> = parent.map(|p| p.scope().collect()).unwrap_or_default();
        let redactors = self.redactors(scope.into_iter());
        let fields = RedactedFields::collect(attrs.metadata(), &redactors, |v| attrs.record(v));
        let values = fields.values();
        let set = attrs.metadata().fields().value_set_all(&values);
        let redacted = if attrs.is_contextual() {
            Attributes::new(attrs.metadata(), &set)
        } else if let Some(parent) = attrs.parent() {
            Attributes::child_of(parent.clone(), attrs.metadata(), &set)
        } else {
            Attributes::new_root(attrs.metadata(), &set)
        };
        self.inner.on_new_span(&redacted, id, ctx);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some((metadata, redactors)) = ctx
            .span(id)
            .map(|span| (span.metadata(), self.redactors(span.scope())))
        else {
            return;
        };
        let fields = RedactedFields::collect(metadata, &redactors, |v| values.record(v));
        let list = fields.values();
        let set = metadata.fields().value_set_all(&list);
        self.inner.on_record(id, &Record::new(&set), ctx);
    }

    fn on_follows_from(&self, span: &Id, follows: &Id, ctx: Context<'_, S>) {
        self.inner.on_follows_from(span, follows, ctx);
    }

    fn event_enabled(&self, event: &Event<'_>, ctx: Context<'_, S>) -> bool {
        self.inner.event_enabled(event, ctx)
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let redactors = self.redactors(ctx.event_scope(event).into_iter().flatten());
        let metadata = event.metadata();
        let fields = RedactedFields::collect(metadata, &redactors, |v| event.record(v));
        let values = fields.values();
        let set = metadata.fields().value_set_all(&values);
        let redacted = if event.is_contextual() {
            Event::new(metadata, &set)
        } else {
            Event::new_child_of(event.parent().cloned(), metadata, &set)
        };
        self.inner.on_event(&redacted, ctx);
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        self.inner.on_enter(id, ctx);
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        self.inner.on_exit(id, ctx);
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let had_secrets = ctx
            .span(&id)
            .is_some_and(|span| span.extensions().get::<SpanSecrets>().is_some());
        if had_secrets {
            live_secrets().remove(&id.into_u64());
        }
        self.inner.on_close(id, ctx);
    }

    fn on_id_change(&self, old: &Id, new: &Id, ctx: Context<'_, S>) {
        self.inner.on_id_change(old, new, ctx);
    }
}

/// One field's value after redaction. Numbers and booleans keep their type unless their
/// text holds a secret.
enum Redacted {
    Str(String),
    /// Debug-formatted text, re-emitted verbatim (no quotes added).
    Text(tracing::field::DisplayValue<String>),
    I64(i64),
    U64(u64),
    I128(i128),
    U128(u128),
    F64(f64),
    Bool(bool),
}

impl Redacted {
    fn as_value(&self) -> &dyn tracing::Value {
        match self {
            Redacted::Str(s) => s,
            Redacted::Text(t) => t,
            Redacted::I64(v) => v,
            Redacted::U64(v) => v,
            Redacted::I128(v) => v,
            Redacted::U128(v) => v,
            Redacted::F64(v) => v,
            Redacted::Bool(v) => v,
        }
    }
}

/// Every recorded field of one event or span, redacted, by field index.
struct RedactedFields<'r> {
    redactors: &'r [Redactor],
    slots: Vec<Option<Redacted>>,
}

impl<'r> RedactedFields<'r> {
    fn collect(
        metadata: &Metadata<'_>,
        redactors: &'r [Redactor],
        record: impl FnOnce(&mut dyn Visit),
    ) -> Self {
        let mut fields = Self {
            redactors,
            slots: (0..metadata.fields().len()).map(|_| None).collect(),
        };
        record(&mut fields);
        fields
    }

    fn values(&self) -> Vec<Option<&dyn tracing::Value>> {
        self.slots
            .iter()
            .map(|slot| slot.as_ref().map(Redacted::as_value))
            .collect()
    }

    fn redact(&self, text: &str) -> Option<String> {
        let mut changed: Option<String> = None;
        for r in self.redactors {
            let current = changed.as_deref().unwrap_or(text);
            if r.is_match(current) {
                changed = Some(r.redact(current));
            }
        }
        changed
    }

    fn put(&mut self, field: &Field, value: Redacted) {
        if let Some(slot) = self.slots.get_mut(field.index()) {
            *slot = Some(value);
        }
    }

    fn put_number(&mut self, field: &Field, text: String, typed: Redacted) {
        let value = match self.redact(&text) {
            Some(redacted) => Redacted::Text(tracing::field::display(redacted)),
            None => typed,
        };
        self.put(field, value);
    }
}

impl Visit for RedactedFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        let text = self.redact(value).unwrap_or_else(|| value.to_owned());
        self.put(field, Redacted::Str(text));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        let text = self.redact(&text).unwrap_or(text);
        self.put(field, Redacted::Text(tracing::field::display(text)));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let mut text = value.to_string();
        let mut source = value.source();
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        let text = self.redact(&text).unwrap_or(text);
        self.put(field, Redacted::Text(tracing::field::display(text)));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put_number(field, value.to_string(), Redacted::I64(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put_number(field, value.to_string(), Redacted::U64(value));
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.put_number(field, value.to_string(), Redacted::I128(value));
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.put_number(field, value.to_string(), Redacted::U128(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put_number(field, value.to_string(), Redacted::F64(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put_number(field, value.to_string(), Redacted::Bool(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::prelude::*;

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Capture {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn subscriber(capture: &Capture, global: Redactor) -> impl Subscriber + Send + Sync {
        let sink = capture.clone();
        let fmt = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(move || sink.clone());
        tracing_subscriber::registry().with(RedactionLayer::new(fmt, global))
    }

    #[test]
    fn span_secrets_redact_events_inside_the_span_only_while_it_lives() {
        let capture = Capture::default();
        tracing::subscriber::with_default(subscriber(&capture, Redactor::default()), || {
            {
                let session = tracing::error_span!("session", id = 1);
                let _entered = session.enter();
                register_secrets(&Redactor::new(["log-secret-xyz"]));
                let request = tracing::info_span!("request", source_id = "log-secret-xyz");
                let _in_request = request.enter();
                tracing::info!(
                    token = "log-secret-xyz",
                    n = 7,
                    "message with log-secret-xyz inside"
                );
            }
            // The session is gone, and its secrets with it.
            tracing::info!("after: log-secret-xyz");
        });
        let text = capture.text();
        let (during, after) = text.split_once("after:").unwrap();
        assert!(!during.contains("log-secret-xyz"), "{during}");
        assert!(
            during.contains("message with [REDACTED] inside") && during.contains("n=7"),
            "{during}"
        );
        assert!(during.contains("token=\"[REDACTED]\""), "{during}");
        assert!(during.contains("source_id=\"[REDACTED]\""), "{during}");
        assert!(after.contains("log-secret-xyz"), "{after}");
    }

    #[test]
    fn global_secrets_are_redacted_everywhere_and_numbers_too() {
        let capture = Capture::default();
        let global = Redactor::new(["TopToken", "424242"]);
        tracing::subscriber::with_default(subscriber(&capture, global), || {
            tracing::warn!(port = 424_242_u64, "auth with toptoken failed");
        });
        let text = capture.text();
        assert!(text.contains("auth with [REDACTED] failed"), "{text}");
        assert!(text.contains("port=[REDACTED]"), "{text}");
    }

    #[test]
    fn events_outside_any_span_are_redacted_with_every_open_sessions_secrets() {
        let capture = Capture::default();
        tracing::subscriber::with_default(subscriber(&capture, Redactor::default()), || {
            let session = tracing::error_span!("session", id = 3);
            session.in_scope(|| register_secrets(&Redactor::new(["orphan-secret-1"])));
            tracing::info!("orphan task says orphan-secret-1");
            drop(session);
            tracing::info!("later: orphan-secret-1");
        });
        let text = capture.text();
        assert!(text.contains("orphan task says [REDACTED]"), "{text}");
        assert!(text.contains("later: orphan-secret-1"), "{text}");
    }

    #[test]
    fn other_sessions_keep_their_own_secrets() {
        let capture = Capture::default();
        tracing::subscriber::with_default(subscriber(&capture, Redactor::default()), || {
            let a = tracing::error_span!("session", id = 1);
            let b = tracing::error_span!("session", id = 2);
            a.in_scope(|| register_secrets(&Redactor::new(["alpha-secret"])));
            b.in_scope(|| tracing::info!("b says alpha-secret"));
            a.in_scope(|| tracing::info!("a says alpha-secret"));
        });
        let text = capture.text();
        assert!(text.contains("b says alpha-secret"), "{text}");
        assert!(text.contains("a says [REDACTED]"), "{text}");
    }
}
