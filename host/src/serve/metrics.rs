//! Prometheus metrics (`GET /metrics`, text format).
//!
//! Per tenant: requests by status, latency, requests in flight, admission refusals,
//! model (sandbox) failures by kind, model cache hits/misses and load time (from each call),
//! guest seconds, feature lookups and the seconds the feature store took for them,
//! and, read from the model cache at scrape time, evictions and resident bytes of the
//! tenant's model. The `tenant` label is only ever a verified, registered tenant
//! (`-` otherwise), so a caller cannot grow the label set.

use super::backend::{Backend, CallStats, FailureKind};
use super::identity::Identity;
use super::tenants::Tenants;
use crate::metering::sink::Meter;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// The tenant label of a request whose tenant is not (yet) known to be registered.
pub const NO_TENANT: &str = "-";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabel {
    tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    tenant: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    tenant: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScopeLabels {
    tenant: String,
    scope: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabel {
    error: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 50 µs … ~6.5 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 18))
}

fn load_histogram() -> Histogram {
    // 250 µs … ~16 s: a deserialize is ~ms, a compile up to seconds.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 17))
}

pub struct Metrics {
    registry: Registry,
    requests: Family<StatusLabels, Counter>,
    latency: HistogramFamily<TenantLabel>,
    in_flight: Family<TenantLabel, Gauge>,
    failures: Family<KindLabels, Counter>,
    cache_hits: Family<TenantLabel, Counter>,
    cache_misses: Family<TenantLabel, Counter>,
    load_time: HistogramFamily<TenantLabel>,
    admission_refused: Family<ScopeLabels, Counter>,
    identity_refused: Family<ErrorLabel, Counter>,
    guest_seconds: Family<TenantLabel, Counter<f64, AtomicU64>>,
    feature_lookups: Family<TenantLabel, Counter>,
    feature_lookup_seconds: Family<TenantLabel, Counter<f64, AtomicU64>>,
}

/// Read at scrape time from the parts that own the figures.
struct Scrape {
    backend: Arc<dyn Backend>,
    tenants: Arc<Tenants>,
    identity: Arc<Identity>,
    ready: Arc<AtomicBool>,
}

impl std::fmt::Debug for Scrape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scrape")
    }
}

