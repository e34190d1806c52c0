//! Test support for the serve tests: a fake model backend and a server on 127.0.0.1:0.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use bulkhead::dev::issuer::{DEV_AUDIENCE, DEV_ISSUER, DevIssuer};
use bulkhead::registry::watch::Watcher;
use bulkhead::serve::backend::{
    Backend, BackendError, BoxFuture, CacheStats, Call, CallStats, ModelId, Outcome, Prediction,
};
use bulkhead::serve::identity::Identity;
use bulkhead::serve::tenants::Tenants;
use bulkhead::serve::{App, Options};
use bulkhead_registry::ModelRef;
use bulkhead_testkit::client::{Response, http_request};
use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const DEV: &str = include_str!("../../registry.dev.json");

/// The dev registry with extra members spliced into some tenants' objects, e.g.
/// `("DL", "\"max_concurrency\": 1")`.
pub fn registry_with(extra: &[(&str, &str)]) -> String {
    let mut doc = DEV.to_string();
    for (org, members) in extra {
        let at = format!("\"{org}\": {{");
        assert!(doc.contains(&at), "no tenant {org}");
        doc = doc.replacen(&at, &format!("{at} {members},"), 1);
    }
    doc
}

/// The real backend over the model store in `data_dir`: the wasmtime sandbox (precompiled
/// code cached there), a 200 ms resolve cache.
pub fn wasm_backend(data_dir: &Path) -> Arc<bulkhead::serve::wasm::WasmBackend> {
    let sandbox = bulkhead::sandbox::Sandbox::new(bulkhead::sandbox::SandboxConfig {
        data_dir: Some(data_dir.to_path_buf()),
        ..bulkhead::sandbox::SandboxConfig::default()
    })
    .unwrap();
    Arc::new(bulkhead::serve::wasm::WasmBackend::new(
        bulkhead::models::store::ModelStore::open(data_dir).unwrap(),
        Arc::new(sandbox),
        Duration::from_millis(200),
    ))
}

/// `{"rows": [...]}` with `n` rows.
pub fn eta_body(n: usize) -> Vec<u8> {
    let row = serde_json::json!({"origin":"EWR","dest":"ORD","month":1,"sched_dep_hour":6,"distance":719,"dep_delay":null});
    serde_json::to_vec(&serde_json::json!({"rows": vec![row; n]})).unwrap()
}

/// A model backend without wasm: prediction `i` for row `i` (interval `i-1 … i+1`), a
/// row error for a row with a numeric `refuse` feature, the version `7` for
/// `production`; optional delay, forced failure, gated warm-up.
#[derive(Default)]
pub struct Fake {
    pub delay: Duration,
    pub fail: Mutex<Option<BackendError>>,
    pub calls: AtomicU64,
    pub started: AtomicU64,
    pub seen: Mutex<HashSet<String>>,
    pub gate: Option<Arc<AtomicBool>>,
}

impl Fake {
    pub fn gated() -> Fake {
        Fake {
            gate: Some(Arc::new(AtomicBool::new(false))),
            ..Fake::default()
        }
    }

    pub fn open_gate(&self) {
        if let Some(g) = &self.gate {
            g.store(true, Ordering::SeqCst);
        }
    }

    fn id(m: &ModelRef) -> ModelId {
        ModelId {
            name: m.name.clone(),
            version: if m.version == "production" {
                "7".into()
            } else {
                m.version.clone()
            },
        }
    }
}

