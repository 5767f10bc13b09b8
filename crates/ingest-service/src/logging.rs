//! Structured logs in Cloud Logging's JSON shape, one object per line on stdout:
//! `severity`, `message`, `time`, `logging.googleapis.com/trace` (from a `trace` field),
//! `logging.googleapis.com/sourceLocation`, and every field of the event and its spans.
//! ERROR events also carry Error Reporting's `@type` and `serviceContext`, so failed batches
//! show up in Cloud Error Reporting.

use std::io::Write;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Error Reporting's type for log entries that report an error.
pub const ERROR_REPORTING_TYPE: &str =
    "type.googleapis.com/google.devtools.clouderrorreporting.v1beta1.ReportedErrorEvent";

/// A [`Layer`] that writes Cloud Logging JSON lines to stdout.
#[derive(Debug, Clone)]
pub struct CloudLoggingLayer {
    project: Option<String>,
    service: String,
    version: String,
}

impl CloudLoggingLayer {
    /// `project` turns a `trace` field into `projects/P/traces/T`; `service` and `version` fill
    /// Error Reporting's `serviceContext`.
    pub fn new(project: Option<String>, service: String, version: String) -> Self {
        CloudLoggingLayer {
            project,
            service,
            version,
        }
    }

    /// The JSON object of one event (exposed for tests).
    pub fn entry(
        &self,
        level: &Level,
        target: &str,
        file: Option<&str>,
        line: Option<u32>,
        mut fields: Map<String, Value>,
    ) -> Map<String, Value> {
        let severity = match *level {
            Level::ERROR => "ERROR",
            Level::WARN => "WARNING",
            Level::INFO => "INFO",
            _ => "DEBUG",
        };
        let mut out = Map::new();
        out.insert("severity".into(), severity.into());
        let message = fields
            .remove("message")
            .unwrap_or(Value::String(String::new()));
        out.insert("message".into(), message);
        out.insert(
            "time".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into(),
        );
        if let Some(trace) = fields.remove("trace") {
            let trace = trace
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| trace.to_string());
            let full = match &self.project {
                Some(p) => format!("projects/{p}/traces/{trace}"),
                None => trace,
            };
            out.insert("logging.googleapis.com/trace".into(), full.into());
        }
        let mut location = Map::new();
        if let Some(f) = file {
            location.insert("file".into(), f.into());
        }
        if let Some(l) = line {
            location.insert("line".into(), l.to_string().into());
        }
        location.insert("function".into(), target.into());
        out.insert(
            "logging.googleapis.com/sourceLocation".into(),
            Value::Object(location),
        );
        if *level == Level::ERROR {
            out.insert("@type".into(), ERROR_REPORTING_TYPE.into());
            out.insert(
                "serviceContext".into(),
                serde_json::json!({"service": self.service, "version": self.version}),
            );
        }
        for (k, v) in fields {
            out.entry(k).or_insert(v);
        }
        out
    }
}

#[derive(Default)]
struct JsonFields(Map<String, Value>);

impl Visit for JsonFields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(
            field.name().to_string(),
            Value::String(format!("{value:?}")),
        );
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_string(), value.into());
    }
}

struct SpanFields(Map<String, Value>);

impl<S> Layer<S> for CloudLoggingLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        let mut fields = JsonFields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields.0));
        }
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: Context<'_, S>,
    ) {
        if let Some(span) = ctx.span(id) {
            let mut fields = JsonFields::default();
            values.record(&mut fields);
            let mut ext = span.extensions_mut();
            if let Some(existing) = ext.get_mut::<SpanFields>() {
                existing.0.extend(fields.0);
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = JsonFields::default();
        event.record(&mut fields);
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(f) = span.extensions().get::<SpanFields>() {
                    for (k, v) in &f.0 {
                        fields.0.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                }
            }
        }
        let meta = event.metadata();
        let entry = self.entry(
            meta.level(),
            meta.target(),
            meta.file(),
            meta.line(),
            fields.0,
        );
        if let Ok(line) = serde_json::to_string(&Value::Object(entry)) {
            let mut line = crate::redact::redact(&line).into_owned();
            line.push('\n');
            let _ = std::io::stdout().lock().write_all(line.as_bytes());
        }
    }
}

/// The level filter: `RUST_LOG` (default `info`), then the [`DEPENDENCY_CAPS`] of the crates
/// that see credentials, which replace any directive of the user's for the same crate.
///
/// [`DEPENDENCY_CAPS`]: crate::redact::DEPENDENCY_CAPS
pub fn filter() -> EnvFilter {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    for cap in crate::redact::DEPENDENCY_CAPS {
        if let Ok(directive) = cap.parse() {
            filter = filter.add_directive(directive);
        }
    }
    filter
}

/// Installs the global subscriber: Cloud Logging JSON when `json`, else human-readable lines
/// on stderr. The level filter is [`filter`]; every line is redacted
/// ([`crate::redact::redact`]).
pub fn init(json: bool, project: Option<String>, service: String) {
    let registry = tracing_subscriber::registry().with(filter());
    if json {
        let layer = CloudLoggingLayer::new(project, service, env!("CARGO_PKG_VERSION").to_string());
        let _ = registry.with(layer).try_init();
    } else {
        let writer = || crate::redact::RedactingWriter(std::io::stderr());
        let _ = registry
            .with(tracing_subscriber::fmt::layer().with_writer(writer))
            .try_init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_has_cloud_logging_shape() {
        let layer = CloudLoggingLayer::new(Some("p".into()), "bq-ingest".into(), "1".into());
        let mut fields = Map::new();
        fields.insert("message".into(), "batch failed".into());
        fields.insert("trace".into(), "abc".into());
        fields.insert("object".into(), "gs://b/ds/t/_SUCCESS".into());
        let e = layer.entry(&Level::ERROR, "ingest", Some("src/x.rs"), Some(7), fields);
        assert_eq!(e["severity"], "ERROR");
        assert_eq!(e["message"], "batch failed");
        assert_eq!(e["logging.googleapis.com/trace"], "projects/p/traces/abc");
        assert_eq!(e["@type"], ERROR_REPORTING_TYPE);
        assert_eq!(e["serviceContext"]["service"], "bq-ingest");
        assert_eq!(e["object"], "gs://b/ds/t/_SUCCESS");
        assert_eq!(e["logging.googleapis.com/sourceLocation"]["line"], "7");
        let info = layer.entry(&Level::WARN, "t", None, None, Map::new());
        assert_eq!(info["severity"], "WARNING");
        assert!(info.get("@type").is_none());
    }
}
