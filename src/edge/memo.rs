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

/// The most values kept: past it, every value with a deadline is let go (they are a cache;
/// the isolate's configuration, kept for its life, stays). Tokens and account names that
/// callers present cannot grow an isolate's memory without bound.
const MAX_VALUES: usize = 10_000;

thread_local! {
    static VALUES: RefCell<HashMap<String, Memo>> = RefCell::default();
}

struct Memo {
    value: Rc<dyn Any>,
    /// None: for the isolate's life.
    until_ms: Option<u64>,
}

/// The value remembered under `key`, if any and still fresh.
pub fn recall<T: Clone + 'static>(key: &str, now_ms: u64) -> Option<T> {
    VALUES.with(|values| {
        let values = values.borrow();
        let memo = values.get(key)?;
        if memo.until_ms.is_some_and(|until| now_ms >= until) {
            return None;
        }
        memo.value.downcast_ref::<T>().cloned()
    })
}

/// Remembers `value` until `until_ms` (None: for the isolate's life).
pub fn remember<T: 'static>(key: &str, value: T, until_ms: Option<u64>) {
    VALUES.with(|values| {
        let mut values = values.borrow_mut();
        if values.len() >= MAX_VALUES {
            values.retain(|_, memo| memo.until_ms.is_none());
        }
        values.insert(
            key.to_owned(),
            Memo {
                value: Rc::new(value),
                until_ms,
            },
        );
    });
}

pub fn forget(key: &str) {
    VALUES.with(|values| values.borrow_mut().remove(key));
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
        let size = VALUES.with(|values| values.borrow().len());
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
