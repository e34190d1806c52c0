//! Per-call resource accounting: the store's `ResourceLimiter` and the host-call budget.
//!
//! wasmtime's `StoreLimits` caps each linear memory on its own, so a component with two
//! memories could use twice the limit; this limiter sums every memory (and table) of the
//! store. A refused growth makes `memory.grow` return -1 as the spec says; the limiter
//! remembers it so that the trap that usually follows (a Rust guest aborts on allocation
//! failure) is reported as `memory`, not as a plain trap.

use super::Limits;
use super::bindings::Predictions;
use wasmtime::ResourceLimiter;

/// Memory and table accounting for one store (one call).
#[derive(Debug)]
pub struct CallLimiter {
    memory_limit: usize,
    table_limit: usize,
    memory_used: usize,
    memory_peak: usize,
    table_used: usize,
    /// A growth was refused: the call is failing for lack of memory.
    pub exceeded: bool,
}

impl CallLimiter {
    pub fn new(limits: &Limits) -> CallLimiter {
        CallLimiter {
            memory_limit: limits.memory_bytes,
            table_limit: limits.table_elements,
            memory_used: 0,
            memory_peak: 0,
            table_used: 0,
            exceeded: false,
        }
    }

    pub fn memory_peak(&self) -> usize {
        self.memory_peak
    }
}

/// Counts a growth from `current` to `desired` into `used` if the total stays within
/// `limit` (summed over all of the component's memories or tables).
fn grow(used: &mut usize, limit: usize, current: usize, desired: usize) -> bool {
    let total = used.saturating_add(desired.saturating_sub(current));
    if total > limit {
        return false;
    }
    *used = total;
    true
}

impl ResourceLimiter for CallLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Also called with `current == 0` when a memory is created at instantiation, so
        // initial sizes are counted too.
        let ok = grow(&mut self.memory_used, self.memory_limit, current, desired);
        self.exceeded |= !ok;
        self.memory_peak = self.memory_peak.max(self.memory_used);
        Ok(ok)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        // Allowed by us but refused by the pool slot (`max_memory_size`): still memory.
        self.exceeded = true;
        Ok(())
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = grow(&mut self.table_used, self.table_limit, current, desired);
        self.exceeded |= !ok;
        Ok(ok)
    }

    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.exceeded = true;
        Ok(())
    }

    fn instances(&self) -> usize {
        // Core instances of one component; the pool bounds it as well.
        64
    }

    fn memories(&self) -> usize {
        8
    }

    fn tables(&self) -> usize {
        8
    }
}

/// The host-call budget of one call: count and argument bytes.
#[derive(Debug)]
pub struct HostCallBudget {
    max_calls: u32,
    max_arg_bytes: usize,
    max_total_bytes: usize,
    pub calls: u32,
    pub total_bytes: usize,
}

/// A host call over budget: the guest is trapped with this, and the call fails with
/// [`super::ErrorKind::HostCallTooLarge`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("host call over budget: {0}")]
pub struct HostCallRefused(pub String);

impl HostCallBudget {
    pub fn new(limits: &Limits) -> HostCallBudget {
        HostCallBudget {
            max_calls: limits.max_hostcalls,
            max_arg_bytes: limits.max_hostcall_arg_bytes,
            max_total_bytes: limits.max_hostcall_total_bytes,
            calls: 0,
            total_bytes: 0,
        }
    }

    /// Counts one host call; refuses it past the call-count limit.
    pub fn count_call(&mut self, what: &str) -> Result<(), HostCallRefused> {
        self.calls = self.calls.saturating_add(1);
        if self.calls > self.max_calls {
            return Err(HostCallRefused(format!(
                "more than {} host calls ({what})",
                self.max_calls
            )));
        }
        Ok(())
    }

    /// Charges `bytes` of arguments of one call; refuses a single call over the per-call
    /// bound, or a request over the total.
    pub fn charge(&mut self, what: &str, bytes: usize) -> Result<(), HostCallRefused> {
        if bytes > self.max_arg_bytes {
            return Err(HostCallRefused(format!(
                "{what} with {bytes} argument bytes (limit {})",
                self.max_arg_bytes
            )));
        }
        self.total_bytes = self.total_bytes.saturating_add(bytes);
        if self.total_bytes > self.max_total_bytes {
            return Err(HostCallRefused(format!(
                "host calls totalling more than {} argument bytes",
                self.max_total_bytes
            )));
        }
        Ok(())
    }
}

/// The output produced by a plugin is over the limit: the call fails with
/// [`super::ErrorKind::OutputTooLarge`] (or `BadOutput` when it is too short).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct OutputRefused {
    pub too_large: bool,
    pub message: String,
}

/// The lengths of the `predictions` columns a guest returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputShape {
    pub values: usize,
    pub lower: usize,
    pub upper: usize,
    pub errors: usize,
    pub alerts: usize,
    /// Bytes of the row errors' messages and the alerts' reasons.
    pub text: usize,
}