impl Backend for Fake {
    fn predict(&self, call: Call) -> BoxFuture<'_, Result<Outcome, BackendError>> {
        Box::pin(async move {
            self.started.fetch_add(1, Ordering::SeqCst);
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            self.calls.fetch_add(1, Ordering::SeqCst);
            if let Some(e) = self.fail.lock().unwrap().clone() {
                return Err(e);
            }
            let first = self.seen.lock().unwrap().insert(call.model.name.clone());
            let refused: Vec<u32> = call
                .rows
                .columns
                .iter()
                .filter(|c| c.name == "refuse")
                .flat_map(|c| match &c.values {
                    bulkhead::sandbox::ColumnValues::Numbers(v) => (0u32..)
                        .zip(v)
                        .filter(|(_, x)| !x.is_nan())
                        .map(|(i, _)| i)
                        .collect(),
                    _ => Vec::new(),
                })
                .collect();
            Ok(Outcome {
                model: Fake::id(&call.model),
                predictions: (0..call.rows.rows as usize)
                    .map(|i| match refused.contains(&(i as u32)) {
                        true => Prediction {
                            value: f64::NAN,
                            lower: Some(f64::NAN),
                            upper: Some(f64::NAN),
                        },
                        false => Prediction {
                            value: i as f64,
                            lower: Some(i as f64 - 1.0),
                            upper: Some(i as f64 + 1.0),
                        },
                    })
                    .collect(),
                errors: refused
                    .iter()
                    .map(|&row| bulkhead::sandbox::RowError {
                        row,
                        message: "refused by the fake".into(),
                    })
                    .collect(),
                alerts: Vec::new(),
                stats: CallStats {
                    cache_hit: !first,
                    load_seconds: first.then_some(0.002),
                    // A fixed 1.5 ms of guest time per call (checked in /metrics).
                    guest_seconds: 0.0015,
                    // And 3 feature lookups taking 0.25 ms in all.
                    feature_lookups: 3,
                    feature_lookup_seconds: 0.00025,
                },
            })
        })
    }

    fn warm(&self, model: ModelRef) -> BoxFuture<'_, Result<ModelId, BackendError>> {
        Box::pin(async move {
            if let Some(g) = &self.gate
                && !g.load(Ordering::SeqCst)
            {
                return Err(BackendError::new(
                    bulkhead::serve::backend::FailureKind::ModelNotFound,
                    "gate closed",
                ));
            }
            Ok(Fake::id(&model))
        })
    }

    fn cache_stats(&self) -> CacheStats {
        CacheStats {
            hits: 0,
            misses: 0,
            loads: 5,
            evictions: 4,
            resident_models: 2,
            resident_bytes: 1234,
            resident_bytes_by_model: vec![("eta-DL".into(), 1000), ("eta-global".into(), 234)],
            evictions_by_model: vec![("eta-DL".into(), 3), ("eta-global".into(), 1)],
        }
    }
}

/// A `bulkhead serve` app on 127.0.0.1:0, on its own runtime thread; stopped on drop.
pub struct Server {
    port: u16,
    issuer: DevIssuer,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    pub fn start(backend: Arc<dyn Backend>, registry: &str, opts: Options) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.json");
        std::fs::write(&path, registry).unwrap();
        Server::start_at(backend, &path, dir, opts)
    }

    pub fn start_at(
        backend: Arc<dyn Backend>,
        registry: &Path,
        dir: tempfile::TempDir,
        opts: Options,
    ) -> Server {
        let issuer = DevIssuer::open(&dir.path().join("dev")).unwrap();
        let identity =
            Identity::from_jwks(&issuer.jwks().unwrap(), DEV_ISSUER, DEV_AUDIENCE, "org_id")
                .unwrap();
        let watcher = Arc::new(Watcher::open(registry).unwrap());
        let tenants = Arc::new(Tenants::new(watcher, opts.plane.clone()).unwrap());
        let app = App::new(identity, tenants, backend, &opts).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap().port()).unwrap();
                bulkhead::serve::serve(listener, app, &opts, async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
            });
        });
        let port = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        Server {
            port,
            issuer,
            _dir: dir,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn token(&self, org: &str) -> String {
        self.issuer.token(org, 600).unwrap()
    }

    pub fn get(&self, path: &str) -> Response {
        http_request(self.port, "GET", path, &[], b"").unwrap()
    }

    pub fn post(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        let mut h = headers.to_vec();
        h.push(("content-type", "application/json"));
        http_request(self.port, "POST", path, &h, body).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
