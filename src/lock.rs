//! The one policy for a poisoned lock, for every std `Mutex` of the program.
//!
//! A std `Mutex` is poisoned when a thread panics while holding it. A panic
//! is a bug, and the bug is logged where it happened (the panic message and
//! the task that died). What the lock guards may then be half updated, but
//! the process in front of a site keeps serving: every lock is taken with
//! [`lock`], which recovers the guard from the poison instead of panicking
//! again, so one failed request, hub message or connection does not turn
//! into every later one failing on the same lock. Each recovery is counted
//! (`cobrowse_lock_poison_recovered_total`) and logged, so a bug that
//! poisons a lock is seen, not silently lived with.
//!
//! Code that holds a lock keeps its invariants in small steps for this
//! reason: a panic between two of them leaves state another request can
//! still read (an id in one map and not yet in another, not a torn value).

use std::sync::{Mutex, MutexGuard};

use crate::telemetry;

/// Locks `mutex`, recovering it if a panic poisoned it (see the module).
pub(crate) fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| {
        metrics::counter!(telemetry::LOCK_POISON_RECOVERED).increment(1);
        tracing::error!("a lock was poisoned by a panic while held; recovering it and serving on");
        mutex.clear_poison();
        poisoned.into_inner()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_lock_is_recovered_with_what_it_held() {
        let m = std::sync::Arc::new(Mutex::new(1));
        let held = m.clone();
        let _ = std::thread::spawn(move || {
            let mut g = held.lock().unwrap();
            *g = 2;
            panic!("a bug while holding the lock");
        })
        .join();
        assert!(m.is_poisoned());
        assert_eq!(*lock(&m), 2);
        assert!(!m.is_poisoned(), "recovered once, not on every later lock");
    }
}
