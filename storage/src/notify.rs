//! A single-threaded change notification for tasks on one executor.
//!
//! Waiters capture the version when they start waiting and complete once it
//! has moved, so a notification between "check the condition" and "poll the
//! future" is never lost. Every notification wakes every waiter; they
//! re-check their own condition.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

#[derive(Debug, Default)]
pub struct Notify {
    version: Cell<u64>,
    wakers: RefCell<Vec<Waker>>,
}

impl Notify {
    /// Wakes every current waiter.
    pub fn notify(&self) {
        self.version.set(self.version.get().wrapping_add(1));
        for waker in self.wakers.borrow_mut().drain(..) {
            waker.wake();
        }
    }

    /// Completes after the next `notify`.
    pub fn notified(&self) -> Notified<'_> {
        Notified {
            notify: self,
            version: self.version.get(),
        }
    }
}

pub struct Notified<'a> {
    notify: &'a Notify,
    version: u64,
}

impl Future for Notified<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.notify.version.get() != self.version {
            return Poll::Ready(());
        }
        let mut wakers = self.notify.wakers.borrow_mut();
        if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
            wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}
