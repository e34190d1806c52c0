//! What the host grants a plugin: the two imports of the `model` world, and the
//! per-call state (`Store` data) behind them.
//!
//! Both imports take their strings as `WasmStr` (a view into guest memory) so sizes are
//! checked against the call's host-call budget before anything is copied out of the
//! guest: a plugin passing a 50 MB key costs the host a length check, not a 50 MB copy.
//! Over budget, the guest is trapped (the request fails with `hostcall_too_large`).

use super::bindings::{FEATURES_INTERFACE, LOG_INTERFACE, LogLevel, Value};
use super::limits::{CallLimiter, HostCallBudget};
use super::{FeatureSource, Limits};
use std::sync::Arc;
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, WasmList, WasmStr};

/// Log lines emitted per call; later ones are counted (`host_calls`) but dropped.
const MAX_LOG_LINES: u32 = 32;

/// Size charged per `list<string>` element on top of its bytes (its pointer + length
/// in guest memory), so a list of a million empty strings is not free.
const LIST_ELEMENT_BYTES: usize = 8;

/// The `Store` data of one call.
pub struct CallState {
    pub limiter: CallLimiter,
    pub budget: HostCallBudget,
    pub tenant: Arc<str>,
    pub request_id: Arc<str>,
    pub model: Arc<str>,
    pub features: Arc<dyn FeatureSource>,
    /// Time spent running the plugin's own code (not host calls), from call hooks.
    pub guest: GuestClock,
    /// `features.lookup` calls answered and the time the store took for them.
    pub lookups: LookupClock,
    max_log_line: usize,
    log_lines: u32,
}

impl Drop for CallState {
    // The store (and this) is dropped on the call's blocking thread, where a feature
    // source may still do blocking I/O to let go of what the call held.
    fn drop(&mut self) {
        self.features.end_call();
    }
}

/// Accumulates the time a store spends in guest code: it runs from entering wasm (or
/// returning to it from a host call) until leaving it (or calling the host). What a
/// tenant's model costs the data plane's CPUs, apart from what the host does for it.
#[derive(Debug, Default)]
pub struct GuestClock {
    since: Option<std::time::Instant>,
    pub total: std::time::Duration,
}

impl GuestClock {
    pub fn on(&mut self, hook: wasmtime::CallHook) {
        use wasmtime::CallHook;
        match hook {
            CallHook::CallingWasm | CallHook::ReturningFromHost => {
                self.since = Some(std::time::Instant::now());
            }
            CallHook::ReturningFromWasm | CallHook::CallingHost => {
                if let Some(t) = self.since.take() {
                    self.total += t.elapsed();
                }
            }
        }
    }
}

/// What the call's `features.lookup` host calls cost: how many reached the store, and
/// the wall time the store took to answer them (a SQLite read, or a PostgreSQL round
/// trip with its pool checkout).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LookupClock {
    pub count: u32,
    pub total: std::time::Duration,
}

impl CallState {
    pub fn new(
        limits: &Limits,
        tenant: Arc<str>,
        request_id: Arc<str>,
        model: Arc<str>,
        features: Arc<dyn FeatureSource>,
    ) -> CallState {
        CallState {
            limiter: CallLimiter::new(limits),
            budget: HostCallBudget::new(limits),
            tenant,
            request_id,
            model,
            features,
            guest: GuestClock::default(),
            lookups: LookupClock::default(),
            max_log_line: limits.max_log_line_bytes,
            log_lines: 0,
        }
    }
}

/// A linker with the host's imports and nothing else.
pub fn linker(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<CallState>> {
    let mut linker = Linker::new(engine);
    linker
        .instance(FEATURES_INTERFACE)?
        .func_wrap("lookup", lookup)?;
    linker.instance(LOG_INTERFACE)?.func_wrap("log", log)?;
    Ok(linker)
}

type LookupResult = Result<Option<Vec<Value>>, String>;

fn lookup(
    mut store: StoreContextMut<'_, CallState>,
    (table, key, columns): (WasmStr, WasmStr, WasmList<WasmStr>),
) -> wasmtime::Result<(LookupResult,)> {
    store.data_mut().budget.count_call("features.lookup")?;
    // Measure before copying: the element count first (cheap), then each string.
    let mut bytes = columns.len().saturating_mul(LIST_ELEMENT_BYTES);
    store.data_mut().budget.charge("features.lookup", bytes)?;
    bytes = bytes
        .saturating_add(table.to_str(&store)?.len())
        .saturating_add(key.to_str(&store)?.len());
    let mut names = Vec::with_capacity(columns.len());
    for column in columns.iter(&mut store)? {
        names.push(column?);
    }
    for name in &names {
        bytes = bytes.saturating_add(name.to_str(&store)?.len());
    }
    store.data_mut().budget.charge("features.lookup", bytes)?;
    // Within budget: now copy.
    let table = table.to_str(&store)?.into_owned();
    let key = key.to_str(&store)?.into_owned();
    let mut column_names = Vec::with_capacity(names.len());
    for name in &names {
        column_names.push(name.to_str(&store)?.into_owned());
    }
    let features = store.data().features.clone();
    let t0 = std::time::Instant::now();
    let answer = features.lookup(&table, &key, &column_names);
    let lookups = &mut store.data_mut().lookups;
    lookups.count = lookups.count.saturating_add(1);
    lookups.total += t0.elapsed();
    Ok((answer,))
}

fn log(
    mut store: StoreContextMut<'_, CallState>,
    (level, message): (LogLevel, WasmStr),
) -> wasmtime::Result<()> {
    let state = store.data_mut();
    state.budget.count_call("log.log")?;
    state.log_lines = state.log_lines.saturating_add(1);
    if state.log_lines > MAX_LOG_LINES {
        return Ok(());
    }
    let max = state.max_log_line;
    let text = message.to_str(&store)?;
    let line = truncate(&text, max);
    let state = store.data();
    let (tenant, request_id, model) = (&*state.tenant, &*state.request_id, &*state.model);
    match level {
        LogLevel::Debug => tracing::debug!(target: "plugin", tenant, request_id, model, "{line}"),
        LogLevel::Info => tracing::info!(target: "plugin", tenant, request_id, model, "{line}"),
        LogLevel::Warn => tracing::warn!(target: "plugin", tenant, request_id, model, "{line}"),
        LogLevel::Error => tracing::error!(target: "plugin", tenant, request_id, model, "{line}"),
    }
    Ok(())
}

/// At most `max` bytes of `text`, cut on a character boundary, marked when cut.
fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::truncate;

    #[test]
    fn truncates_on_char_boundary() {
        assert_eq!(truncate("short", 10), "short");
        let cut = truncate("ééééé", 3);
        assert!(cut.starts_with('é') && cut.ends_with("(10 bytes)"));
    }
}
