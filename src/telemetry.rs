//! Logs and OpenTelemetry traces for the `memoryd` binary.
//!
//! Logs go to stderr, filtered by `MEMORYD_LOG` (tracing `EnvFilter` syntax,
//! default `info`). With an OTLP endpoint (`memoryd serve --otlp-endpoint
//! http://127.0.0.1:4318`), spans are also exported as OTLP over HTTP/protobuf
//! (`opentelemetry-otlp`, batch exporter, to `<endpoint>/v1/traces`): one span
//! per HTTP request (`http.request`: method, route, status, namespace, key id,
//! agent id, body size) and, beneath it, one per engine operation
//! (`engine.*`: namespace, key id, agent id and the operation's sizes). Engine
//! spans are at `DEBUG` level, so without an exporter their call sites stay
//! disabled and cost nothing on the hot path; the exporter's own filter admits
//! `memoryd=debug`. Without an endpoint nothing is exported and no exporter
//! thread runs.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::core::error::{Error, Result};

/// The installed trace exporter; call [`Telemetry::shutdown`] before exit so
/// the last batch is sent.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Flushes and stops the exporter (a no-op without one).
    pub fn shutdown(self) {
        if let Some(p) = self.provider
            && let Err(e) = p.shutdown()
        {
            tracing::warn!(error = %e, "trace exporter shutdown failed");
        }
    }
}

/// A tracer provider exporting to `endpoint` (the collector's base URL, e.g.
/// `http://127.0.0.1:4318`; spans go to `<endpoint>/v1/traces`) with the
/// resource `service.name = memoryd`.
///
/// # Errors
/// [`Error::InvalidInput`] (field `otlp_endpoint`) when the exporter cannot be
/// built from the URL.
pub fn otlp_provider(endpoint: &str) -> Result<SdkTracerProvider> {
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(url)
        .build()
        .map_err(|e| Error::invalid("otlp_endpoint", e.to_string()))?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name("memoryd")
                .with_attribute(opentelemetry::KeyValue::new(
                    "service.version",
                    env!("CARGO_PKG_VERSION"),
                ))
                .build(),
        )
        .build())
}

/// Installs the global subscriber: stderr logs, plus span export through
/// `provider` when given.
///
/// # Errors
/// [`Error::InvalidInput`] when a subscriber is already installed.
pub fn init(provider: Option<SdkTracerProvider>, ansi: bool) -> Result<Telemetry> {
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_filter(
            tracing_subscriber::EnvFilter::try_from_env("MEMORYD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        );
    let traces = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("memoryd"))
            .with_filter(
                "memoryd=debug"
                    .parse::<tracing_subscriber::filter::Targets>()
                    .expect("a valid filter"),
            )
    });
    tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init()
        .map_err(|e| Error::invalid("telemetry", e.to_string()))?;
    Ok(Telemetry { provider })
}
