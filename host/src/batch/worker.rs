//! A batch worker: an OS thread of its own, lowered to the batch scheduling class, with
//! a private single-threaded tokio runtime for the sandbox's and the meter's async calls
//! (its blocking pool is the worker's own threads, lowered too — never the HTTP
//! runtime's). Per chunk: score it (a chunk the model refuses is re-scored row by row, so
//! a bad row is a per-row error, not a failed job), append its usage event (id from
//! job + chunk: a chunk scored again after a crash bills once), then write its results
//! file. The job's model version is resolved by its first chunk and pinned.

use super::BatchPlane;
use super::input::{Chunk, ChunkReader};
use super::job::{self, Job, State};
use super::sched;
use crate::metering::event::{Event, KeyKind, Prediction, RequestKey, uuid_v8};
use crate::sandbox::ErrorKind;
use crate::serve::backend::{BackendError, Batch, Call, FailureKind, Outcome};
use anyhow::{Context, Result, bail};
use bulkhead_registry::ModelRef;
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

pub fn run(plane: &Arc<BatchPlane>, n: usize) {
    let mode = plane.cfg.sched;
    let applied = sched::lower_and_log(mode, "batch worker");
    tracing::info!(
        worker = n,
        scheduling = applied.as_str(),
        "batch worker started"
    );
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(2)
        .thread_name(format!("batch-w{n}-blk"))
        .on_thread_start(move || {
            sched::lower_current_thread(mode);
        })
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(worker = n, "batch worker: no runtime: {e}");
            return;
        }
    };
    while let Some(job) = plane.queue.next() {
        let running = plane
            .metrics
            .running
            .get_or_create_owned(&super::BatchMetrics::t(&job.tenant));
        running.inc();
        let r = score_job(plane, &rt, &job);
        running.dec();
        if let Err(e) = r {
            tracing::error!(job = %job.id, tenant = %job.tenant, "batch job failed: {e:#}");
            let msg = format!("{e:#}");
            if let Err(e) = job.update(|s| {
                s.status = State::Failed;
                s.error = Some(msg);
                s.finished = Some(crate::metering::event::rfc3339(SystemTime::now()));
            }) {
                tracing::error!(job = %job.id, "recording the failure: {e:#}");
            }
        }
        plane.queue.done(&job.tenant);
    }
}

/// The usage event id of chunk `chunk` of `job`: SHA-256 over its own domain, so it
/// can never equal a request's event id.
pub fn chunk_event_id(tenant: &str, job: &str, chunk: u64) -> String {
    let mut h = Sha256::new();
    for part in [
        "bulkhead.meter.batch.v1",
        tenant,
        "predictions",
        job,
        &chunk.to_string(),
    ] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    uuid_v8(&h.finalize().into())
}

