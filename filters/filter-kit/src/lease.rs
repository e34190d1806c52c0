//! A fetch lease in shared data: at most one worker of the Envoy process fetches per
//! period. Envoy runs one VM per worker; without this every worker would fetch on its
//! own. The lease is a timestamp (ms) under `key`, taken by compare-and-swap.

use crate::shared::SharedData;

/// When the lease was last taken, by any worker.
pub fn last_taken(shared: &dyn SharedData, key: &str) -> Option<u64> {
    let (v, _) = shared.get(key)?;
    std::str::from_utf8(&v).ok()?.parse().ok()
}

/// Takes the lease if it was last taken `gap_ms` or more ago. `true` = this worker
/// fetches now.
pub fn take(shared: &dyn SharedData, key: &str, now_ms: u64, gap_ms: u64) -> bool {
    let stamp = now_ms.to_string();
    match shared.get(key) {
        // Never taken: two workers may both win this race once; harmless.
        None => shared.set(key, stamp.as_bytes(), None).is_ok(),
        Some((v, cas)) => {
            let last: u64 = std::str::from_utf8(&v)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            now_ms.saturating_sub(last) >= gap_ms
                && shared.set(key, stamp.as_bytes(), Some(cas)).is_ok()
        }
    }
}
