//! The shared traits over proxy-wasm host calls. Only these few functions touch the
//! host; the SDK's `hostcalls` panic on statuses they do not expect, so callers stick
//! to calls whose statuses are all mapped here.

use crate::reply::Reply;
use crate::shared::{SetError, SharedData};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{Action, MetricType, Status};
use std::time::{SystemTime, UNIX_EPOCH};

/// Shared data of the Envoy process (grouped by `vm_id`).
pub struct ProxyShared;

impl SharedData for ProxyShared {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        match hostcalls::get_shared_data(key) {
            Ok((Some(v), cas)) => Some((v, cas.unwrap_or(0))),
            _ => None,
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetError> {
        match hostcalls::set_shared_data(key, Some(value), cas) {
            Ok(()) => Ok(()),
            Err(Status::CasMismatch) => Err(SetError::CasMismatch),
            Err(_) => Err(SetError::Failed),
        }
    }
}

/// Wall-clock time since the Unix epoch (Envoy's WASI has no monotonic clock).
pub fn now_since_epoch() -> std::time::Duration {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).ok())
        .unwrap_or_default()
}

/// Defines the counter `<prefix>.<name>` (Envoy shows it as `wasmcustom.<prefix>.<name>`).
pub fn counter(prefix: &str, name: &str) -> Option<u32> {
    hostcalls::define_metric(MetricType::Counter, &format!("{prefix}.{name}")).ok()
}

pub fn bump(id: u32) {
    let _ = hostcalls::increment_metric(id, 1);
}

/// Sends `r` as the local reply of the current stream; the stream stops here.
pub fn send(r: &Reply) -> Action {
    let headers: Vec<(&str, &str)> = r
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let _ = hostcalls::send_http_response(r.status, headers, Some(r.body.as_bytes()));
    Action::Pause
}
