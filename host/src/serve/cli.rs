//! `bulkhead serve`: flags, and wiring the pieces together.

use super::identity::Identity;
use super::tls::{self, TlsListener};
use super::wasm::WasmBackend;
use super::{App, Limits, Options, Transport, api};
use crate::batch::sched::SchedMode;
use crate::batch::{BatchConfig, BatchPlane};
use crate::dev::issuer::{DEV_AUDIENCE, DEV_ISSUER, DevIssuer};
use crate::features::postgres::{PgFeatureStores, PgOptions};
use crate::metering::sink::{self, Meter};
use crate::models::ModelStore;
use crate::registry::watch::Watcher;
use crate::sandbox::{Sandbox, SandboxConfig};
use crate::serve::tenants::Tenants;
use anyhow::{Context, Result, bail};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to listen on. Keep it on loopback: in production Envoy reaches the host over mTLS.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,
    /// The model store (plugins, model versions, precompiled code)
    /// [default: <state-dir>/data-plane].
    #[arg(long, env = "BULKHEAD_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// A jwt-auth filter configuration (the edge's JSON; providers with inline JWKS).
    /// Default: the local dev issuer's key from <state-dir>/dev.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["jwks", "issuer", "audience", "tenant_claim"])]
    pub auth_config: Option<PathBuf>,
    /// A JWKS file to verify tokens with (one provider: --issuer, --audience, --tenant-claim).
    #[arg(long, value_name = "FILE")]
    pub jwks: Option<PathBuf>,
    /// The `iss` tokens must carry (with --jwks or the dev issuer).
    #[arg(long, default_value = DEV_ISSUER)]
    pub issuer: String,
    /// An `aud` tokens must carry.
    #[arg(long, default_value = DEV_AUDIENCE)]
    pub audience: String,
    /// The claim holding the tenant id.
    #[arg(long, default_value = "org_id")]
    pub tenant_claim: String,
    /// This host's data plane: the Envoy cluster name its tenants' registry entries
    /// route to (e.g. dp_pool_us). Tenants of other data planes are refused (421).
    /// Default: serve every tenant.
    #[arg(long, value_name = "CLUSTER")]
    pub plane_name: Option<String>,
    /// Requests in flight across all tenants (each tenant is also capped by its
    /// registry `max_concurrency`).
    #[arg(long, default_value_t = 64)]
    pub max_concurrency: u32,
    /// How long a request waits for a concurrency slot before 429.
    #[arg(long, default_value_t = 100, value_name = "MS")]
    pub admission_wait_ms: u64,
    /// Largest request body (413 beyond).
    #[arg(long, default_value_t = 1 << 20, value_name = "BYTES")]
    pub max_body_bytes: usize,
    /// Most rows in one request.
    #[arg(long, default_value_t = 10_000)]
    pub max_rows: usize,
    /// Linear memory per call, across all of the model's memories.
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    pub model_memory_mib: usize,
    /// Wall time per call (epoch deadline).
    #[arg(long, default_value_t = 50, value_name = "MS")]
    pub model_timeout_ms: u64,
    /// Models kept loaded (LRU)…
    #[arg(long, default_value_t = 100)]
    pub cache_entries: usize,
    /// …and their total bytes (artifacts + compiled plugin code).
    #[arg(long, default_value_t = 512, value_name = "MIB")]
    pub cache_mib: u64,
    /// How long a resolved `name@production` is reused before the store is read again
    /// (a promotion takes effect within this).
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    pub resolve_ttl_ms: u64,
    /// Serve HTTPS with this certificate chain (PEM, leaf first). Needs --tls-key and
    /// --client-ca: every client must then present a certificate issued by that CA (mTLS;
    /// Envoy's in `make run`). Without the three, plain HTTP.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// The CA certificate(s) (PEM) a client certificate must chain to; a client without
    /// one, or with one from another CA, is refused during the TLS handshake.
    #[arg(long, value_name = "FILE")]
    pub client_ca: Option<PathBuf>,
    /// Usage metering: each successful prediction's event is appended and fsynced to
    /// <DIR>/log before the response is sent [default: <state-dir>/meter].
    #[arg(long, env = "BULKHEAD_METER_DIR", value_name = "DIR")]
    pub meter_dir: Option<PathBuf>,
    /// `off` serves without metering: nothing is billed. For measuring what metering
    /// costs only.
    #[arg(long, value_enum, default_value = "on")]
    pub meter: MeterMode,
    /// Batch plane (`POST /v1/batch/eta`): worker threads, apart from the HTTP runtime.
    #[arg(long, default_value_t = 1)]
    pub batch_workers: usize,
    /// Scheduling class of the batch plane's threads: `idle` (SCHED_IDLE, falling back to
    /// nice 19) or `normal` (only to measure what the idle class buys).
    #[arg(long, value_enum, default_value = "idle")]
    pub batch_sched: SchedMode,
    /// Batch jobs of one tenant scored at once (its other jobs queue).
    #[arg(long, default_value_t = 1)]
    pub batch_per_tenant: usize,
    /// Rows per sandbox call (one Store each) and per usage event.
    #[arg(long, default_value_t = 2000)]
    pub batch_chunk_rows: u64,
    /// Largest batch upload (413 beyond).
    #[arg(long, default_value_t = 1 << 30, value_name = "BYTES")]
    pub batch_max_bytes: u64,
    /// Most rows in one batch job (413 beyond).
    #[arg(long, default_value_t = 2_000_000)]
    pub batch_max_rows: u64,
    /// Wall time per chunk call (a SCHED_IDLE thread may wait for the CPU; a chunk that
    /// times out is retried).
    #[arg(long, default_value_t = 30_000, value_name = "MS")]
    pub batch_chunk_timeout_ms: u64,
    /// The batch plane's own meter log (one writer per log)
    /// [default: batch-meter beside the --meter-dir].
    #[arg(long, value_name = "DIR")]
    pub batch_meter_dir: Option<PathBuf>,
    /// Finished batch jobs (and their results) are deleted this many hours after they
    /// finished, so the job table and the disk stay bounded.
    #[arg(long, default_value_t = 168, value_name = "HOURS")]
    pub batch_retention_hours: u64,
    /// Answer the models' feature lookups from PostgreSQL instead of the SQLite stores in
    /// <data-dir>/features: a connection string (URL or key=value) naming the server and
    /// the main database (`bulkhead features load --postgres` fills it). Its user and
    /// password are not used: lookups log in as the reader role of the tenant's tier
    /// (bulkhead_reader for pool, bulkhead_reader_<org> for bridge and silo).
    #[arg(long, env = "BULKHEAD_FEATURES_POSTGRES", value_name = "URL")]
    pub features_postgres: Option<String>,
    /// The password of the reader roles, if the server asks for one.
    #[arg(
        long,
        env = "BULKHEAD_FEATURES_POSTGRES_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD",
        requires = "features_postgres"
    )]
    pub features_postgres_password: Option<String>,
    /// Connections per tenant pool (PostgreSQL feature store). A model call holds one for
    /// as long as it runs: a tenant's calls beyond this wait for one.
    #[arg(long, default_value_t = PgOptions::default().pool_size, value_name = "N")]
    pub features_pool_size: u32,
    /// `statement_timeout` (and `lock_timeout`) of each lookup connection.
    #[arg(long, default_value_t = ms(PgOptions::default().statement_timeout), value_name = "MS")]
    pub features_statement_timeout_ms: u64,
    /// Longest wait for a free connection of the tenant's pool; then the lookup fails.
    #[arg(long, default_value_t = ms(PgOptions::default().checkout_timeout), value_name = "MS")]
    pub features_checkout_timeout_ms: u64,
    /// Longest wait to open a connection.
    #[arg(long, default_value_t = ms(PgOptions::default().connect_timeout), value_name = "MS")]
    pub features_connect_timeout_ms: u64,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeterMode {
    On,
    Off,
}

