use super::*;

const NOW: u64 = 1_800_000_000;

fn notice(account: &str, condition: &str, state: &str) -> Notice {
    Notice {
        account: account.into(),
        condition: condition.into(),
        state: state.into(),
        since: NOW - 30,
        errcode: None,
        errmsg: None,
        rid: None,
        advice: None,
    }
}

fn queued(seq: u64, hook: &str, account: &str, state: &str, at: u64) -> Queued {
    Queued {
        seq,
        hook: hook.into(),
        notice: notice(account, "no_valid_token", state),
        queued_at: at,
    }
}

#[test]
fn alerts_that_arrive_together_go_as_one_digest_after_the_gathering() {
    let pace = Pace::default();
    let logs = BTreeMap::new();
    let items: Vec<Queued> = (1..=12)
        .map(|n| queued(n, "h", &format!("shop-{n}"), "started", NOW + n % 3))
        .chain([queued(13, "h", "shop-1", "recovered", NOW + 5)])
        .collect();
    let (now_digests, wake) = plan(&items, &logs, &pace, NOW + 5);
    assert!(now_digests.is_empty(), "still gathering");
    assert_eq!(wake, Some(NOW + 10));
    let (digests, wake) = plan(&items, &logs, &pace, NOW + 10);
    assert_eq!(digests.len(), 1);
    assert_eq!(digests[0].notices.len(), 12);
    assert_eq!(
        wake,
        Some(NOW + 15),
        "the recovery gathers from its own arrival"
    );
    let (digests, wake) = plan(&items, &logs, &pace, NOW + 15);
    assert_eq!(digests.len(), 2);
    assert_eq!(digests[1].seqs, [13]);
    assert_eq!(wake, None);
}

#[test]
fn a_group_goes_once_a_window_and_a_webhook_takes_twenty_a_window() {
    let pace = Pace::default();
    let mut log = HookLog::default();
    let first = queued(1, "h", "a", "started", NOW);
    let (digests, _) = plan(
        std::slice::from_ref(&first),
        &BTreeMap::new(),
        &pace,
        NOW + 10,
    );
    log.sent(&digests[0], Ok(()), &pace, NOW + 10);
    // The same condition again soon: it waits for the window, with whatever joins it.
    let later = [
        queued(2, "h", "b", "started", NOW + 20),
        queued(3, "h", "c", "started", NOW + 40),
    ];
    let logs = BTreeMap::from([("h".to_owned(), log.clone())]);
    let (digests, wake) = plan(&later, &logs, &pace, NOW + 40);
    assert!(digests.is_empty());
    assert_eq!(wake, Some(NOW + 70));
    let (digests, _) = plan(&later, &logs, &pace, NOW + 70);
    assert_eq!(digests[0].notices.len(), 2);

    // 25 different groups at once: 20 now, the rest when the window frees.
    let many: Vec<Queued> = (0..25)
        .map(|n| Queued {
            seq: n,
            hook: "h".into(),
            notice: notice("a", &format!("c{n}"), "started"),
            queued_at: NOW,
        })
        .collect();
    let (digests, wake) = plan(&many, &BTreeMap::new(), &pace, NOW + 10);
    assert_eq!(digests.len(), 20);
    assert_eq!(wake, Some(NOW + 11));
    let mut log = HookLog::default();
    for digest in &digests {
        log.sent(digest, Ok(()), &pace, NOW + 10);
    }
    let rest: Vec<Queued> = many.into_iter().skip(20).collect();
    let logs = BTreeMap::from([("h".to_owned(), log)]);
    let (digests, wake) = plan(&rest, &logs, &pace, NOW + 30);
    assert!(digests.is_empty());
    assert_eq!(wake, Some(NOW + 70));
    assert_eq!(plan(&rest, &logs, &pace, NOW + 70).0.len(), 5);
    // Another webhook has its own window.
    let other: Vec<Queued> = rest
        .iter()
        .map(|q| Queued {
            hook: "g".into(),
            ..q.clone()
        })
        .collect();
    assert_eq!(plan(&other, &logs, &pace, NOW + 30).0.len(), 5);
}

#[test]
fn a_failed_message_is_kept_and_goes_with_the_next_digest_after_the_retry_time() {
    let pace = Pace::default();
    let items = [queued(1, "h", "a", "started", NOW)];
    let (digests, _) = plan(&items, &BTreeMap::new(), &pace, NOW + 10);
    let mut log = HookLog::default();
    log.sent(&digests[0], Err(600), &pace, NOW + 10);
    let items = [
        queued(1, "h", "a", "started", NOW),
        queued(2, "h", "b", "started", NOW + 100),
    ];
    let logs = BTreeMap::from([("h".to_owned(), log)]);
    let (digests, wake) = plan(&items, &logs, &pace, NOW + 120);
    assert!(digests.is_empty());
    assert_eq!(wake, Some(NOW + 610), "DingTalk's mute is waited out");
    let (digests, _) = plan(&items, &logs, &pace, NOW + 610);
    assert_eq!(digests[0].seqs, [1, 2]);
}
