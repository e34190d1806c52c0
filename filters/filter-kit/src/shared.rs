//! Process-wide shared data with compare-and-swap (proxy-wasm `shared_data`), as a trait.

/// Why a shared-data write did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetError {
    /// Another worker wrote the key since we read it: read again and retry.
    CasMismatch,
    /// Any other failure: retrying will not help.
    Failed,
}

pub trait SharedData {
    /// Value and CAS token, or `None` when the key was never set.
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)>;
    /// Stores `value` if `cas` still matches. `None` writes unconditionally; so does any
    /// CAS for a key that does not exist yet (Envoy's rule).
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetError>;
}
