//! Threads that work on spare CPU only: password hashing and webhook delivery run beside the
//! message path on the same cores, and must never make it wait.

/// Puts the calling thread in the `SCHED_IDLE` class: it runs when a core would otherwise
/// idle, and any other thread that wakes up takes the core from it at once. (Plain nice levels
/// did not do it for password hashes: a waking runtime thread still waited behind a hash often;
/// see BENCHMARKS.md.) On Linux this acts on the calling thread only, and threads it starts
/// inherit it. Failing is harmless: the work then competes as an equal. `what` names the thread
/// in the log.
pub fn lower_priority(what: &str) {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `param` outlives the call; 0 names the calling thread.
        let failed = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } != 0;
        if failed {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "could not lower the priority of {what}"
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = what;
}
