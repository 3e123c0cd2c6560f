//! A bounded multi-producer, multi-consumer queue: crossbeam's lock-free `ArrayQueue` holds the
//! items, a semaphore counts them so consumers can wait without a lock held across `.await`.

use crossbeam::queue::ArrayQueue;
use tokio::sync::Semaphore;

pub struct Queue<T> {
    items: ArrayQueue<T>,
    ready: Semaphore,
}

impl<T> Queue<T> {
    pub fn new(capacity: usize) -> Self {
        Queue {
            items: ArrayQueue::new(capacity.max(1)),
            ready: Semaphore::new(0),
        }
    }

    /// Adds an item, or gives it back when the queue is full or closed.
    pub fn push(&self, item: T) -> Result<(), T> {
        if self.ready.is_closed() {
            return Err(item);
        }
        self.items.push(item)?;
        self.ready.add_permits(1);
        Ok(())
    }

    /// Waits for an item. After `close`, returns what is left, then `None`.
    pub async fn pop(&self) -> Option<T> {
        match self.ready.acquire().await {
            Ok(permit) => {
                permit.forget();
                self.items.pop()
            }
            Err(_) => self.items.pop(),
        }
    }

    pub fn try_pop(&self) -> Option<T> {
        self.items.pop()
    }

    /// Refuses new items and wakes every waiting consumer.
    pub fn close(&self) {
        self.ready.close();
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.items.capacity()
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
