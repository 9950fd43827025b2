//! The HTTP endpoints, on axum: `/metrics`, `/healthz`, `/readyz`, and a read-only query API
//! over the partitions this instance owns (`/customers/{id}`, `/customers?band=&limit=`,
//! `/scorecard`).
//!
//! Handlers are thin: they parse, take the processor's state mutex on a blocking thread (the
//! processing loop may hold it for a step, and async workers must not wait on it), ask the
//! engine (`Engine::explain`, `Engine::worst`) and shape JSON. The router is built by
//! [`router`], so tests drive it without a socket.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use anyhow::Context as _;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus::Registry;
use serde::Serialize;
use serde_json::json;

use super::processor::Shared;
use super::tls::Tls;
use crate::engine::{Explanation, Standing};
use crate::partition::kafka_partition;
use crate::score::{Band, Scorecard};

/// What the handlers read.
pub struct Api {
    pub shared: Arc<Shared>,
    pub registry: Registry,
    pub scorecard: Arc<Scorecard>,
    /// Input partition count, to say which partition owns a customer.
    pub partitions: i32,
    /// Bearer tokens the data endpoints accept; empty: they are open (the configuration only
    /// allows that on loopback or with `http.allow_unauthenticated`).
    tokens: Vec<Vec<u8>>,
}

impl Api {
    /// The API over a processor's shared state, with its metrics registry.
    pub fn new(shared: Arc<Shared>, scorecard: Arc<Scorecard>, partitions: i32) -> Api {
        let registry = super::metrics::registry(shared.clone(), scorecard.clone());
        Api { shared, registry, scorecard, partitions, tokens: Vec::new() }
    }

    /// The same API with its data endpoints behind these bearer tokens (empty ones are ignored).
    pub fn with_tokens(mut self, tokens: impl IntoIterator<Item = String>) -> Api {
        self.tokens = tokens.into_iter().filter(|t| !t.is_empty()).map(String::into_bytes).collect();
        self
    }

    /// Whether `header` (the `Authorization` value) carries one of the tokens. Every token is
    /// compared, each in constant time, so the answer's timing says nothing about a token.
    fn authorised(&self, header: Option<&[u8]>) -> bool {
        if self.tokens.is_empty() {
            return true;
        }
        let Some(given) = header.and_then(|h| h.strip_prefix(b"Bearer ")) else { return false };
        self.tokens.iter().fold(false, |ok, t| ok | bool::from(subtle::ConstantTimeEq::ct_eq(t.as_slice(), given)))
    }
}

/// Lets a request to a data endpoint through only with a valid bearer token.
async fn require_token(
    State(api): State<Arc<Api>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if api.authorised(request.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes())) {
        return next.run(request).await;
    }
    let mut response =
        ApiError::new(StatusCode::UNAUTHORIZED, "this endpoint needs `Authorization: Bearer <token>` (http.token)")
            .into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer realm=\"healthscore\""));
    response
}

/// Customers listed when `limit` is not given, and the most one request may ask for.
pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 1000;

/// Every route, ready to serve or to test with `tower::ServiceExt::oneshot`.
pub fn router(api: Arc<Api>) -> Router {
    let data = Router::new()
        .route("/customers", get(list_customers))
        .route("/customers/{id}", get(customer))
        .route("/scorecard", get(scorecard))
        .route_layer(axum::middleware::from_fn_with_state(api.clone(), require_token));
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .merge(data)
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "no such endpoint; try /metrics, /healthz, /readyz, /customers/{id}, /customers?band=red&limit=50, /scorecard")
        })
        .with_state(api)
}

