//! The model cache: an LRU of loaded models bounded by entries and bytes, with
//! single-flight loads.
//!
//! The key is ([`ModelKey`], engine compatibility hash). One `std` mutex guards the LRU
//! and the table of loads in flight; it is held only for map operations, never across a
//! load or an `.await`. A miss registers a `OnceCell` for its key and runs the load
//! outside the lock; concurrent misses for the same key find that cell and wait on it,
//! so a model loads once however many requests ask for it at the same moment. Misses
//! for different keys load in parallel. A failed load is handed to the calls waiting on
//! it and then forgotten: the next request tries again.
//!
//! Bytes are the artifact of each resident model plus the compiled code of each
//! distinct plugin among them (many tenants' models share one plugin, and its code is
//! in memory once).

use super::error::SandboxError;
use super::loader::LoadedModel;
use super::{CacheConfig, CacheOutcome, ModelKey, ResidentModel};
use lru::LruCache;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::OnceCell;

/// A cache key: the model and the engine its code was compiled for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    pub model: ModelKey,
    pub engine_hash: Arc<str>,
}

type LoadResult = Result<Arc<LoadedModel>, SandboxError>;
type Flight = Arc<OnceCell<LoadResult>>;

/// Counters, monotonic since start.
#[derive(Debug, Default)]
pub struct CacheCounters {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub joined: AtomicU64,
    pub loads: AtomicU64,
    pub load_failures: AtomicU64,
    pub load_time_us: AtomicU64,
    pub evictions: AtomicU64,
}

struct State {
    lru: LruCache<CacheKey, Arc<LoadedModel>>,
    inflight: HashMap<CacheKey, Flight>,
    /// Resident models per plugin sha256: a plugin's code is counted while > 0.
    plugin_refs: HashMap<String, usize>,
    bytes: u64,
    /// Evictions per model label (bounded by the distinct models ever loaded).
    evictions_by_label: HashMap<String, u64>,
}

pub struct ModelCache {
    config: CacheConfig,
    state: Mutex<State>,
    pub counters: CacheCounters,
}

/// Current residency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Residency {
    pub models: u64,
    pub bytes: u64,
}

impl ModelCache {
    pub fn new(config: CacheConfig) -> ModelCache {
        ModelCache {
            config,
            state: Mutex::new(State {
                lru: LruCache::unbounded(),
                inflight: HashMap::new(),
                plugin_refs: HashMap::new(),
                bytes: 0,
                evictions_by_label: HashMap::new(),
            }),
            counters: CacheCounters::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in a way
        // that matters (each update is a single insert/remove), so keep going.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The resident model for `key`, or the result of `load` (run once per key however
    /// many callers miss at the same time).
    pub async fn get_or_load<F, Fut>(&self, key: &CacheKey, load: F) -> (LoadResult, CacheOutcome)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = LoadResult>,
    {
        let flight = {
            let mut state = self.lock();
            if let Some(model) = state.lru.get(key) {
                self.counters.hits.fetch_add(1, Ordering::Relaxed);
                return (Ok(model.clone()), CacheOutcome::Hit);
            }
            self.counters.misses.fetch_add(1, Ordering::Relaxed);
            state.inflight.entry(key.clone()).or_default().clone()
        };
        let mut loaded_here = false;
        let result = flight
            .get_or_init(|| {
                loaded_here = true;
                self.counters.loads.fetch_add(1, Ordering::Relaxed);
                load()
            })
            .await
            .clone();
        if !loaded_here {
            self.counters.joined.fetch_add(1, Ordering::Relaxed);
            return (result, CacheOutcome::Joined);
        }
        // No `.await` from here on: the cell's result and the LRU insert happen together
        // even if this future is dropped right after.
        let mut state = self.lock();
        if state
            .inflight
            .get(key)
            .is_some_and(|f| Arc::ptr_eq(f, &flight))
        {
            state.inflight.remove(key);
        }
        match &result {
            Ok(model) => {
                self.counters
                    .load_time_us
                    .fetch_add(micros(model.info.load_time), Ordering::Relaxed);
                self.insert(&mut state, key.clone(), model.clone());
            }
            Err(_) => {
                self.counters.load_failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        (result, CacheOutcome::Miss)
    }

    fn insert(&self, state: &mut State, key: CacheKey, model: Arc<LoadedModel>) {
        state.bytes = state.bytes.saturating_add(model.artifact.len() as u64);
        let refs = state
            .plugin_refs
            .entry(model.plugin.sha256.clone())
            .or_insert(0);
        *refs += 1;
        if *refs == 1 {
            state.bytes = state.bytes.saturating_add(model.plugin.code_bytes as u64);
        }
        if let Some(old) = state.lru.put(key, model) {
            // Only if two loads of one key raced (a cancelled loader): keep counts right.
            Self::release(state, &old);
        }
        while (state.lru.len() > self.config.max_entries || state.bytes > self.config.max_bytes)
            && state.lru.len() > 1
        {
            if let Some((_, evicted)) = state.lru.pop_lru() {
                Self::release(state, &evicted);
                self.counters.evictions.fetch_add(1, Ordering::Relaxed);
                *state
                    .evictions_by_label
                    .entry(evicted.info.label.clone())
                    .or_insert(0) += 1;
                tracing::debug!(model = %evicted.info.label, "model evicted");
            }
        }
    }

    /// Undoes `insert`'s accounting for a model leaving the cache. (Calls still running
    /// on it keep it alive through their `Arc`.)
    fn release(state: &mut State, model: &LoadedModel) {
        state.bytes = state.bytes.saturating_sub(model.artifact.len() as u64);
        if let Some(refs) = state.plugin_refs.get_mut(&model.plugin.sha256) {
            *refs = refs.saturating_sub(1);
            if *refs == 0 {
                state.plugin_refs.remove(&model.plugin.sha256);
                state.bytes = state.bytes.saturating_sub(model.plugin.code_bytes as u64);
            }
        }
    }

    /// Drops every resident model.
    pub fn clear(&self) {
        let mut state = self.lock();
        state.lru.clear();
        state.plugin_refs.clear();
        state.bytes = 0;
    }

    /// The resident models, most recently used first.
    pub fn resident(&self) -> Vec<ResidentModel> {
        let state = self.lock();
        state
            .lru
            .iter()
            .map(|(_, m)| ResidentModel {
                key: m.info.key.clone(),
                label: m.info.label.clone(),
                artifact_bytes: m.artifact.len() as u64,
                plugin_code_bytes: m.plugin.code_bytes as u64,
                loaded_for: m.loaded_at.elapsed(),
            })
            .collect()
    }

    /// Evictions so far per model label.
    pub fn evictions_by_model(&self) -> Vec<(String, u64)> {
        let state = self.lock();
        let mut v: Vec<_> = state
            .evictions_by_label
            .iter()
            .map(|(label, n)| (label.clone(), *n))
            .collect();
        v.sort();
        v
    }

    pub fn residency(&self) -> Residency {
        let state = self.lock();
        Residency {
            models: state.lru.len() as u64,
            bytes: state.bytes,
        }
    }
}

pub fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
