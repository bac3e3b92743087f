//! A signal to stop: `strata converse` raises it on SIGINT/SIGTERM so that each conversation
//! abandons the turn in flight, writes its finished turns with the stop reason `interrupted`,
//! and returns, instead of the process dying between two writes.

use tokio::sync::watch;

/// The receiving end; the default one never fires.
#[derive(Debug, Clone, Default)]
pub struct Interrupt(Option<watch::Receiver<bool>>);

/// The raising end.
#[derive(Debug)]
pub struct InterruptHandle(watch::Sender<bool>);

impl Interrupt {
    pub fn new() -> (InterruptHandle, Interrupt) {
        let (tx, rx) = watch::channel(false);
        (InterruptHandle(tx), Interrupt(Some(rx)))
    }

    pub fn is_raised(&self) -> bool {
        self.0.as_ref().is_some_and(|rx| *rx.borrow())
    }

    /// Resolves once raised (never, for the default one).
    pub async fn raised(&self) {
        match &self.0 {
            Some(rx) => {
                let mut rx = rx.clone();
                // An error means the handle is gone without raising: then it never will.
                if rx.wait_for(|raised| *raised).await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending::<()>().await,
        }
    }
}

impl InterruptHandle {
    pub fn raise(&self) {
        let _ = self.0.send(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn raising_wakes_every_clone() {
        let (handle, interrupt) = Interrupt::new();
        let other = interrupt.clone();
        assert!(!interrupt.is_raised());
        let waiting = tokio::spawn(async move { other.raised().await });
        handle.raise();
        waiting.await.unwrap();
        assert!(interrupt.is_raised());
        let never = Interrupt::default();
        assert!(tokio::time::timeout(std::time::Duration::from_millis(10), never.raised())
            .await
            .is_err());
    }
}