impl ServeArgs {
    fn options(&self) -> Options {
        Options {
            plane: self.plane_name.clone(),
            global_concurrency: self.max_concurrency,
            admission_wait: Duration::from_millis(self.admission_wait_ms),
            limits: Limits {
                max_body_bytes: self.max_body_bytes,
                bounds: api::Bounds {
                    max_rows: self.max_rows,
                    ..api::Bounds::default()
                },
            },
            ..Options::default()
        }
    }

    /// The batch plane's sandbox: the same engine settings, its own (small) instance
    /// pool, and per-call limits sized for a chunk.
    fn batch_sandbox_config(&self, data_dir: &Path) -> SandboxConfig {
        let mut c = self.sandbox_config(data_dir);
        c.limits.timeout = Duration::from_millis(self.batch_chunk_timeout_ms);
        c.limits.max_output_bytes = c
            .limits
            .max_output_bytes
            .max(usize::try_from(self.batch_chunk_rows.saturating_mul(64)).unwrap_or(usize::MAX));
        c.pool.max_instances = u32::try_from(self.batch_workers.max(1) + 2).unwrap_or(u32::MAX);
        c
    }

    fn batch_config(&self, data_dir: &Path) -> BatchConfig {
        let mut b = BatchConfig::new(data_dir.join("batch"));
        b.workers = self.batch_workers.max(1);
        b.per_tenant = self.batch_per_tenant.max(1);
        b.chunk_rows = self.batch_chunk_rows.max(1);
        b.max_bytes = self.batch_max_bytes;
        b.max_rows = self.batch_max_rows;
        b.sched = self.batch_sched;
        b.retention = Duration::from_secs(self.batch_retention_hours.saturating_mul(3600));
        b
    }

