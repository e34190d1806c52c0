//! What the policy needs from the proxy, as a trait (Kuadrant wasm-shim style), so the
//! logic runs in native tests with a fake and in Envoy with proxy-wasm host calls.

/// Process-wide shared data with compare-and-swap (proxy-wasm `shared_data`).
pub trait SharedData {
    /// Value and CAS token, or `None` when the key was never set.
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)>;
    /// Stores `value` if `cas` still matches (or `None`: unconditionally).
    /// `false` on a CAS mismatch or any other failure.
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool;
}

/// The request headers of the current stream.
pub trait RequestHeaders {
    fn names(&self) -> Vec<String>;
    fn get(&self, name: &str) -> Option<String>;
    fn remove(&mut self, name: &str);
    fn set(&mut self, name: &str, value: &str);
}
