//! The batch plane: large uploads scored apart from interactive traffic.
//!
//! `POST /v1/batch/eta` streams an NDJSON or CSV upload to
//! `<data-dir>/batch/<tenant>/<job-id>/input`, checking every line on the way (a bad
//! line fails the upload, naming it: no half job), and answers 202 with the job id at
//! once. Jobs are scored by the batch plane's own worker threads — never the HTTP
//! runtime's — which put themselves in `SCHED_IDLE`, and use their own sandbox (own
//! engine, instance pool, model cache and per-call limits sized for a chunk) through the
//! same model store, ownership checks and plugin as `POST /v1/eta`. Each tenant runs one
//! job at a time by default; its other jobs queue. Job state is files (status written
//! atomically, one results file per chunk), so a restarted host resumes queued and
//! running jobs from their first unscored chunk. Each scored chunk is one usage event,
//! with an id derived from (job, chunk), in the batch plane's own meter log.
//!
//! | module | job |
//! |---|---|
//! | [`input`] | upload lines → rows (the `/v1/eta` row parser), limits, chunks |
//! | [`job`] | job ids, status, files (atomic writes), the restart scan |
//! | [`queue`] | FIFO with a per-tenant running cap |
//! | [`worker`] | the worker threads: chunk → sandbox → usage event → results file |
//! | [`sched`] | `SCHED_IDLE` / nice 19 |
//! | [`http`] | the endpoints |

pub mod http;
pub mod input;
pub mod job;
pub mod queue;
pub mod sched;
pub mod worker;

use crate::metering::sink::Meter;
use crate::serve::api::Bounds;
use crate::serve::backend::Backend;
use crate::serve::tenants::Tenants;
use anyhow::{Context, Result};
use job::{Job, Status};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use queue::Queue;
use sched::SchedMode;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

/// The knobs (`serve --batch-*`).
#[derive(Debug, Clone)]
pub struct BatchConfig {
    /// `<data-dir>/batch`.
    pub dir: PathBuf,
    pub workers: usize,
    /// Jobs of one tenant running at once.
    pub per_tenant: usize,
    /// Unfinished (queued or running) jobs one tenant may have; more is a 429.
    pub max_jobs_per_tenant: usize,
    pub chunk_rows: u64,
    pub max_bytes: u64,
    pub max_rows: u64,
    pub sched: SchedMode,
    pub bounds: Bounds,
    /// Attempts of a chunk whose call failed for a reason other than its rows.
    pub attempts: u32,
    /// How long a finished job (status and results) is kept.
    pub retention: std::time::Duration,
}

