//! Metering you can bill on: one durable usage event per successful request, and the
//! `bulkhead meter` commands that turn the log into a bill.
//!
//! | module | job |
//! |---|---|
//! | [`event`] | the CloudEvent, its deterministic id (tenant + request key), time and period |
//! | [`log`] | append-only segmented log: crc32-framed records, fsync with group commit, torn-tail recovery |
//! | [`sink`] | the data plane's meter: `POST /v1/eta` answers only after its event is durable |
//! | [`training`] | the batch plane's meter: one `training_seconds` event per tenant model `bulkhead train` fits |
//! | [`aggregate`] | per-tenant usage of a period, exactly once per event id, persisted dedupe state |
//! | [`reconcile`] | recompute from the raw log, diff against the stored aggregate |
//! | [`export`] | Stripe billing meter events (NDJSON), no network |
//! | [`cli`] | `bulkhead meter aggregate|reconcile|export|tail` |

pub mod aggregate;
pub mod cli;
pub mod event;
pub mod export;
pub mod log;
pub mod reconcile;
pub mod sink;
pub mod training;
