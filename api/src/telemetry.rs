//! Logs and instruments: `tracing` JSON logs with a request id on every request, and the
//! counters and histograms (the [`Instruments`]) that `GET /metrics` serves in the Prometheus
//! (OpenMetrics) text format. ("Metrics" alone, in this workspace, are the two business
//! figures of `hiring::metrics`.)

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tracing::Instrument;
use tracing_subscriber::EnvFilter;

use crate::guard::{REQUEST_ID, RequestId};
use crate::state::AppState;

/// Installs the global subscriber; `RUST_LOG` filters (default `info`). Logs are JSON unless
/// stderr is a terminal; `HIRING_LOG_FORMAT=text` or `json` overrides that (`cargo xtask dev`
/// asks for text when it shows the logs on a terminal).
pub fn init() {
    let terminal = std::io::stderr().is_terminal();
    let text = match std::env::var("HIRING_LOG_FORMAT").as_deref() {
        Ok("text") => true,
        Ok("json") => false,
        _ => terminal,
    };
    // PostgreSQL's notices ("relation … already exists, skipping") are not worth an info line.
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx::postgres::notice=warn"));
    init_with(std::io::stderr, filter, text, terminal);
}

/// Installs the global subscriber writing to `writer` through `filter` (tests capture the logs
/// this way); does nothing when one is installed already.
pub fn init_with<W>(writer: W, filter: EnvFilter, text: bool, ansi: bool)
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_ansi(ansi);
    // Every line logged while serving a request carries its `request_id` (the span's field).
    let _ = if text {
        builder.try_init()
    } else {
        builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init()
    };
}

/// Logs the settings the server starts with; secrets show as `[redacted]`.
pub fn log_settings(settings: &crate::config::Settings) {
    tracing::info!(
        settings = ?settings,
        writes = if settings.tokens.none_for(crate::auth::Scope::Write) {
            "disabled (read-only: no write token in HIRING_API_TOKENS or HIRING_API_TOKEN)"
        } else {
            "enabled"
        },
        public_metrics = settings.public_metrics,
        "settings"
    );
}

/// Labels of a request: the route's pattern (not the path, so ids do not make new series),
/// the method and the status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RowLabels {
    table: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectLabels {
    table: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabels {
    step: String,
}

fn latency_histogram() -> Histogram {
    // 1 ms to about 33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// The process's metrics.
pub struct Instruments {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RequestLabels, Histogram, fn() -> Histogram>,
    rows: Family<RowLabels, Counter>,
    rejects: Family<RejectLabels, Counter>,
    steps: Family<StepLabels, Histogram, fn() -> Histogram>,
}

impl std::fmt::Debug for Instruments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Instruments")
    }
}

impl Default for Instruments {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("hiring");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RequestLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        let rows = Family::<RowLabels, Counter>::default();
        let rejects = Family::<RejectLabels, Counter>::default();
        let steps = Family::<StepLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        registry.register("http_requests", "HTTP requests answered, by route, method and status", requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "Time to answer HTTP requests, by route, method and status",
            latency.clone(),
        );
        registry.register(
            "rows_ingested",
            "Rows loaded by this process, by table and outcome (inserted, updated, unchanged)",
            rows.clone(),
        );
        registry.register("rows_rejected", "Rows rejected by this process, by table and reason", rejects.clone());
        registry.register(
            "pipeline_step_duration_seconds",
            "Time of the pipeline's steps run by this process (validate, process, batch)",
            steps.clone(),
        );
        Instruments { registry: Mutex::new(registry), requests, latency, rows, rejects, steps }
    }
}

impl Instruments {
    /// Counts a load's rows.
    pub fn loaded(&self, report: &hiring::load::LoadReport) {
        let table = report.table.name();
        for (outcome, count) in
            [("inserted", report.inserted), ("updated", report.updated), ("unchanged", report.unchanged)]
        {
            if count > 0 {
                let labels = RowLabels { table: table.into(), outcome: outcome.into() };
                self.rows.get_or_create(&labels).inc_by(count.unsigned_abs());
            }
        }
    }

    /// Counts rejected rows of a table by reason.
    pub fn rejected(&self, table: hiring::table::Table, reason: &str, count: u64) {
        let labels = RejectLabels { table: table.name().into(), reason: reason.into() };
        self.rejects.get_or_create(&labels).inc_by(count);
    }

    /// Records how long a pipeline step took.
    pub fn step(&self, step: &str, started: Instant) {
        self.steps.get_or_create(&StepLabels { step: step.into() }).observe(started.elapsed().as_secs_f64());
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        let registry = self.registry.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        text
    }
}

/// The `method` label: the methods HTTP defines, and `other` for any other a client sends, so
/// a client cannot make new series (each label value is one more series to keep forever).
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::OPTIONS,
        Method::PATCH,
        Method::CONNECT,
        Method::TRACE,
    ]
    .into_iter()
    .zip(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE"])
    .find(|(known, _)| known == method)
    .map_or("other", |(_, label)| label)
}

/// For every request: takes or makes its id, echoes it in `X-Request-Id`, runs the handler in
/// a span that carries it (so every log line of the request has it), logs the method, route,
/// status and duration, and counts it. Headers (and so tokens) and query strings are never
/// logged.
pub async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let id = RequestId::of(&request);
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |m| m.as_str()).to_owned();
    let started = Instant::now();
    let span = tracing::info_span!("request", request_id = %id.0);
    let mut response = next.run(request).instrument(span.clone()).await;
    let elapsed = started.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    span.in_scope(|| tracing::info!(%method, path, route, status, millis = elapsed * 1e3, "request"));
    let labels = RequestLabels { route, method: method_label(&method).to_owned(), status };
    state.telemetry.requests.get_or_create(&labels).inc();
    state.telemetry.latency.get_or_create(&labels).observe(elapsed);
    if let Ok(value) = HeaderValue::from_str(&id.0) {
        response.headers_mut().insert(&REQUEST_ID, value);
    }
    response
}
