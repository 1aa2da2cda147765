//! Appends place their batches in the order they were called.
//!
//! An append may wait before it places its batches (for the write
//! pipeline's room, a roll, maintenance, or just a yield to the scheduler),
//! and tasks woken together run in any order. Without a rule, two appends
//! called one after the other could land the other way round: a
//! coordinator that records "offset 49" then "offset 50" for one key would
//! replay 49 after a restart. So each append takes a ticket when it is
//! called, before any await, and places only on its turn; a ticket dropped
//! before its turn (an error, a cancelled request) passes the turn on.

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;

use crate::notify::Notify;

/// The queue of appends waiting to place, in call order.
#[derive(Debug, Default)]
pub(crate) struct PlacementOrder {
    next: Cell<u64>,
    serving: Cell<u64>,
    /// Tickets given up before their turn.
    abandoned: RefCell<BTreeSet<u64>>,
    turn: Notify,
}

/// One append's place in the queue; dropping it passes the turn on.
pub(crate) struct Ticket<'a> {
    order: &'a PlacementOrder,
    id: u64,
}

impl PlacementOrder {
    /// Takes the next place in the queue (synchronously: call it before the
    /// append's first await).
    pub(crate) fn take(&self) -> Ticket<'_> {
        let id = self.next.get();
        self.next.set(id + 1);
        Ticket { order: self, id }
    }

    fn advance(&self) {
        let mut serving = self.serving.get() + 1;
        let mut abandoned = self.abandoned.borrow_mut();
        while abandoned.remove(&serving) {
            serving += 1;
        }
        self.serving.set(serving);
        drop(abandoned);
        self.turn.notify();
    }
}

impl Ticket<'_> {
    /// Waits until every append called before this one has placed (or
    /// given up).
    pub(crate) async fn wait_turn(&self) {
        while self.order.serving.get() != self.id {
            self.order.turn.notified().await;
        }
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.order.serving.get() == self.id {
            self.order.advance();
        } else {
            self.order.abandoned.borrow_mut().insert(self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    /// Tickets are served in the order taken, whatever order their tasks
    /// wake in, and a ticket dropped early does not block the queue.
    #[test]
    fn turns_follow_call_order() {
        let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .make()
            .expect("executor");
        ex.run(async {
            let order = Rc::new(PlacementOrder::default());
            let placed = Rc::new(RefCell::new(Vec::new()));
            let first = order.take();
            let mut tasks = Vec::new();
            for i in 1..6u64 {
                let (order, placed) = (order.clone(), placed.clone());
                tasks.push(glommio::spawn_local(async move {
                    let ticket = order.take();
                    // Later tickets yield less: they would win without the queue.
                    for _ in 0..(10 - i) {
                        glommio::executor().yield_now().await;
                    }
                    if i == 3 {
                        return; // gives up before its turn
                    }
                    ticket.wait_turn().await;
                    placed.borrow_mut().push(i);
                }));
            }
            for _ in 0..20 {
                glommio::executor().yield_now().await;
            }
            assert!(placed.borrow().is_empty(), "placed before the first ticket");
            drop(first);
            for t in tasks {
                t.await;
            }
            assert_eq!(*placed.borrow(), vec![1, 2, 4, 5]);
        });
    }
}
