//! The job queue: first come, first served, except that a tenant runs at most
//! `per_tenant` jobs at once (its other jobs wait while other tenants' jobs run).

use super::job::Job;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};

#[derive(Default)]
struct State {
    queued: VecDeque<Arc<Job>>,
    running: HashMap<String, usize>,
    stop: bool,
}

pub struct Queue {
    per_tenant: usize,
    state: Mutex<State>,
    cv: Condvar,
}

impl Queue {
    pub fn new(per_tenant: usize) -> Queue {
        Queue {
            per_tenant: per_tenant.max(1),
            state: Mutex::new(State::default()),
            cv: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn push(&self, job: Arc<Job>) {
        self.lock().queued.push_back(job);
        self.cv.notify_all();
    }

    /// The next job a worker may run (blocking); `None` once stopping.
    pub fn next(&self) -> Option<Arc<Job>> {
        let mut s = self.lock();
        loop {
            if s.stop {
                return None;
            }
            let per_tenant = self.per_tenant;
            let pos = {
                let running = &s.running;
                s.queued
                    .iter()
                    .position(|j| running.get(&j.tenant).copied().unwrap_or(0) < per_tenant)
            };
            if let Some(job) = pos.and_then(|i| s.queued.remove(i)) {
                *s.running.entry(job.tenant.clone()).or_default() += 1;
                return Some(job);
            }
            s = self.cv.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// A worker is done with a job of `tenant`.
    pub fn done(&self, tenant: &str) {
        let mut s = self.lock();
        if let Some(n) = s.running.get_mut(tenant) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                s.running.remove(tenant);
            }
        }
        drop(s);
        self.cv.notify_all();
    }

    pub fn stop(&self) {
        self.lock().stop = true;
        self.cv.notify_all();
    }

    pub fn stopping(&self) -> bool {
        self.lock().stop
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::batch::job::{Format, State as JobState, Status};

    fn job(id: &str, tenant: &str) -> Arc<Job> {
        Arc::new(Job {
            id: id.into(),
            tenant: tenant.into(),
            dir: std::path::PathBuf::new(),
            status: Mutex::new(Status {
                job_id: id.into(),
                tenant: tenant.into(),
                status: JobState::Queued,
                format: Format::Ndjson,
                rows: 1,
                rows_done: 0,
                rows_failed: 0,
                chunk_rows: 1,
                chunks: 1,
                model_name: "m".into(),
                model_selector: "production".into(),
                model_version: None,
                tier: "pool".into(),
                region: "r".into(),
                created: String::new(),
                finished: None,
                error: None,
            }),
        })
    }

    #[test]
    fn one_running_job_per_tenant_others_pass_it() {
        let q = Queue::new(1);
        q.push(job("a1", "A"));
        q.push(job("a2", "A"));
        q.push(job("b1", "B"));
        assert_eq!(q.next().unwrap().id, "a1");
        // A is busy: B's job goes first although it came later.
        assert_eq!(q.next().unwrap().id, "b1");
        q.done("A");
        assert_eq!(q.next().unwrap().id, "a2");
        q.stop();
        assert!(q.next().is_none());
    }
}