/// Serves `router` on `listener` until `shutdown` completes: plain HTTP, or HTTPS with `tls`
/// (whose files are then watched for a renewed certificate). A client's TLS handshake runs on
/// its own task, so a slow or broken one holds up nobody else.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    tls: Option<Tls>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let Some(tls) = tls else {
        return axum::serve(listener, router).with_graceful_shutdown(shutdown).await;
    };
    let handle = axum_server::Handle::new();
    let server = axum_server::from_tcp_rustls(listener.into_std()?, tls.config.clone())?.handle(handle.clone());
    let reload = tokio::spawn(tls.reload_on_change());
    let stopper = tokio::spawn(async move {
        shutdown.await;
        handle.graceful_shutdown(Some(std::time::Duration::from_secs(5)));
    });
    let served = server.serve(router.into_make_service()).await;
    reload.abort();
    stopper.abort();
    served
}

/// A server on a thread of its own (for the synchronous demo): stops when dropped.
pub struct BackgroundServer {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BackgroundServer {
    /// Binds `addr` (port 0: any free port; the bound one is in `addr`) and serves `api`.
    pub fn start(addr: SocketAddr, api: Arc<Api>) -> anyhow::Result<BackgroundServer> {
        BackgroundServer::start_with(addr, api, None)
    }

    /// [`BackgroundServer::start`], over HTTPS with `tls`.
    pub fn start_with(addr: SocketAddr, api: Arc<Api>, tls: Option<Tls>) -> anyhow::Result<BackgroundServer> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the HTTP runtime")?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(addr))
            .with_context(|| format!("cannot listen on {addr}"))?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new().name("http".into()).spawn(move || {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(e) = runtime.block_on(serve(listener, router(api), tls, shutdown)) {
                tracing::error!(error = %e, "HTTP server failed");
            }
        })?;
        Ok(BackgroundServer { addr, stop: Some(stop), thread: Some(thread) })
    }
}

impl Drop for BackgroundServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An error as the API shows it: a status and a message in JSON.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into() }
    }

    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

/// Runs `f` (which takes the state mutex) on a blocking thread. A panic there is logged and
/// shown as a bare 500: internals stay in the log.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        tracing::error!(error = %e, "HTTP handler failed");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error (logged)")
    })
}

async fn metrics(State(api): State<Arc<Api>>) -> Result<Response, ApiError> {
    let text = blocking(move || super::metrics::render(&api.registry)).await?;
    Ok(([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], text).into_response())
}

/// 200 once every assigned partition is restored and consuming; 503 before (so a Kubernetes
/// Service sends no queries to an instance whose answers would be stale or missing).
async fn readyz(State(api): State<Arc<Api>>) -> Response {
    let stats = &api.shared.stats;
    let assigned = stats.assigned_partitions.load(Relaxed);
    if stats.ready.load(Relaxed) {
        Json(json!({ "ready": true, "assigned_partitions": assigned })).into_response()
    } else {
        let reason = if assigned == 0 {
            "no partitions assigned yet (joining the consumer group)"
        } else {
            "restoring partition state (re-reading the input topics)"
        };
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "ready": false, "assigned_partitions": assigned, "reason": reason })),
        )
            .into_response()
    }
}

#[derive(Serialize)]
struct CustomerView {
    partition: i32,
    /// The partition is still being restored: the state is not yet up to date.
    restoring: bool,
    #[serde(flatten)]
    explanation: Explanation,
}

async fn customer(State(api): State<Arc<Api>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let partition = kafka_partition(id.as_bytes(), api.partitions.max(1) as u32) as i32;
    let shown = id.clone();
    let found = blocking(move || {
        let state = api.shared.lock();
        match state.tasks.get(&partition) {
            None => Err(state.tasks.keys().copied().collect::<Vec<i32>>()),
            Some(task) => Ok(task
                .engine
                .explain(&id)
                .map(|explanation| CustomerView { partition, restoring: task.restoring(), explanation })
                .ok_or(id)),
        }
    })
    .await?;
    match found {
        Ok(Ok(view)) => Ok(Json(view).into_response()),
        Ok(Err(id)) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "customer `{id}` has no score on partition {partition}, which this instance owns: \
                 no event of it was seen (in the retention period), or it is not scored yet"
            ),
        )),
        Err(owned) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "this instance does not own customer `{shown}`: it is on partition {partition}, and this instance \
                 owns partitions {owned:?}; ask the instance that owns partition {partition}"
            ),
        )),
    }
}

