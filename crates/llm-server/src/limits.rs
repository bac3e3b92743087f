//! Admission control: a bounded number of generations run, a bounded number wait, the rest
//! are refused at once. Memory therefore stays bounded whatever the offered load.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug)]
pub struct Limiter {
    running: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_running: usize,
    max_waiting: usize,
}

/// Held for the life of a generation (moved into its response stream).
pub type Permit = OwnedSemaphorePermit;

#[derive(Debug, PartialEq, Eq)]
pub struct Overloaded;

/// Decrements the waiting count however the wait ends (including the client going away).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Limiter {
    pub fn new(max_running: usize, max_waiting: usize) -> Self {
        Limiter {
            running: Arc::new(Semaphore::new(max_running.max(1))),
            waiting: AtomicUsize::new(0),
            max_running: max_running.max(1),
            max_waiting,
        }
    }

    pub async fn acquire(&self) -> Result<Permit, Overloaded> {
        if let Ok(p) = Arc::clone(&self.running).try_acquire_owned() {
            return Ok(p);
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(Overloaded);
        }
        let _waiting = Waiting(&self.waiting);
        Arc::clone(&self.running).acquire_owned().await.map_err(|_| Overloaded)
    }

    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    pub fn running(&self) -> usize {
        self.max_running - self.running.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refuses_beyond_running_plus_waiting() {
        let l = Arc::new(Limiter::new(1, 1));
        let first = l.acquire().await.unwrap();
        let l2 = Arc::clone(&l);
        let queued = tokio::spawn(async move { l2.acquire().await.map(|_| ()) });
        // Wait (bounded) until the second request is queued.
        for _ in 0..1000 {
            if l.waiting() == 1 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(l.waiting(), 1);
        assert_eq!(l.acquire().await.unwrap_err(), Overloaded);
        drop(first);
        queued.await.unwrap().unwrap();
        assert_eq!((l.waiting(), l.running()), (0, 0));
    }

    #[tokio::test]
    async fn an_abandoned_wait_frees_its_place() {
        let l = Limiter::new(1, 1);
        let _held = l.acquire().await.unwrap();
        let mut wait = Box::pin(l.acquire());
        assert!(futures::poll!(wait.as_mut()).is_pending());
        assert_eq!(l.waiting(), 1);
        drop(wait);
        assert_eq!(l.waiting(), 0);
    }
}