    fn sandbox_config(&self, data_dir: &Path) -> SandboxConfig {
        let mut c = SandboxConfig {
            data_dir: Some(data_dir.to_path_buf()),
            ..SandboxConfig::default()
        };
        c.limits.memory_bytes = self.model_memory_mib << 20;
        c.limits.timeout = Duration::from_millis(self.model_timeout_ms);
        // A memory can never grow past its pool slot: make the slot fit the limit.
        c.pool.max_memory_bytes = c.pool.max_memory_bytes.max(c.limits.memory_bytes);
        c.cache.max_entries = self.cache_entries;
        c.cache.max_bytes = self.cache_mib << 20;
        c
    }

    /// The TLS server config when the TLS flags are given: all three, or none.
    fn tls(&self) -> Result<Option<Arc<rustls::ServerConfig>>> {
        let flags = [
            ("--tls-cert", &self.tls_cert),
            ("--tls-key", &self.tls_key),
            ("--client-ca", &self.client_ca),
        ];
        let missing: Vec<&str> = flags
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(f, _)| *f)
            .collect();
        match (&self.tls_cert, &self.tls_key, &self.client_ca) {
            (Some(cert), Some(key), Some(client_ca)) => {
                Ok(Some(tls::server_config(&tls::TlsFiles {
                    cert,
                    key,
                    client_ca,
                })?))
            }
            (None, None, None) => Ok(None),
            _ => bail!(
                "TLS needs --tls-cert, --tls-key and --client-ca together; missing {}",
                missing.join(", ")
            ),
        }
    }

    /// The PostgreSQL feature stores of `--features-postgres`, checked reachable.
    fn features_postgres(&self) -> Result<Option<Arc<PgFeatureStores>>> {
        let Some(url) = &self.features_postgres else {
            return Ok(None);
        };
        let options = PgOptions {
            statement_timeout: Duration::from_millis(self.features_statement_timeout_ms),
            pool_size: self.features_pool_size,
            checkout_timeout: Duration::from_millis(self.features_checkout_timeout_ms),
            connect_timeout: Duration::from_millis(self.features_connect_timeout_ms),
            reader_password: self.features_postgres_password.clone(),
        };
        let stores = PgFeatureStores::new(url, options).context("--features-postgres")?;
        let version = stores.check().context(
            "--features-postgres: the PostgreSQL feature store is unreachable (is the server \
             up, and were the stores loaded with `bulkhead features load --postgres`?)",
        )?;
        tracing::info!(server_version = %version, "feature lookups go to PostgreSQL");
        Ok(Some(Arc::new(stores)))
    }

    fn identity(&self, state_dir: &Path) -> Result<Identity> {
        if let Some(path) = &self.auth_config {
            let json =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            return Identity::from_filter_config(&json).with_context(|| path.display().to_string());
        }
        let jwks: serde_json::Value = match &self.jwks {
            Some(path) => {
                let text =
                    std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
                serde_json::from_slice(&text)
                    .with_context(|| format!("{} is not JSON", path.display()))?
            }
            None => DevIssuer::open(&state_dir.join("dev"))?.jwks()?,
        };
        Identity::from_jwks(&jwks, &self.issuer, &self.audience, &self.tenant_claim)
    }
}