/// The longest row-error message or alert reason a plugin may return.
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// Checks the size and shape of the predictions a guest returned: one value per row,
/// interval bounds for every row or for none, at most one error and one alert per row,
/// and at most `max_output_bytes` in all.
pub fn check_output(limits: &Limits, rows: usize, out: OutputShape) -> Result<(), OutputRefused> {
    let bytes = out
        .values
        .saturating_add(out.lower)
        .saturating_add(out.upper)
        .saturating_add(out.errors)
        .saturating_add(out.alerts.saturating_mul(2))
        .saturating_mul(size_of::<f64>())
        .saturating_add(out.text);
    let longest = out
        .values
        .max(out.lower)
        .max(out.upper)
        .max(out.errors)
        .max(out.alerts);
    if longest > rows || bytes > limits.max_output_bytes {
        return Err(OutputRefused {
            too_large: true,
            message: format!(
                "plugin returned {longest} predictions ({bytes} bytes) for {rows} rows (limit {} bytes)",
                limits.max_output_bytes
            ),
        });
    }
    if out.values < rows {
        return Err(OutputRefused {
            too_large: false,
            message: format!("plugin returned {} predictions for {rows} rows", out.values),
        });
    }
    let bounds = |n: usize| n == 0 || n == rows;
    if !bounds(out.lower) || !bounds(out.upper) || out.lower != out.upper {
        return Err(OutputRefused {
            too_large: false,
            message: format!(
                "plugin returned {} lower and {} upper bounds for {rows} rows (all or none)",
                out.lower, out.upper
            ),
        });
    }
    Ok(())
}

/// Checks what the row errors and alerts say: rows in range and ascending, an error
/// row's values NaN and every other row's finite, an alert's lateness finite and never
/// on an error row, each message at most [`MAX_MESSAGE_BYTES`]. `Err` names the first
/// violation (a plugin bug: the call fails as `bad_output`).
pub fn check_rows(out: &Predictions) -> Result<(), String> {
    let rows = out.values.len();
    let mut is_error = vec![false; rows];
    let mut last: Option<u32> = None;
    for e in &out.errors {
        let i = e.row as usize;
        if i >= rows || last.is_some_and(|l| e.row <= l) {
            return Err(format!("row error for row {} out of order or range", e.row));
        }
        if e.message.len() > MAX_MESSAGE_BYTES {
            return Err(format!("row error message of row {} is too long", e.row));
        }
        last = Some(e.row);
        if let Some(flag) = is_error.get_mut(i) {
            *flag = true;
        }
    }
    for (i, &err) in is_error.iter().enumerate() {
        let v = [out.values.get(i), out.lower.get(i), out.upper.get(i)];
        let ok = v
            .iter()
            .flatten()
            .all(|x| if err { x.is_nan() } else { x.is_finite() });
        if !ok {
            return Err(if err {
                format!("row {i} is a row error but has a value")
            } else {
                format!("row {i} has a non-finite value and no row error")
            });
        }
    }
    let mut last: Option<u32> = None;
    for a in &out.alerts {
        let i = a.row as usize;
        if i >= rows || last.is_some_and(|l| a.row <= l) {
            return Err(format!("alert for row {} out of order or range", a.row));
        }
        if is_error.get(i).copied().unwrap_or(true) || !a.late_minutes.is_finite() {
            return Err(format!(
                "alert for row {} on a row error or not finite",
                a.row
            ));
        }
        if a.reason.len() > MAX_MESSAGE_BYTES {
            return Err(format!("alert reason of row {} is too long", a.row));
        }
        last = Some(a.row);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn limiter_sums_memories() {
        let limits = Limits {
            memory_bytes: 100 << 16,
            ..Limits::default()
        };
        let mut l = CallLimiter::new(&limits);
        assert!(l.memory_growing(0, 60 << 16, None).unwrap());
        // A second memory: alone it would fit, together they do not.
        assert!(!l.memory_growing(0, 60 << 16, None).unwrap());
        assert!(l.exceeded);
        assert!(l.memory_growing(0, 40 << 16, None).unwrap());
        assert_eq!(l.memory_peak(), 100 << 16);
    }

    #[test]
    fn output_bounds() {
        let limits = Limits::default();
        let shape = |values, lower, upper| OutputShape {
            values,
            lower,
            upper,
            errors: 0,
            alerts: 0,
            text: 0,
        };
        assert!(check_output(&limits, 3, shape(3, 3, 3)).is_ok());
        assert!(check_output(&limits, 3, shape(3, 0, 0)).is_ok());
        assert!(
            check_output(&limits, 3, shape(4, 0, 0))
                .unwrap_err()
                .too_large
        );
        assert!(
            check_output(&limits, 3, shape(3, 4, 4))
                .unwrap_err()
                .too_large
        );
        assert!(
            !check_output(&limits, 3, shape(2, 2, 2))
                .unwrap_err()
                .too_large
        );
        assert!(
            !check_output(&limits, 3, shape(3, 3, 0))
                .unwrap_err()
                .too_large
        );
        assert!(
            !check_output(&limits, 3, shape(3, 1, 1))
                .unwrap_err()
                .too_large
        );
        let huge = limits.max_output_bytes / 8 + 1;
        assert!(
            check_output(&limits, huge, shape(huge, 0, 0))
                .unwrap_err()
                .too_large
        );
        let third = limits.max_output_bytes / 24 + 1;
        assert!(
            check_output(&limits, third, shape(third, third, third))
                .unwrap_err()
                .too_large
        );
    }

    #[test]
    fn hostcall_budget() {
        let limits = Limits {
            max_hostcall_arg_bytes: 10,
            max_hostcall_total_bytes: 25,
            max_hostcalls: 3,
            ..Limits::default()
        };
        let mut b = HostCallBudget::new(&limits);
        assert!(b.charge("lookup", 11).is_err());
        assert!(b.charge("lookup", 10).is_ok());
        assert!(b.charge("lookup", 10).is_ok());
        assert!(b.charge("lookup", 10).is_err());
        for _ in 0..3 {
            b.count_call("log").unwrap();
        }
        assert!(b.count_call("log").is_err());
    }
}