impl BatchConfig {
    pub fn new(dir: PathBuf) -> BatchConfig {
        BatchConfig {
            dir,
            workers: 1,
            per_tenant: 1,
            max_jobs_per_tenant: 16,
            chunk_rows: 2000,
            max_bytes: 1 << 30,
            max_rows: 2_000_000,
            sched: SchedMode::Idle,
            bounds: Bounds::default(),
            attempts: 5,
            retention: std::time::Duration::from_secs(7 * 24 * 3600),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabel {
    tenant: String,
}

/// The batch plane's figures on `/metrics`.
#[derive(Clone, Default)]
pub struct BatchMetrics {
    rows: Family<TenantLabel, Counter>,
    guest_seconds: Family<TenantLabel, Counter<f64, AtomicU64>>,
    running: Family<TenantLabel, Gauge>,
}

impl BatchMetrics {
    fn t(tenant: &str) -> TenantLabel {
        TenantLabel {
            tenant: tenant.to_string(),
        }
    }

    /// Adds the families to `registry`.
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "bulkhead_batch_rows",
            "Rows scored by the batch plane, by tenant",
            self.rows.clone(),
        );
        registry.register(
            "bulkhead_batch_guest_seconds",
            "Seconds the tenant's model ran in the batch plane's sandbox",
            self.guest_seconds.clone(),
        );
        registry.register(
            "bulkhead_batch_jobs_running",
            "Batch jobs being scored now, by tenant",
            self.running.clone(),
        );
    }
}

pub struct BatchPlane {
    cfg: BatchConfig,
    jobs: Mutex<HashMap<String, Arc<Job>>>,
    queue: Queue,
    backend: Arc<dyn Backend>,
    meter: Option<Arc<Meter>>,
    /// What the data plane serves: a job runs only while the host would still serve its
    /// tenant (registered, active, on this data plane; checked before each chunk).
    tenants: Option<Arc<Tenants>>,
    metrics: BatchMetrics,
    workers: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl BatchPlane {
    /// Loads the jobs under `cfg.dir`, queues the unfinished ones (a running job resumes
    /// at its first unscored chunk) and starts the workers. `backend` must be the batch
    /// plane's own (its own sandbox), not the interactive one.
    pub fn start(
        cfg: BatchConfig,
        backend: Arc<dyn Backend>,
        meter: Option<Arc<Meter>>,
        tenants: Option<Arc<Tenants>>,
    ) -> Result<Arc<BatchPlane>> {
        std::fs::create_dir_all(&cfg.dir)
            .with_context(|| format!("creating {}", cfg.dir.display()))?;
        let plane = Arc::new(BatchPlane {
            queue: Queue::new(cfg.per_tenant),
            jobs: Mutex::new(HashMap::new()),
            backend,
            meter,
            tenants,
            metrics: BatchMetrics::default(),
            workers: Mutex::new(Vec::new()),
            cfg,
        });
        let mut found = job::scan(&plane.cfg.dir)?;
        found.sort_by(|a, b| a.1.created.cmp(&b.1.created));
        let mut resumed = 0;
        for (dir, status) in found {
            let unfinished = !status.status.finished();
            let j = Arc::new(Job {
                id: status.job_id.clone(),
                tenant: status.tenant.clone(),
                dir,
                status: Mutex::new(status),
            });
            plane.jobs().insert(j.id.clone(), Arc::clone(&j));
            if unfinished {
                plane.queue.push(j);
                resumed += 1;
            }
        }
        if resumed > 0 {
            tracing::info!(jobs = resumed, "batch plane: resuming unfinished jobs");
        }
        plane.expire();
        let mut handles = Vec::new();
        for n in 0..plane.cfg.workers.max(1) {
            let p = Arc::clone(&plane);
            handles.push(
                std::thread::Builder::new()
                    .name(format!("batch-w{n}"))
                    .spawn(move || worker::run(&p, n))
                    .context("starting a batch worker")?,
            );
        }
        *plane.workers.lock().unwrap_or_else(|e| e.into_inner()) = handles;
        tracing::info!(
            workers = plane.cfg.workers.max(1),
            per_tenant = plane.cfg.per_tenant,
            sched = ?plane.cfg.sched,
            dir = %plane.cfg.dir.display(),
            "batch plane started"
        );
        Ok(plane)
    }

    fn jobs(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Job>>> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn config(&self) -> &BatchConfig {
        &self.cfg
    }

    pub fn metrics(&self) -> &BatchMetrics {
        &self.metrics
    }

    /// Why `tenant`'s jobs may not run now, if so: the refusal its requests get (unknown,
    /// suspended, or on another data plane), as `code: reason`.
    pub fn refusal(&self, tenant: &str) -> Option<String> {
        let e = self.tenants.as_ref()?.route(tenant).err()?;
        Some(format!("{}: {}", e.error, e.reason))
    }

    /// The job `id` if it is `tenant`'s (another tenant's job is as absent as an unknown id).
    pub fn job(&self, tenant: &str, id: &str) -> Option<Arc<Job>> {
        self.jobs().get(id).filter(|j| j.tenant == tenant).cloned()
    }

    /// Unfinished jobs of `tenant`.
    pub fn unfinished(&self, tenant: &str) -> usize {
        self.jobs()
            .values()
            .filter(|j| j.tenant == tenant && !j.snapshot().status.finished())
            .count()
    }

    /// Registers a job whose upload and status are durable, and queues it.
    pub fn enqueue(&self, dir: PathBuf, status: Status) -> Arc<Job> {
        let j = Arc::new(Job {
            id: status.job_id.clone(),
            tenant: status.tenant.clone(),
            dir,
            status: Mutex::new(status),
        });
        self.jobs().insert(j.id.clone(), Arc::clone(&j));
        self.queue.push(Arc::clone(&j));
        self.expire();
        j
    }

    /// Forgets the finished jobs past the retention and deletes their files (checked at
    /// start and on every new job): the job table and the disk hold one retention
    /// period's jobs, not every job ever run.
    fn expire(&self) {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let old: Vec<Arc<Job>> = self
            .jobs()
            .values()
            .filter(|j| expired(&j.snapshot(), now_ms, self.cfg.retention))
            .cloned()
            .collect();
        for j in old {
            self.jobs().remove(&j.id);
            match std::fs::remove_dir_all(&j.dir) {
                Ok(()) => tracing::info!(job = %j.id, tenant = %j.tenant, "batch job expired"),
                Err(e) => {
                    tracing::warn!(job = %j.id, dir = %j.dir.display(), "expired batch job: {e}")
                }
            }
        }
    }

    /// Stops the workers after their current chunk (their jobs stay `running` on disk
    /// and resume on the next start) and waits for them.
    pub fn stop(&self) {
        self.queue.stop();
        let handles = std::mem::take(&mut *self.workers.lock().unwrap_or_else(|e| e.into_inner()));
        for h in handles {
            let _ = h.join();
        }
    }
}

/// Whether a job finished more than `retention` before `now_ms`.
fn expired(s: &Status, now_ms: i64, retention: std::time::Duration) -> bool {
    let keep = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    s.status.finished()
        && s.finished
            .as_deref()
            .and_then(crate::metering::event::parse_rfc3339)
            .is_some_and(|t| now_ms.saturating_sub(t) > keep)
}

impl std::fmt::Debug for BatchPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchPlane")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl Drop for BatchPlane {
    fn drop(&mut self) {
        self.queue.stop();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::metering::event::parse_rfc3339;
    use std::time::Duration;

    #[test]
    fn only_finished_jobs_past_the_retention_expire() {
        let mut s: Status = serde_json::from_value(serde_json::json!({
            "job_id": "j", "tenant": "DL", "status": "done", "format": "ndjson",
            "rows": 1, "rows_done": 1, "rows_failed": 0, "chunk_rows": 1, "chunks": 1,
            "model_name": "eta-DL", "model_selector": "production", "model_version": "1",
            "tier": "bridge", "region": "us-east-1",
            "created": "2026-11-20T00:00:00.000Z", "finished": "2026-11-20T01:00:00.000Z",
            "error": null
        }))
        .unwrap();
        let at = |t: &str| parse_rfc3339(t).unwrap();
        let week = Duration::from_secs(7 * 24 * 3600);
        assert!(!expired(&s, at("2026-11-27T00:59:00.000Z"), week));
        assert!(expired(&s, at("2026-11-27T01:01:00.000Z"), week));
        s.status = job::State::Running;
        assert!(!expired(&s, at("2026-12-27T00:00:00.000Z"), week));
    }
}
