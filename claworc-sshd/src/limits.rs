//! The caps of the hardening: unauthenticated connections per server
//! (OpenSSH's `MaxStartups`, here a hard cap) and open sessions per connection
//! (`MaxSessions`). Each is held as a guard, so whatever path a connection or
//! channel ends by, its slot is given back exactly once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Slots for connections that have not authenticated yet.
#[derive(Debug, Clone)]
pub struct Startups(Arc<Semaphore>);

/// One unauthenticated connection's slot; dropped on login or disconnect.
pub type StartupSlot = OwnedSemaphorePermit;

impl Startups {
    pub fn new(max: u32) -> Self {
        Startups(Arc::new(Semaphore::new(max as usize)))
    }

    /// A slot, or `None` when `max` connections are still unauthenticated.
    pub fn try_take(&self) -> Option<StartupSlot> {
        self.0.clone().try_acquire_owned().ok()
    }
}

/// Session channels open on one connection.
#[derive(Debug, Clone, Default)]
pub struct Sessions {
    open: Arc<AtomicUsize>,
}

/// One open session channel; dropped when the channel is closed or its program ends.
#[derive(Debug)]
pub struct SessionSlot(Arc<AtomicUsize>);

impl Sessions {
    /// A slot, or `None` when `max` sessions are open.
    pub fn try_take(&self, max: u32) -> Option<SessionSlot> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max as usize).then_some(n + 1))
            .ok()
            .map(|_| SessionSlot(self.open.clone()))
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_comes_back_when_dropped() {
        let s = Sessions::default();
        let slots: Vec<_> = (0..10).map(|_| s.try_take(10).unwrap()).collect();
        assert!(s.try_take(10).is_none());
        drop(slots);
        assert!(s.try_take(10).is_some());
        let st = Startups::new(1);
        let a = st.try_take().unwrap();
        assert!(st.try_take().is_none());
        drop(a);
        assert!(st.try_take().is_some());
    }
}
