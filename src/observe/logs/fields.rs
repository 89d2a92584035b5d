//! Field values as JSON, for events and for the spans around them: a span's fields are kept
//! in the span itself ([`SpanFields`]), so every line logged inside a request's span carries
//! its request id and trace, whichever module logs it and whichever task it runs in.

use serde_json::{Map, Number, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// A span's fields, as recorded so far.
#[derive(Clone, Debug, Default)]
pub struct SpanFields(pub Map<String, Value>);

/// Records every span's fields into its [`SpanFields`].
#[derive(Clone, Copy, Debug, Default)]
pub struct RecordSpanFields;

impl<S> Layer<S> for RecordSpanFields
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut fields = Collect::default();
        attrs.record(&mut fields);
        span.extensions_mut().insert(SpanFields(fields.0));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut extensions = span.extensions_mut();
        if let Some(SpanFields(fields)) = extensions.get_mut::<SpanFields>() {
            let mut collect = Collect(std::mem::take(fields));
            values.record(&mut collect);
            *fields = collect.0;
        }
    }
}

/// Collects fields as JSON values: numbers and booleans as themselves, everything else as the
/// text it displays (`%value`) or debugs (`?value`) to. A field declared but never recorded
/// (`tracing::field::Empty`) is absent.
#[derive(Debug, Default)]
pub struct Collect(pub Map<String, Value>);

impl Collect {
    fn put(&mut self, field: &Field, value: Value) {
        self.0.insert(field.name().to_owned(), value);
    }
}

impl Visit for Collect {
    fn record_f64(&mut self, field: &Field, value: f64) {
        let number = Number::from_f64(value).map_or(Value::Null, Value::Number);
        self.put(field, number);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::from(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::from(value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, Value::from(format!("{value:?}")));
    }
}
