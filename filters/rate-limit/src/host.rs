//! What the policy needs from the proxy, as a trait, so the GCRA logic runs in native
//! tests with a fake and in Envoy with proxy-wasm host calls (see `wasm.rs`).

pub use bulkhead_filter_kit::SetError;

/// The host: wall clock and process-wide shared data with compare-and-swap.
pub trait Host {
    /// Wall-clock time as nanoseconds since the Unix epoch (proxy-wasm
    /// `get_current_time`; Envoy's WASI has no monotonic clock).
    fn now_nanos(&self) -> u64;
    /// Value and CAS token of `key`, or `None` when the key was never set.
    fn get_shared(&self, key: &str) -> Option<(Vec<u8>, u32)>;
    /// Stores `value` if `cas` still matches. `None` writes unconditionally; so does any
    /// CAS for a key that does not exist yet (Envoy's rule).
    fn set_shared(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetError>;
}

impl<T: Host + ?Sized> Host for &T {
    fn now_nanos(&self) -> u64 {
        (**self).now_nanos()
    }
    fn get_shared(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        (**self).get_shared(key)
    }
    fn set_shared(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetError> {
        (**self).set_shared(key, value, cas)
    }
}

impl<T: Host + ?Sized> Host for std::rc::Rc<T> {
    fn now_nanos(&self) -> u64 {
        (**self).now_nanos()
    }
    fn get_shared(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        (**self).get_shared(key)
    }
    fn set_shared(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetError> {
        (**self).set_shared(key, value, cas)
    }
}
