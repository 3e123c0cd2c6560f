//! The consumer the pipeline builder puts at each tap point (see [`crate::tap`]).

use std::sync::Arc;

use crate::component::{BoxFuture, ConsumeResult, Consumer, DynConsumer};
use crate::signal::Batch;
use crate::tap::{Point, Taps};

/// `next` behind the tap point of `component` in `pipeline` when taps are enabled; `next`
/// itself otherwise.
pub fn wrap(taps: &Taps, pipeline: &str, component: &str, next: DynConsumer) -> DynConsumer {
    if !taps.enabled() {
        return next;
    }
    Arc::new(Tapped {
        point: taps.point(pipeline, component),
        next,
    })
}

struct Tapped {
    point: Arc<Point>,
    next: DynConsumer,
}

impl Consumer for Tapped {
    fn consume(&self, batch: Batch) -> BoxFuture<'_, ConsumeResult> {
        if self.point.tapped() {
            self.point.offer(&batch);
        }
        self.next.consume(batch)
    }

    fn durable(&self) -> bool {
        self.next.durable()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::signal::testdata;

    struct Count(AtomicUsize);
    impl Consumer for Count {
        fn consume(&self, batch: Batch) -> BoxFuture<'_, ConsumeResult> {
            self.0.fetch_add(batch.item_count(), Ordering::Relaxed);
            Box::pin(async { Ok(()) })
        }
    }

    #[tokio::test]
    async fn a_tap_sees_copies_until_dropped_and_skips_when_behind() {
        let taps = Taps::default();
        let sink = Arc::new(Count(AtomicUsize::new(0)));
        assert!(
            Arc::ptr_eq(
                &wrap(&taps, "traces", "batch", sink.clone()),
                &(sink.clone() as DynConsumer)
            ),
            "disabled: no wrapper"
        );
        taps.enable();
        let c = wrap(&taps, "traces", "batch", sink.clone());
        assert!(taps.subscribe("traces", "nope").is_none());
        c.consume(testdata::spans("a", 1, 2)).await.unwrap();
        let mut sub = taps.subscribe("traces", "batch").unwrap();
        // The tap's queue holds 16 batches.
        for _ in 0..16 + 3 {
            c.consume(testdata::spans("a", 1, 2)).await.unwrap();
        }
        assert_eq!(sink.0.load(Ordering::Relaxed), 2 * 20, "all data passes");
        let mut got = 0;
        while let Ok(b) = sub.rx.try_recv() {
            got += b.item_count();
        }
        assert_eq!(got, 2 * 16);
        assert_eq!(sub.skipped.load(Ordering::Relaxed), 3);
        drop(sub);
        assert_eq!(taps.components("traces"), ["batch"]);
        assert!(!taps.point("traces", "batch").tapped());
    }
}
