//! At most one call under way at a time; everyone who asks while it runs gets its result.
//!
//! A Durable Object runs one request at a time only between awaits: during an outbound fetch
//! other requests are delivered. Without this, 200 concurrent cold reads would be 200 calls to
//! WeChat, each one invalidating the token of the one before.
//!
//! The call is a `futures_util` [`Shared`] future, kept until it settles: every caller awaits a
//! clone of it, so if the one who started it goes away (its request is cancelled), the others
//! keep driving the same call rather than starting another, which for a classic token would
//! rotate it again. If every caller goes away, nobody drives it: it is dropped, so that the
//! next caller starts anew instead of finding a call "under way" forever.

use futures_util::future::{FutureExt, LocalBoxFuture, Shared};
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;

type Call<T> = Shared<LocalBoxFuture<'static, T>>;
/// How many callers await a call.
type Waiters = Rc<Cell<usize>>;

pub struct Flight<T> {
    /// The call under way, and how many callers await it.
    current: RefCell<Option<(Call<T>, Waiters)>>,
}

impl<T> Default for Flight<T> {
    fn default() -> Self {
        Self {
            current: RefCell::new(None),
        }
    }
}

impl<T: Clone + 'static> Flight<T> {
    pub fn in_flight(&self) -> bool {
        self.current.borrow().is_some()
    }

    /// Runs `start()` unless a call is already under way, in which case it waits for that call
    /// instead. Either way it returns the result of the one call.
    pub async fn run<F, Fut>(&self, start: F) -> T
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T> + 'static,
    {
        let joined = self.current.borrow().clone();
        let (call, waiting) = joined.unwrap_or_else(|| {
            let started = (start().boxed_local().shared(), Rc::default());
            *self.current.borrow_mut() = Some(started.clone());
            started
        });
        waiting.set(waiting.get() + 1);
        let _waiting = Waiting {
            flight: self,
            call: call.clone(),
            waiting,
        };
        let value = call.clone().await;
        // The first caller back clears it, so the next one starts a new call.
        self.clear_if_current(&call);
        value
    }

    fn clear_if_current(&self, call: &Call<T>) {
        let mut current = self.current.borrow_mut();
        if current.as_ref().is_some_and(|(c, _)| c.ptr_eq(call)) {
            *current = None;
        }
    }
}

/// Counts a caller while it awaits a call; the last one to leave before the call settles drops
/// the call.
struct Waiting<'a, T: Clone + 'static> {
    flight: &'a Flight<T>,
    call: Call<T>,
    waiting: Waiters,
}

impl<T: Clone + 'static> Drop for Waiting<'_, T> {
    fn drop(&mut self) {
        let left = self.waiting.get() - 1;
        self.waiting.set(left);
        if left == 0 {
            self.flight.clear_if_current(&self.call);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::pin::Pin;
    use std::task::{Context, Poll, Waker};

    /// A future that stays pending until the test opens it.
    #[derive(Clone, Default)]
    struct Gate(Rc<Cell<bool>>);

    impl Future for Gate {
        type Output = ();
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
            if self.0.get() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }
    }

    fn poll_once<F: Future>(future: &mut Pin<Box<F>>) -> Poll<F::Output> {
        future
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn concurrent_callers_share_one_call() {
        let flight = Flight::<u32>::default();
        let calls = Rc::new(Cell::new(0));
        let gate = Gate::default();
        let call = || {
            calls.set(calls.get() + 1);
            let (gate, calls) = (gate.clone(), calls.clone());
            async move {
                gate.await;
                calls.get() * 10
            }
        };

        let mut callers: Vec<_> = (0..50).map(|_| Box::pin(flight.run(call))).collect();
        for caller in &mut callers {
            assert!(poll_once(caller).is_pending());
        }
        assert!(flight.in_flight());
        gate.0.set(true);
        for caller in &mut callers {
            assert_eq!(poll_once(caller), Poll::Ready(10));
        }
        assert_eq!(calls.get(), 1);
        assert!(!flight.in_flight());

        // The next caller after the flight landed starts a new call.
        let mut later = Box::pin(flight.run(call));
        assert_eq!(poll_once(&mut later), Poll::Ready(20));
    }

    #[test]
    fn the_others_keep_driving_the_call_when_its_starter_is_dropped() {
        let flight = Flight::<&str>::default();
        let gate = Gate::default();
        let starts = Rc::new(Cell::new(0));
        let call = || {
            starts.set(starts.get() + 1);
            let gate = gate.clone();
            async move {
                gate.await;
                "the one call"
            }
        };
        let mut starter = Box::pin(flight.run(call));
        let mut waiter = Box::pin(flight.run(call));
        assert!(poll_once(&mut starter).is_pending());
        assert!(poll_once(&mut waiter).is_pending());
        drop(starter);
        assert!(flight.in_flight(), "the call goes on");
        gate.0.set(true);
        assert_eq!(poll_once(&mut waiter), Poll::Ready("the one call"));
        assert_eq!(starts.get(), 1, "no second call");
        assert!(!flight.in_flight());
    }

    #[test]
    fn a_call_everyone_left_is_dropped_and_the_next_caller_starts_anew() {
        let flight = Flight::<&str>::default();
        let never = Gate::default();
        let mut first = Box::pin(flight.run(|| async move {
            never.await;
            "abandoned"
        }));
        let mut second = Box::pin(flight.run(|| async { "unused" }));
        assert!(poll_once(&mut first).is_pending());
        assert!(poll_once(&mut second).is_pending());
        drop(first);
        assert!(flight.in_flight());
        drop(second);
        assert!(!flight.in_flight());
        let mut next = Box::pin(flight.run(|| async { "new call" }));
        assert_eq!(poll_once(&mut next), Poll::Ready("new call"));
    }

    #[test]
    fn late_callers_of_a_settled_call_leave_the_next_call_alone() {
        let flight = Flight::<&str>::default();
        let (first_gate, second_gate) = (Gate::default(), Gate::default());
        let first = || {
            let gate = first_gate.clone();
            async move {
                gate.await;
                "first"
            }
        };
        let mut a = Box::pin(flight.run(first));
        let mut b = Box::pin(flight.run(first));
        assert!(poll_once(&mut a).is_pending() && poll_once(&mut b).is_pending());
        first_gate.0.set(true);
        assert_eq!(poll_once(&mut a), Poll::Ready("first"));
        let mut next = Box::pin(flight.run(|| {
            let gate = second_gate.clone();
            async move {
                gate.await;
                "second"
            }
        }));
        assert!(poll_once(&mut next).is_pending());
        assert_eq!(poll_once(&mut b), Poll::Ready("first"));
        assert!(flight.in_flight(), "the second call is still under way");
        second_gate.0.set(true);
        assert_eq!(poll_once(&mut next), Poll::Ready("second"));
    }
}