/// Runs `bulkhead serve` until `shutdown` completes.
pub fn run(
    state_dir: &Path,
    registry: &Path,
    args: ServeArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| state_dir.join("data-plane"));
    // Certificates first: a bad file fails at once, before any model is loaded.
    let tls = args.tls()?;
    let identity = args.identity(state_dir)?;
    let features_postgres = args.features_postgres()?;
    let watcher =
        Arc::new(Watcher::open(registry).context("the data plane needs a valid registry")?);
    let store = ModelStore::open(&data_dir)?;
    let opts = args.options();
    let meter = open_meter(state_dir, &args)?;
    let batch_meter = open_batch_meter(state_dir, &args)?;
    let tenants = Arc::new(Tenants::new(watcher, opts.plane.clone())?);
    let rt = tokio::runtime::Runtime::new()?;
    let mut batch_plane = None;
    let served = rt.block_on(async {
        let sandbox = Arc::new(Sandbox::new(args.sandbox_config(&data_dir))?);
        let mut backend =
            WasmBackend::new(store, sandbox, Duration::from_millis(args.resolve_ttl_ms));
        // The batch plane: its own sandbox (engine, pool, cache) over the same store and
        // the same feature stores.
        let batch_sandbox = Arc::new(Sandbox::new(args.batch_sandbox_config(&data_dir))?);
        let mut batch_backend = WasmBackend::new(
            ModelStore::open(&data_dir)?,
            batch_sandbox,
            Duration::from_millis(args.resolve_ttl_ms),
        );
        if let Some(pg) = features_postgres {
            batch_backend = batch_backend.with_postgres(Arc::clone(&pg));
            backend = backend.with_postgres(pg);
        }
        let backend = Arc::new(backend);
        let batch = BatchPlane::start(
            args.batch_config(&data_dir),
            Arc::new(batch_backend),
            batch_meter,
            Some(Arc::clone(&tenants)),
        )?;
        batch_plane = Some(Arc::clone(&batch));
        let opts = Options {
            meter: meter.clone(),
            batch: Some(batch),
            ..opts
        };
        let app = App::new(identity, tenants, backend, &opts)?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        let local = listener.local_addr()?;
        if !local.ip().is_loopback() && tls.is_none() {
            tracing::warn!(%local, "listening beyond loopback without TLS: only Envoy (over mTLS) should reach the data plane");
        }
        let (transport, scheme, client_certificate) = match tls {
            Some(config) => (
                Transport::Tls(TlsListener::new(listener, config)?),
                "https",
                "required",
            ),
            None => (Transport::Plain(listener), "http", "none"),
        };
        let snap = app.tenants.watcher().current();
        tracing::info!(
            plane = opts.plane.as_deref().unwrap_or("*"),
            data_dir = %data_dir.display(),
            registry = %app.tenants.watcher().path().display(),
            revision = snap.revision,
            client_certificate,
            "data plane listening on {scheme}://{local}"
        );
        super::serve_on(transport, app, &opts, shutdown).await
    });
    if let Some(b) = batch_plane {
        b.stop();
    }
    if let Some(m) = &meter {
        let s = m.stats();
        tracing::info!(
            appends = s.appends,
            batches = s.batches,
            fsyncs = s.fsyncs,
            "meter log closed"
        );
    }
    served
}

/// The batch plane's meter log (`--batch-meter-dir`, default `batch-meter` beside the
/// interactive one), recovered; `None` with `--meter off`.
fn open_batch_meter(state_dir: &Path, args: &ServeArgs) -> Result<Option<Arc<Meter>>> {
    if args.meter == MeterMode::Off {
        return Ok(None);
    }
    let dir = args.batch_meter_dir.clone().unwrap_or_else(|| {
        let meter = meter_dir(state_dir, args);
        meter
            .parent()
            .map_or_else(|| PathBuf::from("batch-meter"), |p| p.join("batch-meter"))
    });
    let source = format!("{}/batch", sink::source_for(&args.listen));
    let (meter, rec) = Meter::open(&dir, source)
        .with_context(|| format!("opening the batch meter log in {}", dir.display()))?;
    if let Some(t) = &rec.truncated {
        tracing::warn!(segment = %t.segment.display(), at = t.at, dropped_bytes = t.dropped_bytes,
            reason = %t.reason, "batch meter log: truncated a torn or corrupt tail (earlier events kept)");
    }
    tracing::info!(batch_meter_dir = %dir.display(), events = rec.records, "batch meter log open");
    Ok(Some(Arc::new(meter)))
}

fn meter_dir(state_dir: &Path, args: &ServeArgs) -> PathBuf {
    args.meter_dir.clone().unwrap_or_else(|| {
        args.data_dir
            .clone()
            .unwrap_or_else(|| state_dir.join("data-plane"))
            .join("meter")
    })
}

/// The meter log (`--meter-dir`), recovered; `None` with `--meter off`.
fn open_meter(state_dir: &Path, args: &ServeArgs) -> Result<Option<Arc<Meter>>> {
    if args.meter == MeterMode::Off {
        tracing::warn!("--meter off: predictions are not metered (nothing will be billed)");
        return Ok(None);
    }
    // Default: beside the host's models, so hosts with their own data dirs (one log has
    // one writer) never share a log.
    let dir = meter_dir(state_dir, args);
    let (meter, rec) = Meter::open(&dir, sink::source_for(&args.listen))
        .with_context(|| format!("opening the meter log in {}", dir.display()))?;
    if let Some(t) = &rec.truncated {
        tracing::warn!(segment = %t.segment.display(), at = t.at, dropped_bytes = t.dropped_bytes,
            reason = %t.reason, "meter log: truncated a torn or corrupt tail (earlier events kept)");
    }
    tracing::info!(meter_dir = %dir.display(), segments = rec.segments, events = rec.records,
        source = meter.source(), "meter log open");
    Ok(Some(Arc::new(meter)))
}
