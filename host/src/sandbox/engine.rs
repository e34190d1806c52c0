//! The one wasmtime `Engine` of the sandbox and its epoch ticker.
//!
//! Settings and why:
//! - component model on, Cranelift at `speed`: plugins are compiled once (then
//!   precompiled to disk) and run on every request.
//! - epoch interruption: a deadline check at loop headers and function entries costs a
//!   load and a compare, much cheaper than fuel; a ticker thread advances the epoch
//!   every `epoch_tick`, so a call's wall-time limit is `timeout / epoch_tick` ticks.
//!   (With epoch interruption on, a store without a deadline traps at once: `call.rs`
//!   always sets one.)
//! - pooling allocator sized for this machine: see [`pooling`].
//! - no async support: calls run synchronously on blocking threads (see `mod.rs`).
//! - no parallel compilation: a cold compile (once per plugin version, then it is
//!   precompiled) stays on its one blocking thread instead of taking both cores from
//!   the tenants being served meanwhile.

use super::{PoolConfig, SandboxConfig};
use anyhow::{Context, Result, anyhow, bail};
use std::hash::{Hash, Hasher};
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

/// The engine, its compatibility hash, and the ticker (stopped on drop).
pub struct SandboxEngine {
    pub engine: Engine,
    /// Hex digest of `Engine::precompile_compatibility_hash`: precompiled code is only
    /// valid for an engine with the same hash, so it is part of every cache key.
    pub compat_hash: String,
    pub epoch_tick: Duration,
    ticker: Option<Ticker>,
}

impl SandboxEngine {
    pub fn new(config: &SandboxConfig) -> Result<SandboxEngine> {
        if config.limits.memory_bytes > config.pool.max_memory_bytes {
            bail!(
                "limits.memory_bytes ({}) exceeds pool.max_memory_bytes ({})",
                config.limits.memory_bytes,
                config.pool.max_memory_bytes
            );
        }
        if config.epoch_tick.is_zero() {
            bail!("epoch_tick must be positive");
        }
        let mut wasm = Config::new();
        wasm.wasm_component_model(true)
            .cranelift_opt_level(OptLevel::Speed)
            .epoch_interruption(true)
            .parallel_compilation(false)
            .max_wasm_stack(config.max_wasm_stack)
            // Enough frames to locate a trap in the log, bounded so a deep recursion
            // does not make error reporting expensive.
            .wasm_backtrace_max_frames(NonZeroUsize::new(32))
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling(&config.pool)));
        let engine =
            Engine::new(&wasm).map_err(|e| anyhow!("creating the wasmtime engine: {e:?}"))?;
        let compat_hash = compatibility_hex(&engine);
        let ticker = Ticker::start(engine.clone(), config.epoch_tick)?;
        Ok(SandboxEngine {
            engine,
            compat_hash,
            epoch_tick: config.epoch_tick,
            ticker: Some(ticker),
        })
    }

    /// Epoch ticks for a wall-time budget: rounded up, plus one because the current tick
    /// is already partly over (never less than `timeout`, at most one tick more).
    pub fn deadline_ticks(&self, timeout: Duration) -> u64 {
        let tick = self.epoch_tick.as_nanos().max(1);
        let ticks = timeout.as_nanos().div_ceil(tick);
        u64::try_from(ticks).unwrap_or(u64::MAX).saturating_add(1)
    }
}

impl Drop for SandboxEngine {
    fn drop(&mut self) {
        if let Some(ticker) = self.ticker.take() {
            ticker.stop();
        }
    }
}

/// The pooling allocator. Every slot is reserved up front, so the numbers are sized to
/// what 2 cores can run at once rather than wasmtime's defaults (1,000 instances, each
/// memory slot reserving several GiB of address space):
/// - `total_component_instances` = calls in flight (`max_instances`, 64: far more than
///   2 cores keep busy with ≤ 50 ms calls, enough to queue bursts);
/// - core instances / memories / tables = that × the per-component maxima;
/// - `max_memory_size` = the largest memory any call may be allowed (the per-call
///   limit, smaller, is enforced by the store's limiter across all memories).
///
/// Resident cost is only what guests touch (slots are lazily faulted, and freed slots
/// keep at most `linear_memory_keep_resident` bytes each).
pub fn pooling(pool: &PoolConfig) -> PoolingAllocationConfig {
    let instances = pool.max_instances.max(1);
    let mut cfg = PoolingAllocationConfig::new();
    cfg.total_component_instances(instances)
        .total_core_instances(instances.saturating_mul(pool.max_core_instances_per_component))
        .max_core_instances_per_component(pool.max_core_instances_per_component)
        .total_memories(instances.saturating_mul(pool.max_memories_per_component))
        .max_memories_per_component(pool.max_memories_per_component)
        .max_memories_per_module(1)
        .total_tables(instances.saturating_mul(pool.max_tables_per_component))
        .max_tables_per_component(pool.max_tables_per_component)
        .max_tables_per_module(1)
        .table_elements(20_000)
        .max_memory_size(pool.max_memory_bytes)
        .linear_memory_keep_resident(pool.linear_memory_keep_resident)
        .table_keep_resident(64 << 10);
    cfg
}

/// Hashes `Engine::precompile_compatibility_hash` with sha256, so the name is stable
/// across processes and Rust versions (std's `DefaultHasher` promises neither).
fn compatibility_hex(engine: &Engine) -> String {
    let mut hasher = ShaHasher(sha2::Sha256::default());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    use sha2::Digest;
    let digest = hasher.0.finalize();
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

struct ShaHasher(sha2::Sha256);

impl Hasher for ShaHasher {
    fn write(&mut self, bytes: &[u8]) {
        use sha2::Digest;
        self.0.update(bytes);
    }
    fn finish(&self) -> u64 {
        // Only `write` matters here; `finish` is never used for the file name.
        0
    }
}

/// A thread that advances the engine's epoch every tick until stopped.
struct Ticker {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

impl Ticker {
    fn start(engine: Engine, tick: Duration) -> Result<Ticker> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    engine.increment_epoch();
                }
            })
            .context("starting the epoch ticker thread")?;
        Ok(Ticker { stop, handle })
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        // The thread wakes within one tick; a panic there has nothing to report.
        let _ = self.handle.join();
    }
}
