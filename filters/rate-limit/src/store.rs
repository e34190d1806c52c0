//! governor's GCRA over proxy-wasm shared data.
//!
//! GCRA keeps one number per key: the theoretical arrival time (TAT). governor's
//! [`RateLimiter`](governor::RateLimiter) computes the decision; where the TAT lives is
//! a [`StateStore`]. [`SharedStore`] keeps it in Envoy's process-wide shared data, one
//! key per registered tenant, and replaces it with compare-and-swap, retrying on a CAS
//! mismatch, so that every worker (each its own VM) applies one limit.
//!
//! The TAT is stored as nanoseconds since the **Unix epoch** (8 bytes, little endian),
//! not relative to some VM's start: governor measures time from the `start` its
//! `RateLimiter::new` reads off the clock, and that would differ per VM and per
//! configuration. [`EpochClock`] therefore answers the epoch itself to that first
//! reading (see [`EpochClock::at_epoch`]) and the wall clock afterwards: every VM, and
//! every configuration generation, agrees on the origin, and a stored TAT keeps its
//! meaning across a plan change.

use crate::host::{Host, SetError};
use governor::clock::Clock;
use governor::nanos::Nanos;
use governor::state::StateStore;
use std::cell::Cell;
use std::rc::Rc;

/// A CAS mismatch means another worker's write won (lock-free progress). With a handful
/// of workers losing this many rounds in a row does not happen; if it does, the request
/// is not counted and the caller fails closed.
pub const MAX_CAS_ATTEMPTS: u32 = 64;

/// What the clock and the store observed during the last decision, shared with the
/// policy (governor's `RateLimiter` owns both and exposes neither's internals): the
/// clock reading, the TAT in force afterwards (the new one when allowed, the current
/// one when limited), and whether an allowed decision could not be recorded.
#[derive(Clone, Default, Debug)]
pub struct Observed(Rc<Inner>);

#[derive(Default, Debug)]
struct Inner {
    now: Cell<u64>,
    tat: Cell<Option<u64>>,
    failed: Cell<bool>,
    retries: Cell<u32>,
}

impl Observed {
    /// The clock reading (ns since the epoch) of the last decision.
    pub fn now(&self) -> u64 {
        self.0.now.get()
    }
    /// The TAT (ns since the epoch) in force after the last decision.
    pub fn tat(&self) -> Option<u64> {
        self.0.tat.get()
    }
    /// Whether the last allowed decision could not be written to shared data.
    pub fn failed(&self) -> bool {
        self.0.failed.get()
    }
    /// CAS mismatches (another worker wrote first) retried during the last decision.
    pub fn retries(&self) -> u32 {
        self.0.retries.get()
    }
}

/// `governor::clock::Clock` over the host's wall clock, in nanoseconds since the Unix
/// epoch (`Instant = Nanos`).
#[derive(Debug)]
pub struct EpochClock<H> {
    host: H,
    running: Cell<bool>,
    observed: Observed,
}

impl<H: Host> EpochClock<H> {
    /// A clock that reads the Unix epoch (`Nanos(0)`) until [`EpochClock::run`]:
    /// `RateLimiter::new` takes its time origin from the clock, and the origin must be
    /// the same in every VM, so it must be the epoch.
    pub fn at_epoch(host: H, observed: Observed) -> Self {
        EpochClock {
            host,
            running: Cell::new(false),
            observed,
        }
    }

    /// From now on, read the host's wall clock.
    pub fn run(&self) {
        self.running.set(true);
    }
}

impl<H: Host> Clock for EpochClock<H> {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        if !self.running.get() {
            return Nanos::from(0);
        }
        let now = self.host.now_nanos();
        self.observed.0.now.set(now);
        Nanos::from(now)
    }
}

/// A keyed [`StateStore`] over shared data. Keys are the tenants' shared-data keys.
#[derive(Debug)]
pub struct SharedStore<H> {
    host: H,
    /// `T + τ` of the plan (ns): no state under this plan is further ahead of now.
    horizon: u64,
    observed: Observed,
}

impl<H: Host> SharedStore<H> {
    pub fn new(host: H, horizon: u64, observed: Observed) -> Self {
        SharedStore {
            host,
            horizon,
            observed,
        }
    }
}

/// 8 bytes, little endian, nanoseconds since the Unix epoch; 0 = no state.
pub fn encode(tat: u64) -> [u8; 8] {
    tat.to_le_bytes()
}

/// Anything but 8 bytes is treated as no state (and overwritten with CAS).
pub fn decode(bytes: &[u8]) -> Option<u64> {
    let tat = u64::from_le_bytes(bytes.try_into().ok()?);
    (tat != 0).then_some(tat)
}

impl<H: Host> StateStore for SharedStore<H> {
    type Key = String;

    fn measure_and_replace<T, F, E>(&self, key: &String, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let seen = &self.observed.0;
        seen.failed.set(false);
        seen.retries.set(0);
        // `check_key` read the clock just before calling us.
        let now = seen.now.get();
        let mut attempt = 1;
        loop {
            let (stored, cas) = match self.host.get_shared(key) {
                Some((bytes, cas)) => (decode(&bytes), Some(cas)),
                None => (None, None),
            };
            // After a plan change (or a wall clock stepped back) a TAT can be further
            // ahead than this plan's whole window T + τ: clamp it to "burst used up
            // now". The clamp is written back even when the request is limited, or it
            // would slide along with the clock and never let the tenant through.
            let tat = stored.map(|t| t.min(now.saturating_add(self.horizon)));
            let (result, write) = match f(tat.map(Nanos::from)) {
                Err(limited) => {
                    seen.tat.set(tat);
                    let clamped = tat.filter(|_| tat != stored);
                    (Err(limited), clamped)
                }
                Ok((allowed, next)) => (Ok(allowed), Some(u64::from(next))),
            };
            let Some(value) = write else {
                return result;
            };
            match self.host.set_shared(key, &encode(value), cas) {
                Ok(()) => {
                    seen.tat.set(Some(value));
                    return result;
                }
                Err(SetError::CasMismatch) if attempt < MAX_CAS_ATTEMPTS => {
                    attempt += 1;
                    seen.retries.set(attempt - 1);
                }
                // A limited request needs no write to be right.
                Err(_) if result.is_err() => return result,
                Err(_) => {
                    seen.tat.set(tat);
                    seen.failed.set(true);
                    return result;
                }
            }
        }
    }
}
