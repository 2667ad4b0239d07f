//! At most one call under way at a time; everyone who asks while it runs gets its result.
//!
//! A Durable Object runs one request at a time only between awaits: during an outbound fetch
//! other requests are delivered. Without this, 200 concurrent cold reads would be 200 calls to
//! WeChat, each one invalidating the token of the one before. Single-threaded (Rc/RefCell), as
//! is everything in a Worker isolate.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

pub struct SingleFlight<T> {
    current: RefCell<Option<Rc<Flight<T>>>>,
}

struct Flight<T> {
    outcome: RefCell<FlightState<T>>,
    waiters: RefCell<Vec<Waker>>,
}

enum FlightState<T> {
    Running,
    Done(T),
    /// The leading call was dropped before it finished: waiters start over.
    Abandoned,
}

impl<T: Clone> Default for SingleFlight<T> {
    fn default() -> Self {
        Self {
            current: RefCell::new(None),
        }
    }
}

impl<T: Clone> SingleFlight<T> {
    pub fn in_flight(&self) -> bool {
        self.current.borrow().is_some()
    }

    /// Runs `start()` unless a call is already under way, in which case it waits for that call
    /// instead. Either way it returns the result of the one call.
    pub async fn run<F, Fut>(&self, start: F) -> T
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let mut start = Some(start);
        loop {
            let joined = self.current.borrow().clone();
            if let Some(flight) = joined {
                match (WaitForFlight { flight }).await {
                    Some(value) => return value,
                    None => continue,
                }
            }
            let flight = Rc::new(Flight {
                outcome: RefCell::new(FlightState::Running),
                waiters: RefCell::new(Vec::new()),
            });
            *self.current.borrow_mut() = Some(flight.clone());
            let mut guard = LeaderGuard {
                owner: self,
                flight,
                finished: false,
            };
            let start = start.take().expect("a leader runs its call once");
            let value = start().await;
            guard.finish(FlightState::Done(value.clone()));
            return value;
        }
    }
}

/// Publishes the leader's result; if the leader is dropped mid-call, releases the waiters
/// instead of leaving them pending forever.
struct LeaderGuard<'a, T: Clone> {
    owner: &'a SingleFlight<T>,
    flight: Rc<Flight<T>>,
    finished: bool,
}

impl<T: Clone> LeaderGuard<'_, T> {
    fn finish(&mut self, state: FlightState<T>) {
        self.finished = true;
        *self.flight.outcome.borrow_mut() = state;
        *self.owner.current.borrow_mut() = None;
        for waker in self.flight.waiters.borrow_mut().drain(..) {
            waker.wake();
        }
    }
}

impl<T: Clone> Drop for LeaderGuard<'_, T> {
    fn drop(&mut self) {
        if !self.finished {
            self.finish(FlightState::Abandoned);
        }
    }
}

struct WaitForFlight<T> {
    flight: Rc<Flight<T>>,
}

impl<T: Clone> Future for WaitForFlight<T> {
    /// None when the leader was abandoned.
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        match &*self.flight.outcome.borrow() {
            FlightState::Done(value) => Poll::Ready(Some(value.clone())),
            FlightState::Abandoned => Poll::Ready(None),
            FlightState::Running => {
                self.flight.waiters.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

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
        let flight = SingleFlight::<u32>::default();
        let calls = &Cell::new(0);
        let gate = &Gate::default();
        // Captures only references, so it is Copy and every caller can take its own.
        let call = || {
            calls.set(calls.get() + 1);
            let gate = gate.clone();
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
    fn waiters_take_over_when_the_leader_is_dropped() {
        let flight = SingleFlight::<&str>::default();
        let never = Gate::default();
        let mut leader = Box::pin(flight.run(|| async move {
            never.await;
            "leader"
        }));
        let mut waiter = Box::pin(flight.run(|| async { "waiter" }));
        assert!(poll_once(&mut leader).is_pending());
        assert!(poll_once(&mut waiter).is_pending());
        drop(leader);
        assert!(!flight.in_flight());
        assert_eq!(poll_once(&mut waiter), Poll::Ready("waiter"));
    }
}
