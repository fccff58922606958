//! W3C trace-context propagation over any string key/value carrier: HTTP and gRPC headers here,
//! NATS headers in `getlood-events`.

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Writes `traceparent` (and `tracestate`) of the current span into `carrier`.
pub fn inject_context(carrier: &mut dyn Injector) {
    let cx = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, carrier));
}

/// Reads the remote parent context from `carrier`.
pub fn extract_context(carrier: &dyn Extractor) -> Context {
    opentelemetry::global::get_text_map_propagator(|p| p.extract(carrier))
}

/// The `traceparent` value of the current span, if it has a valid context.
pub fn current_traceparent() -> Option<String> {
    let mut map = std::collections::HashMap::new();
    inject_context(&mut map);
    map.remove("traceparent")
}

/// Makes `span` a child of the trace named by `headers`' `traceparent`, if any.
pub fn set_parent_from_headers(span: &tracing::Span, headers: &http::HeaderMap) {
    let cx = extract_context(&HeaderExtractor(headers));
    let _ = span.set_parent(cx);
}

/// Adapts an `http::HeaderMap` (HTTP and gRPC metadata) for injection.
pub struct HeaderInjector<'a>(pub &'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) =
            (http::header::HeaderName::from_bytes(key.as_bytes()), http::header::HeaderValue::from_str(&value))
        {
            self.0.insert(name, value);
        }
    }
}

/// Adapts an `http::HeaderMap` (HTTP and gRPC metadata) for extraction.
pub struct HeaderExtractor<'a>(pub &'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}
