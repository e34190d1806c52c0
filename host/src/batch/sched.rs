//! The batch plane's OS scheduling class. Batch threads put themselves in `SCHED_IDLE`
//! (they run only when no normal thread wants the CPU, so they can never take the
//! interactive pool's CPUs); where that is refused they fall back to nice 19.
//! Threads a thread creates inherit its policy (glibc's default `PTHREAD_INHERIT_SCHED`),
//! so a worker's own helper threads stay idle-class too.

/// How batch threads are scheduled (`serve --batch-sched`).
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SchedMode {
    /// `SCHED_IDLE` (fallback: nice 19).
    #[default]
    Idle,
    /// Like any other thread (for measuring what the idle class buys only).
    Normal,
}

/// What a thread ended up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    SchedIdle,
    Nice19,
    /// Left as it was (`--batch-sched normal`, or both calls refused).
    Unchanged,
}

impl Applied {
    pub fn as_str(self) -> &'static str {
        match self {
            Applied::SchedIdle => "SCHED_IDLE",
            Applied::Nice19 => "nice 19",
            Applied::Unchanged => "unchanged",
        }
    }
}

/// Lowers the calling thread (only it: on Linux these calls with id 0 act on the calling
/// thread) to `mode`.
pub fn lower_current_thread(mode: SchedMode) -> Applied {
    if mode == SchedMode::Normal {
        return Applied::Unchanged;
    }
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: plain system calls on the calling thread with a valid, initialised argument.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } == 0 {
        return Applied::SchedIdle;
    }
    // SAFETY: as above; `gettid` cannot fail.
    let tid = unsafe { libc::gettid() };
    #[allow(clippy::cast_sign_loss)]
    // SAFETY: as above.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19) } == 0 {
        return Applied::Nice19;
    }
    Applied::Unchanged
}

/// [`lower_current_thread`], logged once with `what` (the thread's job).
pub fn lower_and_log(mode: SchedMode, what: &str) -> Applied {
    let a = lower_current_thread(mode);
    match a {
        Applied::SchedIdle => tracing::debug!(thread = what, "batch thread in SCHED_IDLE"),
        Applied::Nice19 => {
            tracing::info!(thread = what, "SCHED_IDLE refused: batch thread at nice 19")
        }
        Applied::Unchanged if mode == SchedMode::Idle => {
            tracing::warn!(thread = what, "could not lower the batch thread's priority")
        }
        Applied::Unchanged => {}
    }
    a
}

/// The calling thread's scheduling policy (`libc::SCHED_*`), or -1.
pub fn current_policy() -> i32 {
    // SAFETY: a plain system call on the calling thread.
    unsafe { libc::sched_getscheduler(0) }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn a_lowered_thread_is_idle_class_and_its_children_inherit_it() {
        let (own, child) = std::thread::spawn(|| {
            let a = lower_current_thread(SchedMode::Idle);
            assert_eq!(
                a,
                Applied::SchedIdle,
                "SCHED_IDLE needs no privilege on Linux"
            );
            let own = current_policy();
            let child = std::thread::spawn(current_policy).join().unwrap();
            (own, child)
        })
        .join()
        .unwrap();
        assert_eq!(own, libc::SCHED_IDLE);
        assert_eq!(child, libc::SCHED_IDLE);
        // The spawning thread itself is untouched.
        assert_eq!(current_policy(), libc::SCHED_OTHER);
    }

    #[test]
    fn normal_mode_leaves_the_thread_alone() {
        let p = std::thread::spawn(|| {
            assert_eq!(lower_current_thread(SchedMode::Normal), Applied::Unchanged);
            current_policy()
        })
        .join()
        .unwrap();
        assert_eq!(p, libc::SCHED_OTHER);
    }
}
