//! Why a sandboxed call failed: one kind per cause (a metrics label and the basis of
//! the HTTP status), plus the message and wasm backtrace for the log.

use std::fmt;

/// The cause of a failed call. Every kind but [`ErrorKind::BadInput`] is the plugin's
/// or the host's fault (a 5xx); `BadInput` is the caller's rows (a 4xx).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The call ran past its wall-time limit (epoch deadline).
    Timeout,
    /// The plugin tried to grow its memory (or tables) past the limit.
    Memory,
    /// The plugin trapped (`unreachable`, a panic, out-of-bounds access, calling an
    /// import the host does not grant, a canonical-ABI violation, …).
    Trap,
    /// The plugin exhausted its wasm stack.
    StackOverflow,
    /// More predictions than rows, or more bytes than `max_output_bytes`.
    OutputTooLarge,
    /// Fewer predictions than rows.
    BadOutput,
    /// A host call (`features.lookup`) with too many argument bytes, or too many calls.
    HostCallTooLarge,
    /// The plugin refused the artifact (`model-error::bad-artifact`).
    BadArtifact,
    /// The plugin refused a row (`model-error::bad-input`): the caller's fault.
    BadInput,
    /// The plugin reported `model-error::internal`.
    PluginError,
    /// The model could not be loaded: fetch failed, hash mismatch, not a valid
    /// component, imports the host does not satisfy, …
    LoadFailed,
    /// A host-side failure (a worker thread died, the pool refused an instance).
    Internal,
}

impl ErrorKind {
    /// Stable snake_case name (metrics label, JSON `reason`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Timeout => "timeout",
            ErrorKind::Memory => "memory",
            ErrorKind::Trap => "trap",
            ErrorKind::StackOverflow => "stack_overflow",
            ErrorKind::OutputTooLarge => "output_too_large",
            ErrorKind::BadOutput => "bad_output",
            ErrorKind::HostCallTooLarge => "hostcall_too_large",
            ErrorKind::BadArtifact => "bad_artifact",
            ErrorKind::BadInput => "bad_input",
            ErrorKind::PluginError => "plugin_error",
            ErrorKind::LoadFailed => "load_failed",
            ErrorKind::Internal => "internal",
        }
    }

    /// True when the caller's request is at fault (answer 4xx, not 5xx).
    pub fn is_caller_error(self) -> bool {
        self == ErrorKind::BadInput
    }

    /// Every kind, for pre-registering metric label sets.
    pub const ALL: [ErrorKind; 12] = [
        ErrorKind::Timeout,
        ErrorKind::Memory,
        ErrorKind::Trap,
        ErrorKind::StackOverflow,
        ErrorKind::OutputTooLarge,
        ErrorKind::BadOutput,
        ErrorKind::HostCallTooLarge,
        ErrorKind::BadArtifact,
        ErrorKind::BadInput,
        ErrorKind::PluginError,
        ErrorKind::LoadFailed,
        ErrorKind::Internal,
    ];
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed call. `message` is short and safe to show the caller; `detail` (the wasm
/// backtrace, the full error chain) is for the log only.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct SandboxError {
    pub kind: ErrorKind,
    pub message: String,
    pub detail: Option<String>,
}

impl SandboxError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        SandboxError {
            kind,
            message: message.into(),
            detail: None,
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// Maps a wasmtime error from instantiating or calling a plugin to its kind.
/// `memory_exceeded`: the store's limiter refused a growth during the call (the trap
/// that follows, typically `unreachable` from the guest's allocation-failure abort, is
/// then reported as `memory`).
pub fn classify(error: wasmtime::Error, memory_exceeded: bool) -> SandboxError {
    use super::limits::{HostCallRefused, OutputRefused};
    use wasmtime::Trap;
    // The chain (message, wasm backtrace, cause) only: `{:?}` would also render the
    // host's Rust backtrace when RUST_BACKTRACE is set, which costs hundreds of ms.
    let detail = error
        .chain()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\ncaused by: ");
    let root = error.root_cause().to_string();
    let (kind, message) = if let Some(refused) = error.downcast_ref::<HostCallRefused>() {
        (ErrorKind::HostCallTooLarge, refused.to_string())
    } else if let Some(refused) = error.downcast_ref::<OutputRefused>() {
        let kind = if refused.too_large {
            ErrorKind::OutputTooLarge
        } else {
            ErrorKind::BadOutput
        };
        (kind, refused.message.clone())
    } else if let Some(trap) = error.downcast_ref::<Trap>() {
        match trap {
            Trap::Interrupt => (ErrorKind::Timeout, "wall-time limit exceeded".to_string()),
            Trap::StackOverflow => (ErrorKind::StackOverflow, trap.to_string()),
            _ if memory_exceeded => (
                ErrorKind::Memory,
                format!("memory limit exceeded (then: {trap})"),
            ),
            _ => (ErrorKind::Trap, trap.to_string()),
        }
    } else if memory_exceeded {
        (
            ErrorKind::Memory,
            format!("memory limit exceeded (then: {root})"),
        )
    } else if error
        .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
        .is_some()
    {
        (ErrorKind::Internal, root)
    } else if root.starts_with("unknown import") {
        // A Rust plugin's panic or abort path reaches for WASI (environment, stderr).
        (
            ErrorKind::Trap,
            format!(
                "the plugin called an import the host does not grant, as a panic does ({root})"
            ),
        )
    } else {
        // Canonical-ABI violations (bad pointers, invalid UTF-8, …): the guest's fault.
        (ErrorKind::Trap, root)
    };
    SandboxError {
        kind,
        message,
        detail: Some(detail),
    }
}
