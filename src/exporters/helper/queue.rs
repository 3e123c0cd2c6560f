//! A bounded multi-producer, multi-consumer queue: crossbeam's lock-free `SegQueue` holds the
//! items, an atomic count bounds them, a semaphore lets consumers wait without a lock held across
//! `.await`. Memory grows with what is queued, in blocks, not with the capacity: a large
//! `queue_size` costs nothing until it fills.

use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam::queue::SegQueue;
use tokio::sync::Semaphore;

pub struct Queue<T> {
    /// Each item with its weight (1, or its items or bytes under another sizer).
    items: SegQueue<(T, usize)>,
    /// Weight pushed and not yet popped; never above `capacity`.
    len: AtomicUsize,
    capacity: usize,
    ready: Semaphore,
}

impl<T> Queue<T> {
    pub fn new(capacity: usize) -> Self {
        Queue {
            items: SegQueue::new(),
            len: AtomicUsize::new(0),
            capacity: capacity.max(1),
            ready: Semaphore::new(0),
        }
    }

    /// Adds an item, or gives it back when the queue is full or closed.
    pub fn push(&self, item: T) -> Result<(), T> {
        self.push_weighted(item, 1)
    }

    /// Adds an item that takes `weight` of the capacity (a sizer's unit), or gives it back
    /// when that much is not free or the queue is closed.
    pub fn push_weighted(&self, item: T, weight: usize) -> Result<(), T> {
        if self.ready.is_closed() {
            return Err(item);
        }
        // Reserve first, so concurrent producers never overshoot the capacity.
        if self
            .len
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n + weight <= self.capacity).then_some(n + weight)
            })
            .is_err()
        {
            return Err(item);
        }
        self.items.push((item, weight));
        self.ready.add_permits(1);
        Ok(())
    }

    /// Waits for an item. After `close`, returns what is left, then `None`.
    pub async fn pop(&self) -> Option<T> {
        match self.ready.acquire().await {
            Ok(permit) => {
                permit.forget();
                self.take()
            }
            Err(_) => self.take(),
        }
    }

    pub fn try_pop(&self) -> Option<T> {
        self.take()
    }

    fn take(&self) -> Option<T> {
        let (item, weight) = self.items.pop()?;
        self.len.fetch_sub(weight, Ordering::AcqRel);
        Some(item)
    }

    /// Refuses new items and wakes every waiting consumer.
    pub fn close(&self) {
        self.ready.close();
    }

    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn bounded_fifo_with_close() {
        let q = Queue::new(2);
        q.push(1).unwrap();
        q.push(2).unwrap();
        assert_eq!(q.push(3), Err(3));
        assert_eq!(q.pop().await, Some(1));
        q.close();
        assert_eq!(q.push(4), Err(4));
        assert_eq!(q.pop().await, Some(2));
        assert_eq!(q.pop().await, None);
    }

    #[test]
    fn weights_count_against_the_capacity() {
        let q = Queue::new(10);
        q.push_weighted("a", 6).unwrap();
        assert_eq!(q.push_weighted("b", 5), Err("b"), "6 + 5 > 10");
        q.push_weighted("c", 4).unwrap();
        assert_eq!(q.len(), 10);
        assert_eq!(q.try_pop(), Some("a"));
        assert_eq!(q.len(), 4);
        assert_eq!(q.push_weighted("d", 11), Err("d"), "never fits");
    }

    #[test]
    fn a_huge_capacity_allocates_nothing_up_front() {
        // 4,000,000,000 slots once grew the process to 18 GB at start.
        let q = Queue::<[u8; 64]>::new(4_000_000_000);
        assert_eq!(q.capacity(), 4_000_000_000);
        q.push([1; 64]).unwrap();
        assert_eq!(q.len(), 1);
        assert_eq!(q.try_pop(), Some([1; 64]));
        assert!(q.is_empty());
    }

    #[test]
    fn concurrent_producers_never_exceed_the_capacity() {
        let q = Arc::new(Queue::new(1000));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let q = q.clone();
                std::thread::spawn(move || (0..1000).filter(|i| q.push(*i).is_ok()).count())
            })
            .collect();
        let pushed: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!((pushed, q.len()), (1000, 1000));
    }

    #[tokio::test]
    async fn waiting_consumers_are_woken_by_push_and_close() {
        let q = Arc::new(Queue::<u32>::new(4));
        let q2 = q.clone();
        let waiter = tokio::spawn(async move { (q2.pop().await, q2.pop().await) });
        tokio::task::yield_now().await;
        q.push(7).unwrap();
        tokio::task::yield_now().await;
        q.close();
        assert_eq!(waiter.await.unwrap(), (Some(7), None));
    }
}
