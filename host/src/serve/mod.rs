//! `bulkhead serve`: the data plane. Each request is checked again for identity (the
//! edge's JWT rules, and `x-org-id` must name the token's tenant), mapped to the
//! tenant's model through the tenant registry, admitted under the tenant's and the
//! host's concurrency caps, and run in the tenant model's wasmtime sandbox.
//!
//! | module | job |
//! |---|---|
//! | [`identity`] | bearer JWT (shared `bulkhead-jwt` rules, verified-token cache) + tenant header |
//! | [`tenants`] | registry (last valid, reloaded live) → tenant route; unknown/suspended/other plane |
//! | [`admission`] | per-tenant cap under a global cap, bounded wait, 429 |
//! | [`api`] | request/response JSON |
//! | [`backend`] | what the HTTP layer needs from the model side (a trait; fakes in tests) |
//! | [`wasm`] | the real backend: model store + sandbox |
//! | [`ready`] | warm-up and `/readyz` |
//! | [`metrics`] | Prometheus |
//! | [`http`] | routes and the request pipeline |
//! | [`crate::batch`] | `POST /v1/batch/eta` and its own worker pool (SCHED_IDLE) |
//! | [`tls`] | mTLS: `--tls-cert`/`--tls-key`/`--client-ca`, a client certificate required |
//! | [`cli`] | the `serve` subcommand |

pub mod admission;
pub mod api;
pub mod backend;
pub mod cli;
pub mod demand_api;
pub mod error;
pub mod http;
pub mod identity;
pub mod metrics;
pub mod ready;
pub mod request_id;
pub mod tenants;
pub mod tls;
pub mod wasm;

use crate::batch::BatchPlane;
use crate::metering::sink::Meter;
use admission::Admission;
use anyhow::{Context, Result};
use axum::serve::ListenerExt;
use backend::Backend;
use identity::Identity;
use metrics::Metrics;
use ready::Readiness;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tenants::Tenants;

/// The knobs of the HTTP layer.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub bounds: api::Bounds,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_body_bytes: 1 << 20,
            bounds: api::Bounds::default(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    /// This host's data plane (its Envoy cluster); `None` serves every data plane.
    pub plane: Option<String>,
    /// Requests in flight across all tenants.
    pub global_concurrency: u32,
    /// How long a request waits for a slot before 429.
    pub admission_wait: Duration,
    pub limits: Limits,
    /// How often the registry file is checked for changes.
    pub registry_poll: Duration,
    /// How often warm-up re-runs (after a registry change, or to retry a failure).
    pub warm_period: Duration,
    /// Where each successful prediction's usage event is made durable before the
    /// response; `None` meters nothing (`--meter off`).
    pub meter: Option<Arc<Meter>>,
    /// The batch plane (`POST /v1/batch/eta`); `None`: the batch endpoints are 404.
    pub batch: Option<Arc<BatchPlane>>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            plane: None,
            global_concurrency: 64,
            admission_wait: Duration::from_millis(100),
            limits: Limits::default(),
            registry_poll: Duration::from_millis(250),
            warm_period: Duration::from_secs(1),
            meter: None,
            batch: None,
        }
    }
}

/// Everything a request needs.
pub struct App {
    pub identity: Arc<Identity>,
    pub tenants: Arc<Tenants>,
    pub admission: Admission,
    pub backend: Arc<dyn Backend>,
    pub metrics: Metrics,
    pub readiness: Arc<Readiness>,
    pub limits: Limits,
    pub meter: Option<Arc<Meter>>,
    pub batch: Option<Arc<BatchPlane>>,
}

impl App {
    /// `tenants`: what this host serves (the batch plane checks its jobs against the same).
    pub fn new(
        identity: Identity,
        tenants: Arc<Tenants>,
        backend: Arc<dyn Backend>,
        opts: &Options,
    ) -> Result<Arc<App>> {
        let identity = Arc::new(identity);
        let readiness = Arc::new(Readiness::new());
        let mut metrics = Metrics::new(
            Arc::clone(&backend),
            Arc::clone(&tenants),
            Arc::clone(&identity),
            readiness.flag(),
        );
        if let Some(b) = &opts.batch {
            metrics.register_batch(b.metrics());
        }
        if let Some(m) = &opts.meter {
            metrics.register_meter(Arc::clone(m));
        }
        Ok(Arc::new(App {
            identity,
            tenants,
            admission: Admission::new(opts.global_concurrency, opts.admission_wait),
            backend,
            metrics,
            readiness,
            limits: opts.limits.clone(),
            meter: opts.meter.clone(),
            batch: opts.batch.clone(),
        }))
    }
}

/// Where [`serve_on`] accepts connections.
pub enum Transport {
    /// Plain HTTP.
    Plain(tokio::net::TcpListener),
    /// HTTPS with a verified client certificate on every connection.
    Tls(tls::TlsListener),
}

/// Serves `app` on `listener` (plain HTTP) until `shutdown` completes, with the registry
/// watcher and the warm-up running beside it.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    opts: &Options,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    serve_on(Transport::Plain(listener), app, opts, shutdown).await
}

/// [`serve`], on either transport.
pub async fn serve_on(
    transport: Transport,
    app: Arc<App>,
    opts: &Options,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let watch = tokio::spawn(Arc::clone(app.tenants.watcher()).run(opts.registry_poll));
    let warm = tokio::spawn(Arc::clone(&app.readiness).run(
        Arc::clone(&app.tenants),
        Arc::clone(&app.backend),
        opts.warm_period,
    ));
    let service = http::router(app).into_make_service_with_connect_info::<SocketAddr>();
    let result = match transport {
        Transport::Plain(listener) => {
            axum::serve(listener, service)
                .with_graceful_shutdown(shutdown)
                .await
        }
        Transport::Tls(listener) => {
            // tap_io: axum's ConnectInfo<SocketAddr> for a custom listener comes with it.
            axum::serve(listener.tap_io(|_| {}), service)
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
    .context("serving HTTP");
    watch.abort();
    warm.abort();
    result
}