fn score_job(plane: &BatchPlane, rt: &tokio::runtime::Runtime, job: &Job) -> Result<()> {
    let s = job.update(|s| s.status = State::Running)?;
    let file = std::fs::File::open(job.input())
        .with_context(|| format!("opening {}", job.input().display()))?;
    let mut reader = ChunkReader::new(
        BufReader::with_capacity(1 << 16, file),
        s.format,
        plane.cfg.bounds,
        s.chunk_rows,
    );
    let mut model = ModelRef {
        name: s.model_name.clone(),
        version: s.model_version.clone().unwrap_or(s.model_selector.clone()),
    };
    let mut pinned = s.model_version.is_some();
    let (mut done_rows, mut failed_rows) = (0u64, 0u64);
    let is_done = |i: u64| job.chunk_file(i).exists();
    std::fs::create_dir_all(job.dir.join(job::RESULTS))?;
    loop {
        if plane.queue.stopping() {
            // Left `running`: the next start resumes at the first unscored chunk.
            return Ok(());
        }
        if let Some(why) = plane.refusal(&job.tenant) {
            // The chunks scored so far stay billed and readable; the rest is not scored.
            bail!("{why} (stopped after {done_rows} rows)");
        }
        let Some(chunk) = reader.next_chunk(&is_done)? else {
            break;
        };
        if is_done(chunk.index) {
            done_rows += chunk.rows;
            failed_rows += count_errors(&job.chunk_file(chunk.index))?;
            let (d, f) = (done_rows, failed_rows);
            job.set(|s| {
                s.rows_done = d;
                s.rows_failed = f;
            });
            continue;
        }
        let started = Instant::now();
        let scored = score_chunk(plane, rt, job, &model, &reader, &chunk)?;
        if !pinned {
            model.version = scored.version.clone();
            pinned = true;
            let v = scored.version.clone();
            job.update(|s| s.model_version = Some(v))?;
        }
        if scored.ok_rows > 0
            && let Some(meter) = &plane.meter
        {
            let key = RequestKey::new(
                KeyKind::RequestId,
                format!("batch:{}:{}", job.id, chunk.index),
            );
            let mut ev = Event::prediction(&Prediction {
                metric: crate::metering::event::Metric::Predictions,
                source: meter.source(),
                tenant: &job.tenant,
                key: &key,
                rows: scored.ok_rows,
                model_name: &model.name,
                model_version: &model.version,
                tier: &s.tier,
                region: &s.region,
                latency: started.elapsed(),
                at: SystemTime::now(),
            });
            ev.id = chunk_event_id(&job.tenant, &job.id, chunk.index);
            rt.block_on(meter.record(&ev))
                .map_err(|e| anyhow::anyhow!("the chunk's usage event is not durable: {e}"))?;
        }
        job::write_whole(&job.chunk_file(chunk.index), &scored.lines)?;
        plane
            .metrics
            .rows
            .get_or_create(&super::BatchMetrics::t(&job.tenant))
            .inc_by(chunk.rows);
        plane
            .metrics
            .guest_seconds
            .get_or_create(&super::BatchMetrics::t(&job.tenant))
            .inc_by(scored.guest_seconds);
        done_rows += chunk.rows;
        failed_rows += chunk.rows - scored.ok_rows;
        let (d, f) = (done_rows, failed_rows);
        job.set(|s| {
            s.rows_done = d;
            s.rows_failed = f;
        });
    }
    // Every results file's rename durable before the job says done.
    job::sync_dir(&job.dir.join(job::RESULTS))?;
    let (d, f) = (done_rows, failed_rows);
    job.update(|s| {
        s.status = State::Done;
        s.rows_done = d;
        s.rows_failed = f;
        s.finished = Some(crate::metering::event::rfc3339(SystemTime::now()));
    })?;
    tracing::info!(job = %job.id, tenant = %job.tenant, rows = d, failed = f, "batch job done");
    Ok(())
}

fn count_errors(path: &std::path::Path) -> Result<u64> {
    let f = std::fs::File::open(path)?;
    let mut n = 0;
    for line in BufReader::new(f).lines() {
        if line?.contains("\"error\":") {
            n += 1;
        }
    }
    Ok(n)
}

struct Scored {
    lines: Vec<u8>,
    ok_rows: u64,
    version: String,
    guest_seconds: f64,
}