impl Metrics {
    pub fn new(
        backend: Arc<dyn Backend>,
        tenants: Arc<Tenants>,
        identity: Arc<Identity>,
        ready: Arc<AtomicBool>,
    ) -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<StatusLabels, Counter>::default();
        let latency = HistogramFamily::<TenantLabel>::new_with_constructor(latency_histogram);
        let in_flight = Family::<TenantLabel, Gauge>::default();
        let failures = Family::<KindLabels, Counter>::default();
        let cache_hits = Family::<TenantLabel, Counter>::default();
        let cache_misses = Family::<TenantLabel, Counter>::default();
        let load_time = HistogramFamily::<TenantLabel>::new_with_constructor(load_histogram);
        let admission_refused = Family::<ScopeLabels, Counter>::default();
        let identity_refused = Family::<ErrorLabel, Counter>::default();
        let guest_seconds = Family::<TenantLabel, Counter<f64, AtomicU64>>::default();
        let feature_lookups = Family::<TenantLabel, Counter>::default();
        let feature_lookup_seconds = Family::<TenantLabel, Counter<f64, AtomicU64>>::default();
        registry.register(
            "bulkhead_requests",
            "Prediction requests by tenant and HTTP status",
            requests.clone(),
        );
        registry.register(
            "bulkhead_request_duration_seconds",
            "Prediction request latency by tenant, identity check to response",
            latency.clone(),
        );
        registry.register(
            "bulkhead_requests_in_flight",
            "Prediction requests running now, by tenant",
            in_flight.clone(),
        );
        registry.register(
            "bulkhead_model_failures",
            "Model calls that failed, by tenant and kind (sandbox kinds, model_not_found, integrity, …)",
            failures.clone(),
        );
        registry.register(
            "bulkhead_model_cache_hits",
            "Calls that found the tenant's model resident",
            cache_hits.clone(),
        );
        registry.register(
            "bulkhead_model_cache_misses",
            "Calls that had to load the tenant's model",
            cache_misses.clone(),
        );
        registry.register(
            "bulkhead_model_load_seconds",
            "Time to load the tenant's model on a cache miss",
            load_time.clone(),
        );
        registry.register(
            "bulkhead_admission_refused",
            "Requests refused with 429 by the tenant's or the host's concurrency cap",
            admission_refused.clone(),
        );
        registry.register(
            "bulkhead_identity_refused",
            "Requests refused by the identity check, by error code",
            identity_refused.clone(),
        );
        registry.register(
            "bulkhead_tenant_guest_seconds",
            "Seconds the tenant's model ran in its sandbox (the plugin's own code, measured \
             with wasmtime call hooks; host calls excluded): the tenant's share of the \
             data plane's CPU is its rate over the sum of all tenants' rates",
            guest_seconds.clone(),
        );
        registry.register(
            "bulkhead_tenant_feature_lookups",
            "features.lookup calls of the tenant's model answered by its feature store",
            feature_lookups.clone(),
        );
        registry.register(
            "bulkhead_tenant_feature_lookup_seconds",
            "Seconds the tenant's feature store took to answer its model's features.lookup \
             calls (SQLite reads or PostgreSQL round trips; not part of guest seconds)",
            feature_lookup_seconds.clone(),
        );
        registry.register_collector(Box::new(Scrape {
            backend,
            tenants,
            identity,
            ready,
        }));
        Metrics {
            registry,
            requests,
            latency,
            in_flight,
            failures,
            cache_hits,
            cache_misses,
            load_time,
            admission_refused,
            identity_refused,
            guest_seconds,
            feature_lookups,
            feature_lookup_seconds,
        }
    }

    fn t(tenant: &str) -> TenantLabel {
        TenantLabel {
            tenant: tenant.to_string(),
        }
    }

    pub fn request(&self, tenant: &str, status: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&StatusLabels {
                tenant: tenant.to_string(),
                status: status.to_string(),
            })
            .inc();
        self.latency
            .get_or_create(&Self::t(tenant))
            .observe(elapsed.as_secs_f64());
    }

    /// Counts a request in flight until the guard drops.
    pub fn in_flight(&self, tenant: &str) -> InFlight {
        let g = self.in_flight.get_or_create_owned(&Self::t(tenant));
        g.inc();
        InFlight(g)
    }

    pub fn call(&self, tenant: &str, stats: &CallStats) {
        if stats.cache_hit {
            self.cache_hits.get_or_create(&Self::t(tenant)).inc();
        } else {
            self.cache_misses.get_or_create(&Self::t(tenant)).inc();
        }
        if let Some(s) = stats.load_seconds {
            self.load_time.get_or_create(&Self::t(tenant)).observe(s);
        }
        self.guest_seconds
            .get_or_create(&Self::t(tenant))
            .inc_by(stats.guest_seconds);
        if stats.feature_lookups > 0 {
            self.feature_lookups
                .get_or_create(&Self::t(tenant))
                .inc_by(stats.feature_lookups);
            self.feature_lookup_seconds
                .get_or_create(&Self::t(tenant))
                .inc_by(stats.feature_lookup_seconds);
        }
    }

    pub fn failure(&self, tenant: &str, kind: FailureKind) {
        self.failures
            .get_or_create(&KindLabels {
                tenant: tenant.to_string(),
                kind: kind.as_str().to_string(),
            })
            .inc();
    }

    pub fn admission_refused(&self, tenant: &str, scope: &str) {
        self.admission_refused
            .get_or_create(&ScopeLabels {
                tenant: tenant.to_string(),
                scope: scope.to_string(),
            })
            .inc();
    }

    pub fn identity_refused(&self, error: &'static str) {
        self.identity_refused
            .get_or_create(&ErrorLabel {
                error: error.to_string(),
            })
            .inc();
    }

    /// Adds the batch plane's families.
    pub fn register_batch(&mut self, b: &crate::batch::BatchMetrics) {
        b.register(&mut self.registry);
    }

    /// The meter log's own figures, read at scrape time.
    pub fn register_meter(&mut self, meter: Arc<Meter>) {
        self.registry
            .register_collector(Box::new(MeterScrape(meter)));
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!("encoding metrics: {e}");
        }
        out
    }
}

pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn put_counter(enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(enc.encode_descriptor(name, help, None, c.metric_type())?)
}

fn put_gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> std::fmt::Result {
    let g = ConstGauge::new(v);
    g.encode(enc.encode_descriptor(name, help, None, g.metric_type())?)
}

/// The meter log's counters: what metering costs (fsyncs per event) and whether it still
/// takes events (after a failed write every metered request is a 503 until a restart).
#[derive(Debug)]
struct MeterScrape(Arc<Meter>);

impl Collector for MeterScrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let s = self.0.stats();
        put_counter(
            &mut enc,
            "bulkhead_meter_events",
            "Usage events made durable in the meter log",
            s.appends,
        )?;
        put_counter(
            &mut enc,
            "bulkhead_meter_commits",
            "Group commits of the meter log (one write and fsync each)",
            s.batches,
        )?;
        put_counter(
            &mut enc,
            "bulkhead_meter_fsyncs",
            "fsync calls of the meter log (records, new segments, the directory)",
            s.fsyncs,
        )?;
        put_gauge(
            &mut enc,
            "bulkhead_meter_failed",
            "1 when the meter log refuses writes after a failed write or fsync (metered \
             requests answer 503 until a restart)",
            i64::from(s.failed),
        )
    }
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let s = self.backend.cache_stats();
        let i = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        put_counter(
            &mut enc,
            "bulkhead_model_cache_loads",
            "Models loaded into the cache (all tenants)",
            s.loads,
        )?;
        put_counter(
            &mut enc,
            "bulkhead_model_cache_evictions",
            "Models evicted from the cache (all tenants)",
            s.evictions,
        )?;
        put_gauge(
            &mut enc,
            "bulkhead_model_cache_resident_models",
            "Models resident in the cache",
            i(s.resident_models),
        )?;
        put_gauge(
            &mut enc,
            "bulkhead_model_cache_resident_bytes",
            "Bytes of models resident in the cache",
            i(s.resident_bytes),
        )?;
        let (th, tm) = self.identity.cache_stats();
        put_counter(
            &mut enc,
            "bulkhead_token_cache_hits",
            "Verified-token cache hits",
            th,
        )?;
        put_counter(
            &mut enc,
            "bulkhead_token_cache_misses",
            "Verified-token cache misses",
            tm,
        )?;
        let (_, reg) = self.tenants.registry();
        put_gauge(
            &mut enc,
            "bulkhead_registry_revision",
            "Revision of the tenant registry in force",
            i(reg.document().revision),
        )?;
        put_gauge(
            &mut enc,
            "bulkhead_ready",
            "1 once the registry and the pinned models are loaded",
            i64::from(self.ready.load(Ordering::Relaxed)),
        )?;

        // Per tenant: the figures of the model the tenant is served (pool tenants share
        // the pooled model, so they show the same bytes).
        let bytes: HashMap<&str, u64> = s
            .resident_bytes_by_model
            .iter()
            .map(|(m, b)| (m.as_str(), *b))
            .collect();
        let evicted: HashMap<&str, u64> = s
            .evictions_by_model
            .iter()
            .map(|(m, b)| (m.as_str(), *b))
            .collect();
        let served = self.tenants.served();
        let probe = ConstGauge::new(0i64);
        let mut m = enc.encode_descriptor(
            "bulkhead_tenant_model_resident_bytes",
            "Resident bytes of the tenant's model (0 when not loaded)",
            None,
            probe.metric_type(),
        )?;
        for t in &served {
            let b = bytes.get(t.model.name.as_str()).copied().unwrap_or(0);
            let labels = [
                ("tenant", t.org_id.as_str()),
                ("model", t.model.name.as_str()),
            ];
            ConstGauge::new(i(b)).encode(m.encode_family(&labels)?)?;
        }
        let probe = ConstCounter::new(0u64);
        let mut m = enc.encode_descriptor(
            "bulkhead_tenant_model_evictions",
            "Evictions of the tenant's model from the cache",
            None,
            probe.metric_type(),
        )?;
        for t in &served {
            let e = evicted.get(t.model.name.as_str()).copied().unwrap_or(0);
            let labels = [
                ("tenant", t.org_id.as_str()),
                ("model", t.model.name.as_str()),
            ];
            ConstCounter::new(e).encode(m.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
