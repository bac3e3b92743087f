//! The channel from the scheduler thread to one generation's reader, with a cap on the text
//! waiting in it. Unbounded so the decode thread never blocks on a client; capped in bytes so
//! a reader that stops polling cannot make it hold a whole context's output (or more) in
//! memory: past the cap the sequence is stopped instead.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};

use crate::request::{EngineError, Event};

type Item = Result<Event, EngineError>;

/// A channel whose queued `Event::Text` bytes may not pass `limit`.
pub(crate) fn channel(limit: usize) -> (Outbox, Inbox) {
    let (tx, rx) = mpsc::unbounded_channel();
    let pending = Arc::new(AtomicUsize::new(0));
    (Outbox { tx, pending: Arc::clone(&pending), limit: limit.max(1) }, Inbox { rx, pending })
}

/// The scheduler's end.
#[derive(Debug)]
pub(crate) struct Outbox {
    tx: UnboundedSender<Item>,
    pending: Arc<AtomicUsize>,
    limit: usize,
}

/// The reader is too far behind: the text was not queued.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ReaderBehind {
    pub limit: usize,
}

impl Outbox {
    /// Queues a piece of text, or refuses when the reader already has `limit` bytes waiting.
    /// A closed receiver is not an error here: the scheduler notices it at its next step.
    pub fn text(&self, text: String) -> Result<(), ReaderBehind> {
        if text.is_empty() {
            return Ok(());
        }
        let len = text.len();
        if self.pending.fetch_add(len, Ordering::AcqRel) + len > self.limit {
            self.pending.fetch_sub(len, Ordering::AcqRel);
            return Err(ReaderBehind { limit: self.limit });
        }
        if self.tx.send(Ok(Event::Text(text))).is_err() {
            self.pending.fetch_sub(len, Ordering::AcqRel);
        }
        Ok(())
    }

    /// Queues the end of the stream (the completion or an error); never refused.
    pub fn finish(&self, item: Item) {
        let _ = self.tx.send(item);
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// The reader's end; receiving text gives its bytes back to the budget.
#[derive(Debug)]
pub(crate) struct Inbox {
    rx: UnboundedReceiver<Item>,
    pending: Arc<AtomicUsize>,
}

impl Inbox {
    fn account(&self, item: &Option<Item>) {
        if let Some(Ok(Event::Text(t))) = item {
            self.pending.fetch_sub(t.len(), Ordering::AcqRel);
        }
    }

    pub fn blocking_recv(&mut self) -> Option<Item> {
        let item = self.rx.blocking_recv();
        self.account(&item);
        item
    }

    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        let polled = self.rx.poll_recv(cx);
        if let Poll::Ready(item) = &polled {
            self.account(item);
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(item: Option<Item>) -> String {
        match item {
            Some(Ok(Event::Text(t))) => t,
            other => panic!("expected text, got {other:?}"),
        }
    }

    #[test]
    fn text_beyond_the_cap_is_refused_until_the_reader_catches_up() {
        let (out, mut inbox) = channel(10);
        assert_eq!(out.text("12345".into()), Ok(()));
        assert_eq!(out.text("67890".into()), Ok(()));
        assert_eq!(out.text("x".into()), Err(ReaderBehind { limit: 10 }));
        assert_eq!(text(inbox.blocking_recv()), "12345");
        assert_eq!(out.text("abc".into()), Ok(()));
        assert_eq!(text(inbox.blocking_recv()), "67890");
        assert_eq!(text(inbox.blocking_recv()), "abc");
    }

    #[test]
    fn the_end_of_the_stream_is_never_refused() {
        let (out, mut inbox) = channel(1);
        assert_eq!(out.text("a".into()), Ok(()));
        out.finish(Err(EngineError::ReaderBehind { limit: 1 }));
        assert_eq!(text(inbox.blocking_recv()), "a");
        assert!(matches!(inbox.blocking_recv(), Some(Err(EngineError::ReaderBehind { .. }))));
    }

    #[test]
    fn text_for_a_reader_that_left_does_not_count() {
        let (out, inbox) = channel(4);
        drop(inbox);
        assert_eq!(out.text("abcd".into()), Ok(()));
        assert_eq!(out.text("efgh".into()), Ok(()));
        assert!(out.is_closed());
    }
}
