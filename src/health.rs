//! The collector's state (starting, ready, stopping), set by the service and read by whoever
//! reports it: the `health_check` extension today, the `/metrics` uptime and zpages later.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Instant, SystemTime};

const STARTING: u8 = 0;
const READY: u8 = 1;
const STOPPING: u8 = 2;

/// The collector's state as the health check reports it.
pub struct Health {
    state: AtomicU8,
    since: std::sync::Mutex<(SystemTime, Instant)>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            state: AtomicU8::new(STARTING),
            since: std::sync::Mutex::new((SystemTime::now(), Instant::now())),
        }
    }
}

impl Health {
    pub fn set_ready(&self) {
        *self.since.lock().unwrap_or_else(|p| p.into_inner()) = (SystemTime::now(), Instant::now());
        self.state.store(READY, Ordering::SeqCst);
    }
    pub fn set_stopping(&self) {
        self.state.store(STOPPING, Ordering::SeqCst);
    }
    pub fn is_ready(&self) -> bool {
        self.state.load(Ordering::SeqCst) == READY
    }
    /// When the collector last became ready (wall clock and monotonic).
    pub fn since(&self) -> (SystemTime, Instant) {
        *self.since.lock().unwrap_or_else(|p| p.into_inner())
    }
}
