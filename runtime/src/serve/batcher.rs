//! The dynamic batcher's queue as a pure state machine over an explicit clock: requests (each with
//! some items) wait in FIFO order; a batch closes when the queued items reach the max batch size, or
//! when the oldest request has waited the max queue delay. The queue is bounded in items: a push
//! beyond capacity is refused (the server answers 429 with Retry-After), so overload never grows
//! memory. FIFO dispatch is the fairness rule: no request is overtaken by a later one.

use std::collections::VecDeque;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchPolicy {
    pub max_batch: u32,
    pub max_queue_delay: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejected {
    /// The queue holds `capacity` items already.
    Full { capacity: usize },
    /// The request alone exceeds the max batch size.
    TooLarge { items: u32, max_batch: u32 },
    /// The server drains for shutdown: the model thread may already have taken its last batch.
    Draining,
}

#[derive(Debug, PartialEq)]
pub enum Poll<R> {
    /// Run these requests as one batch now.
    Dispatch(Vec<R>),
    /// Nothing to run before this time (the oldest request's deadline).
    WaitUntil(Duration),
    Idle,
}

struct Queued<R> {
    request: R,
    items: u32,
    arrived: Duration,
}

pub struct BatchQueue<R> {
    queue: VecDeque<Queued<R>>,
    queued_items: usize,
    capacity: usize,
}

impl<R> BatchQueue<R> {
    pub fn new(capacity_items: usize) -> Self {
        BatchQueue {
            queue: VecDeque::new(),
            queued_items: 0,
            capacity: capacity_items.max(1),
        }
    }

    pub fn queued_items(&self) -> usize {
        self.queued_items
    }

    pub fn push(
        &mut self,
        request: R,
        items: u32,
        now: Duration,
        policy: &BatchPolicy,
    ) -> Result<(), (R, Rejected)> {
        if items > policy.max_batch {
            return Err((
                request,
                Rejected::TooLarge {
                    items,
                    max_batch: policy.max_batch,
                },
            ));
        }
        if self.queued_items + items as usize > self.capacity {
            return Err((
                request,
                Rejected::Full {
                    capacity: self.capacity,
                },
            ));
        }
        self.queued_items += items as usize;
        self.queue.push_back(Queued {
            request,
            items,
            arrived: now,
        });
        Ok(())
    }

    /// What to do at `now`. `policy` may change between calls (the adaptive controller).
    pub fn poll(&mut self, now: Duration, policy: &BatchPolicy) -> Poll<R> {
        let Some(oldest) = self.queue.front() else {
            return Poll::Idle;
        };
        let deadline = oldest.arrived + policy.max_queue_delay;
        let full = self.queued_items >= policy.max_batch as usize;
        if !full && now < deadline {
            return Poll::WaitUntil(deadline);
        }
        Poll::Dispatch(self.take(policy.max_batch))
    }

    /// Drops the queued requests nobody waits for any more (`gone`: their client left) and says
    /// how many: they would hold queue room, and model time, for answers nobody reads.
    pub fn discard(&mut self, gone: impl Fn(&R) -> bool) -> usize {
        let before = self.queue.len();
        let mut freed = 0usize;
        self.queue.retain(|q| {
            let keep = !gone(&q.request);
            if !keep {
                freed += q.items as usize;
            }
            keep
        });
        self.queued_items -= freed;
        before - self.queue.len()
    }

    /// Everything still queued, in batches (for draining on shutdown).
    pub fn drain_all(&mut self, policy: &BatchPolicy) -> Vec<Vec<R>> {
        let mut batches = Vec::new();
        while !self.queue.is_empty() {
            batches.push(self.take(policy.max_batch));
        }
        batches
    }

    /// FIFO requests up to `max_batch` items (at least one request).
    fn take(&mut self, max_batch: u32) -> Vec<R> {
        let mut batch = Vec::new();
        let mut items = 0u32;
        while let Some(front) = self.queue.front() {
            if !batch.is_empty() && items + front.items > max_batch {
                break;
            }
            let q = self.queue.pop_front().expect("front exists");
            items += q.items;
            self.queued_items -= q.items as usize;
            batch.push(q.request);
        }
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    fn policy(max_batch: u32, delay_ms: u64) -> BatchPolicy {
        BatchPolicy {
            max_batch,
            max_queue_delay: MS(delay_ms),
        }
    }

    #[test]
    fn coalesces_up_to_the_max_batch_size() {
        let p = policy(4, 10);
        let mut q = BatchQueue::new(100);
        for i in 0..6 {
            q.push(i, 1, MS(0), &p).unwrap();
        }
        assert_eq!(q.poll(MS(0), &p), Poll::Dispatch(vec![0, 1, 2, 3]));
        // Two left, under the max: they wait for the oldest's deadline.
        assert_eq!(q.poll(MS(1), &p), Poll::WaitUntil(MS(10)));
        assert_eq!(q.poll(MS(10), &p), Poll::Dispatch(vec![4, 5]));
        assert_eq!(q.poll(MS(10), &p), Poll::Idle);
    }

    #[test]
    fn the_max_queue_delay_bounds_the_wait_of_the_oldest() {
        let p = policy(8, 5);
        let mut q = BatchQueue::new(100);
        q.push("a", 1, MS(0), &p).unwrap();
        q.push("b", 1, MS(3), &p).unwrap();
        assert_eq!(q.poll(MS(4), &p), Poll::WaitUntil(MS(5)));
        assert_eq!(q.poll(MS(5), &p), Poll::Dispatch(vec!["a", "b"]));
    }

    #[test]
    fn multi_item_requests_count_their_items_and_are_never_split() {
        let p = policy(8, 5);
        let mut q = BatchQueue::new(100);
        q.push("three", 3, MS(0), &p).unwrap();
        q.push("four", 4, MS(0), &p).unwrap();
        q.push("two", 2, MS(0), &p).unwrap();
        assert_eq!(q.queued_items(), 9);
        // 3 + 4 fit in 8; 2 more would not.
        assert_eq!(q.poll(MS(0), &p), Poll::Dispatch(vec!["three", "four"]));
        assert_eq!(q.queued_items(), 2);
        let err = q.push("big", 9, MS(0), &p).unwrap_err();
        assert_eq!(
            err.1,
            Rejected::TooLarge {
                items: 9,
                max_batch: 8
            }
        );
    }

    #[test]
    fn a_full_queue_refuses_instead_of_growing() {
        let p = policy(4, 5);
        let mut q = BatchQueue::new(10);
        for i in 0..10 {
            q.push(i, 1, MS(0), &p).unwrap();
        }
        assert_eq!(
            q.push(10, 1, MS(0), &p).unwrap_err().1,
            Rejected::Full { capacity: 10 }
        );
        assert_eq!(q.queued_items(), 10);
        // Serving frees room again.
        assert!(matches!(q.poll(MS(0), &p), Poll::Dispatch(b) if b.len() == 4));
        q.push(10, 1, MS(0), &p).unwrap();
    }

    #[test]
    fn requests_whose_callers_left_are_dropped_and_free_their_room() {
        let mut q = BatchQueue::new(8);
        let p = policy(4, 1000);
        for (id, items) in [(1, 2), (2, 1), (3, 2)] {
            q.push((id, items), items, Duration::ZERO, &p).unwrap();
        }
        assert_eq!(q.discard(|&(id, _)| id == 2), 1);
        assert_eq!(q.queued_items(), 4);
        // Full again without it: 2 + 2 items at the cap of 4, in arrival order.
        assert_eq!(
            q.poll(Duration::ZERO, &p),
            Poll::Dispatch(vec![(1, 2), (3, 2)])
        );
        assert_eq!(q.discard(|_| true), 0);
    }

    #[test]
    fn dispatch_is_first_in_first_out() {
        // Fairness: under sustained load, every request is served in arrival order.
        let p = policy(3, 2);
        let mut q = BatchQueue::new(1000);
        let mut served = Vec::new();
        let mut next = 0;
        for t in 0..200u64 {
            for _ in 0..(t % 4) {
                q.push(next, 1, MS(t), &p).unwrap();
                next += 1;
            }
            if let Poll::Dispatch(b) = q.poll(MS(t), &p) {
                served.extend(b);
            }
        }
        for b in q.drain_all(&p) {
            served.extend(b);
        }
        assert_eq!(served, (0..next).collect::<Vec<_>>());
    }

    #[test]
    fn a_policy_change_applies_to_requests_already_queued() {
        let mut q = BatchQueue::new(100);
        q.push(1, 1, MS(0), &policy(8, 50)).unwrap();
        assert_eq!(q.poll(MS(5), &policy(8, 50)), Poll::WaitUntil(MS(50)));
        assert_eq!(q.poll(MS(5), &policy(8, 2)), Poll::Dispatch(vec![1]));
    }
}