/// One call, retried (with backoff) while it fails for a reason other than its rows.
fn call(
    plane: &BatchPlane,
    rt: &tokio::runtime::Runtime,
    job: &Job,
    model: &ModelRef,
    chunk: u64,
    rows: &Batch,
) -> Result<Result<Outcome, BackendError>> {
    let mut wait = Duration::from_millis(200);
    // The tier the job was submitted at (where its features live with PostgreSQL); a
    // status that names none reads as pool, whose shared tables are row-level secured.
    let tier = bulkhead_registry::Tier::parse(&job.snapshot().tier)
        .unwrap_or(bulkhead_registry::Tier::Pool);
    for attempt in 1..=plane.cfg.attempts.max(1) {
        let c = Call {
            tier,
            tenant: job.tenant.clone(),
            request_id: format!("batch-{}-{chunk}", job.id),
            model: model.clone(),
            rows: rows.clone(),
            // Alerts are for interactive answers; a batch's results are the predictions.
            alert_after_minutes: None,
        };
        match rt.block_on(plane.backend.predict(c)) {
            Ok(o) => return Ok(Ok(o)),
            Err(e) if e.kind == FailureKind::Sandbox(ErrorKind::BadInput) => return Ok(Err(e)),
            Err(e) if attempt < plane.cfg.attempts => {
                tracing::warn!(job = %job.id, chunk, attempt, "batch chunk failed, retrying: {e}");
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            Err(e) => bail!("chunk {chunk}: {e}"),
        }
    }
    bail!("chunk {chunk}: no attempt made")
}

fn score_chunk<R: BufRead>(
    plane: &BatchPlane,
    rt: &tokio::runtime::Runtime,
    job: &Job,
    model: &ModelRef,
    reader: &ChunkReader<R>,
    chunk: &Chunk,
) -> Result<Scored> {
    let first_row = chunk.index * reader_chunk_rows(job);
    let mut out = Vec::with_capacity(chunk.rows as usize * 80);
    match call(plane, rt, job, model, chunk.index, &chunk.batch)? {
        Ok(o) => {
            if o.predictions.len() as u64 != chunk.rows {
                bail!(
                    "chunk {}: the model returned {} predictions for {} rows",
                    chunk.index,
                    o.predictions.len(),
                    chunk.rows
                );
            }
            // A row the model could not score is an error line in its place.
            let mut errors = o.errors.iter().peekable();
            for ((i, p), (no, _)) in (0u32..).zip(&o.predictions).zip(&chunk.lines) {
                let row = first_row + u64::from(i);
                match errors.next_if(|e| e.row == i) {
                    Some(e) => write_error(&mut out, row, *no, &e.message)?,
                    None => write_prediction(&mut out, row, p)?,
                }
            }
            Ok(Scored {
                lines: out,
                ok_rows: chunk.rows - o.errors.len() as u64,
                version: o.model.version,
                guest_seconds: o.stats.guest_seconds,
            })
        }
        Err(_) => {
            // The model refused some row: score them one by one so that only the bad
            // rows fail.
            let (mut ok, mut guest, mut version) = (0, 0.0, None);
            for (i, (no, line)) in chunk.lines.iter().enumerate() {
                let row = first_row + i as u64;
                let batch = reader
                    .one_row(*no, line)
                    .map_err(|e| anyhow::anyhow!("{}", e.reason))?;
                match call(plane, rt, job, model, chunk.index, &batch)? {
                    Ok(o) if !o.errors.is_empty() => {
                        let e = o.errors.first().map_or("", |e| e.message.as_str());
                        write_error(&mut out, row, *no, e)?;
                    }
                    Ok(o) => {
                        let p = o.predictions.first().context("no prediction for a row")?;
                        write_prediction(&mut out, row, p)?;
                        ok += 1;
                        guest += o.stats.guest_seconds;
                        version = Some(o.model.version);
                    }
                    Err(e) => write_error(&mut out, row, *no, &e.message)?,
                }
            }
            Ok(Scored {
                lines: out,
                ok_rows: ok,
                version: version.unwrap_or_else(|| model.version.clone()),
                guest_seconds: guest,
            })
        }
    }
}

fn reader_chunk_rows(job: &Job) -> u64 {
    job.snapshot().chunk_rows.max(1)
}

/// The result line of a row the model refused.
fn write_error(out: &mut Vec<u8>, row: u64, line: u64, message: &str) -> Result<()> {
    let l = serde_json::json!({
        "row": row,
        "line": line,
        "error": "bad_input",
        "reason": clip(message),
    });
    serde_json::to_writer(&mut *out, &l)?;
    out.push(b'\n');
    Ok(())
}

fn write_prediction(
    out: &mut Vec<u8>,
    row: u64,
    p: &crate::serve::backend::Prediction,
) -> Result<()> {
    let line = serde_json::json!({
        "row": row,
        "eta_minutes": p.value,
        "lower": p.lower,
        "upper": p.upper,
    });
    serde_json::to_writer(&mut *out, &line)?;
    out.push(b'\n');
    Ok(())
}

fn clip(s: &str) -> String {
    s.chars()
        .take(200)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn chunk_event_ids_are_stable_and_distinct() {
        let a = chunk_event_id("DL", "j1", 0);
        assert_eq!(a, chunk_event_id("DL", "j1", 0));
        assert_ne!(a, chunk_event_id("DL", "j1", 1));
        assert_ne!(a, chunk_event_id("AA", "j1", 0));
        assert_eq!(a.len(), 36);
    }
}
