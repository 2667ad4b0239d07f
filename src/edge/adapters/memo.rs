//! Per-isolate memory, so that a hot `GET /token` costs neither configuration parsing nor a KV
//! read. Isolates are single-threaded and their env does not change while they live, so the
//! parsed configuration is kept for the isolate's life; records are kept only until a short
//! deadline, never past the point where they are due for a refresh (KV stays the cross-isolate
//! cache, the Durable Object the truth).

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// How long a record read from KV (or the object) is answered from memory.
pub const RECORD_MEMO_MS: u64 = 1_000;

/// The most values with a deadline kept: past it, they are all let go at once (they are a
/// cache), so that tokens and names callers present cannot grow an isolate's memory without
/// bound, and the clearing costs nothing per value on average. What is kept for the isolate's
/// life (its configuration, and a mark per account key) is apart and not counted.
const MAX_VALUES: usize = 10_000;

thread_local! {
    /// Kept for the isolate's life.
    static KEPT: RefCell<HashMap<String, Rc<dyn Any>>> = RefCell::default();
    /// Kept until a deadline.
    static CACHED: RefCell<HashMap<String, Memo>> = RefCell::default();
}

struct Memo {
    value: Rc<dyn Any>,
    until_ms: u64,
}

/// The value remembered under `key`, if any and still fresh.
pub fn recall<T: Clone + 'static>(key: &str, now_ms: u64) -> Option<T> {
    let kept = KEPT.with(|kept| kept.borrow().get(key).cloned());
    let value = kept.or_else(|| {
        CACHED.with(|cached| {
            let cached = cached.borrow();
            let memo = cached.get(key).filter(|memo| now_ms < memo.until_ms)?;
            Some(memo.value.clone())
        })
    })?;
    value.downcast_ref::<T>().cloned()
}

/// Remembers `value` until `until_ms` (None: for the isolate's life).
pub fn remember<T: 'static>(key: &str, value: T, until_ms: Option<u64>) {
    let value: Rc<dyn Any> = Rc::new(value);
    let Some(until_ms) = until_ms else {
        CACHED.with(|cached| cached.borrow_mut().remove(key));
        KEPT.with(|kept| kept.borrow_mut().insert(key.to_owned(), value));
        return;
    };
    KEPT.with(|kept| kept.borrow_mut().remove(key));
    CACHED.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.len() >= MAX_VALUES && !cached.contains_key(key) {
            cached.clear();
        }
        cached.insert(key.to_owned(), Memo { value, until_ms });
    });
}

pub fn forget(key: &str) {
    KEPT.with(|kept| kept.borrow_mut().remove(key));
    CACHED.with(|cached| cached.borrow_mut().remove(key));
}

/// The value under `key`, computed once per isolate.
pub fn once<T: Clone + 'static>(key: &str, compute: impl FnOnce() -> T) -> T {
    recall(key, 0).unwrap_or_else(|| {
        let value = compute();
        remember(key, value.clone(), None);
        value
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_until_the_deadline() {
        remember("token:a", 5_u32, Some(1_000));
        assert_eq!(recall::<u32>("token:a", 999), Some(5));
        assert_eq!(recall::<u32>("token:a", 1_000), None);
        assert_eq!(
            recall::<String>("token:a", 0),
            None,
            "another type is a miss"
        );
        forget("token:a");
        assert_eq!(recall::<u32>("token:a", 0), None);
    }

    #[test]
    fn past_its_bound_it_lets_go_of_what_has_a_deadline() {
        remember("config:kept", 1_u8, None);
        for n in 0..MAX_VALUES + 5 {
            remember(&format!("seen:{n}"), n, Some(u64::MAX));
        }
        let size = CACHED.with(|cached| cached.borrow().len());
        assert!(size <= MAX_VALUES, "{size}");
        assert_eq!(recall::<u8>("config:kept", 0), Some(1));
        assert_eq!(
            recall::<usize>(&format!("seen:{}", MAX_VALUES + 4), 0),
            Some(MAX_VALUES + 4)
        );
    }

    #[test]
    fn computes_once() {
        let mut calls = 0;
        assert_eq!(
            once("config:x", || {
                calls += 1;
                7
            }),
            7
        );
        assert_eq!(
            once("config:x", || {
                calls += 1;
                8
            }),
            7
        );
        assert_eq!(calls, 1);
    }
}
