//! Named crash points for the crash-safety tests.
//!
//! A writer calls [`hit`] between the steps of a multi-file write (artifact written,
//! manifest written, alias written, …). When the environment variable
//! `BULKHEAD_CRASH_AT` names that point, the process aborts right there — no
//! destructors, no cleanup, like a power cut or a `kill -9` between two steps — so a
//! test can run `bulkhead train` in a child process and check that the registry it left
//! behind still loads and serves. Unset (always, outside tests), it is one environment
//! lookup per step of a write.

/// The environment variable naming the point to crash at.
pub const ENV: &str = "BULKHEAD_CRASH_AT";

/// Aborts the process if `BULKHEAD_CRASH_AT` is `name`.
pub fn hit(name: &str) {
    if std::env::var_os(ENV).is_some_and(|v| v == name) {
        eprintln!("{ENV}={name}: aborting here (crash test)");
        std::process::abort();
    }
}
