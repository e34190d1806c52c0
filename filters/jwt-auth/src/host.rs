//! What the policy needs from the proxy, as a trait (Kuadrant wasm-shim style), so the
//! logic runs in native tests with a fake and in Envoy with proxy-wasm host calls.

pub use bulkhead_filter_kit::{SetError, SharedData};

/// The request headers of the current stream.
pub trait RequestHeaders {
    fn names(&self) -> Vec<String>;
    fn get(&self, name: &str) -> Option<String>;
    fn remove(&mut self, name: &str);
    fn set(&mut self, name: &str, value: &str);
}