#[derive(Serialize)]
struct Listed {
    partition: i32,
    #[serde(flatten)]
    standing: Standing,
}

/// `band` (red, yellow, green; default any) and `limit` (1–1000, default 50), checked with a
/// message that says what is allowed.
fn list_params(params: &BTreeMap<String, String>) -> Result<(Option<Band>, usize), ApiError> {
    let mut problems = Vec::new();
    for key in params.keys() {
        if key != "band" && key != "limit" {
            problems.push(format!("unknown parameter `{key}` (allowed: band, limit)"));
        }
    }
    let band = match params.get("band").map(String::as_str) {
        None | Some("") => None,
        Some(b) => match Band::ALL.into_iter().find(|x| x.as_str() == b) {
            Some(band) => Some(band),
            None => {
                problems.push(format!("band `{b}` is not one of red, yellow, green"));
                None
            }
        },
    };
    let limit = match params.get("limit") {
        None => DEFAULT_LIMIT,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                problems.push(format!("limit `{l}` must be a whole number from 1 to {MAX_LIMIT}"));
                DEFAULT_LIMIT
            }
        },
    };
    if problems.is_empty() {
        Ok((band, limit))
    } else {
        Err(ApiError::bad_request(problems.join("; ")))
    }
}

async fn list_customers(
    State(api): State<Arc<Api>>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Response, ApiError> {
    let (band, limit) = list_params(&params)?;
    let (owned, mut listed) = blocking(move || {
        let state = api.shared.lock();
        let owned: Vec<i32> = state.tasks.keys().copied().collect();
        let listed: Vec<Listed> = state
            .tasks
            .iter()
            .flat_map(|(&partition, task)| {
                task.engine.worst(band, limit).into_iter().map(move |standing| Listed { partition, standing })
            })
            .collect();
        (owned, listed)
    })
    .await?;
    listed.sort_by(|a, b| {
        a.standing.score.total_cmp(&b.standing.score).then_with(|| a.standing.customer_id.cmp(&b.standing.customer_id))
    });
    listed.truncate(limit);
    Ok(Json(json!({
        "band": band.map(Band::as_str),
        "limit": limit,
        "partitions": owned,
        "customers": listed,
    }))
    .into_response())
}

/// The active scorecard: `?format=toml` as written, else JSON (the same document, plus its
/// version and where it came from).
async fn scorecard(
    State(api): State<Arc<Api>>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Response, ApiError> {
    let sc = &api.scorecard;
    match params.get("format").map(String::as_str) {
        Some("toml") => {
            Ok(([(header::CONTENT_TYPE, "application/toml; charset=utf-8")], sc.source_text.clone()).into_response())
        }
        None | Some("json") => {
            let model: toml::Value = toml::from_str(&sc.source_text).map_err(|e| {
                tracing::error!(error = %e, "the active scorecard does not re-parse");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error (logged)")
            })?;
            Ok(Json(json!({ "version": &*sc.version, "description": sc.description, "model": model })).into_response())
        }
        Some(other) => Err(ApiError::bad_request(format!("format `{other}` is not json or toml"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn list_parameters_default_and_say_what_is_wrong() {
        assert_eq!(list_params(&params(&[])).unwrap(), (None, DEFAULT_LIMIT));
        assert_eq!(list_params(&params(&[("band", "red"), ("limit", "5")])).unwrap(), (Some(Band::Red), 5));
        let e = list_params(&params(&[("band", "purple"), ("limit", "0"), ("sort", "x")])).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        for want in ["band `purple` is not one of red, yellow, green", "limit `0` must be", "unknown parameter `sort`"]
        {
            assert!(e.message.contains(want), "{want} in {}", e.message);
        }
        assert!(list_params(&params(&[("limit", "1001")])).is_err());
    }
}
