//! The consumer a receiver is given: it forwards to the pipelines' heads, and a reload points it
//! at new heads without restarting the receiver (its listeners, connections and state stay).

use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use futures::future::BoxFuture;

use crate::component::{ConsumeResult, Consumer, DynConsumer};
use crate::signal::Batch;

pub struct Switch {
    /// The target, and a token every call holds while it runs: once the last clone of an old
    /// token is gone, no call is still inside the old target.
    current: RwLock<(DynConsumer, Arc<()>)>,
}

impl Switch {
    pub fn new(target: DynConsumer) -> Arc<Switch> {
        Arc::new(Switch {
            current: RwLock::new((target, Arc::new(()))),
        })
    }

    /// Points the switch at `target`; returns a handle to wait for the calls still in the old one.
    pub fn set(&self, target: DynConsumer) -> InFlight {
        let mut cur = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let old = std::mem::replace(&mut *cur, (target, Arc::new(())));
        InFlight(Arc::downgrade(&old.1))
    }
}

/// The calls that were running in a switch's previous target.
pub struct InFlight(Weak<()>);

impl InFlight {
    /// Waits until they have all returned, or the deadline passes (then false).
    pub async fn wait(self, deadline: tokio::time::Instant) -> bool {
        while self.0.strong_count() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }
}

impl Consumer for Switch {
    fn consume(&self, batch: Batch) -> BoxFuture<'_, ConsumeResult> {
        // The lock is held only to clone two Arcs, never across the call.
        let (target, token) = {
            let cur = self
                .current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            (cur.0.clone(), cur.1.clone())
        };
        Box::pin(async move {
            let r = target.consume(batch).await;
            drop(token);
            r
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Slow(AtomicUsize);
    impl Consumer for Slow {
        fn consume(&self, _: Batch) -> BoxFuture<'_, ConsumeResult> {
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                self.0.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
        }
    }

    #[tokio::test]
    async fn a_switch_waits_for_calls_in_the_old_target() {
        let old = Arc::new(Slow(AtomicUsize::new(0)));
        let new = Arc::new(Slow(AtomicUsize::new(0)));
        let sw = Switch::new(old.clone());
        let s2 = sw.clone();
        let call = tokio::spawn(async move { s2.consume(Batch::Traces(vec![])).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let inflight = sw.set(new.clone());
        sw.consume(Batch::Traces(vec![])).await.unwrap();
        assert_eq!(new.0.load(Ordering::SeqCst), 1);
        assert!(
            inflight
                .wait(tokio::time::Instant::now() + Duration::from_secs(5))
                .await
        );
        // The old call had finished by the time the wait returned.
        assert_eq!(old.0.load(Ordering::SeqCst), 1);
        call.await.unwrap().unwrap();
    }
}
