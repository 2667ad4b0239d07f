//! The test switches (`TEST_*`): faults the end-to-end tests inject, never for production. They
//! are honoured only when every WeChat and WeCom origin is a loopback address; otherwise the
//! configuration is refused, naming the switch, so that one left in a deployment fails loudly
//! on every route instead of quietly faulting it. Plain `http://` to anything but loopback is
//! refused the same way: the calls carry appsecrets and tokens. Pure.

use crate::error::AppError;

/// Every switch the worker reads (`edge::faults`).
pub const TEST_SWITCHES: [&str; 10] = [
    "TEST_ALERT_PACE",
    "TEST_FAIL_KV_WRITES",
    "TEST_KV_ONE_WRITE_PER_SEC",
    "TEST_NO_DUE_ALARMS",
    "TEST_FAIL_ERASES",
    "TEST_FAIL_REGISTRY_PUTS",
    "TEST_FAIL_PUSH_STORES",
    "TEST_LOG_OBJECT_REQUESTS",
    "TEST_STALL_OBJECTS",
    "TEST_QUOTA_WATCH_SECS",
];

/// Whether an origin (`scheme://host[:port][/path]`) names a loopback host: 127.0.0.0/8,
/// `localhost` or `[::1]`.
pub fn is_loopback(origin: &str) -> bool {
    let rest = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    let dotted: Vec<&str> = host.split('.').collect();
    let in_127 = dotted.len() == 4
        && dotted[0] == "127"
        && dotted.iter().all(|part| part.parse::<u8>().is_ok());
    in_127 || host.eq_ignore_ascii_case("localhost") || host == "::1"
}

/// Refuses plain `http://` to a host that is not loopback, and any test switch set while an
/// origin is not loopback. `origins`: each origin variable's name and value.
pub fn check(
    lookup: &impl Fn(&str) -> Option<String>,
    origins: &[(&'static str, &str)],
) -> Result<(), AppError> {
    if let Some((variable, _)) = origins
        .iter()
        .find(|(_, origin)| origin.starts_with("http://") && !is_loopback(origin))
    {
        return Err(AppError::Config {
            variable,
            problem: "is plain http:// to a host that is not loopback: use https://".into(),
        });
    }
    let all_loopback = origins.iter().all(|(_, origin)| is_loopback(origin));
    let set = |name: &&&str| lookup(name).is_some_and(|v| !v.trim().is_empty());
    match TEST_SWITCHES.iter().find(set) {
        Some(switch) if !all_loopback => Err(AppError::Config {
            variable: switch,
            problem: "is a test switch, honoured only when WECHAT_API_BASE and WECOM_API_BASE \
                      are loopback addresses: remove it from this deployment"
                .into(),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let owned: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| {
            owned
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn loopback_is_127_localhost_and_the_v6_one() {
        for origin in [
            "http://127.0.0.1:9100",
            "http://127.10.0.3",
            "http://localhost:8787/wechat",
            "http://[::1]:9000",
        ] {
            assert!(is_loopback(origin), "{origin}");
        }
        for origin in [
            "https://api.weixin.qq.com",
            "http://127.0.0.1.example.com",
            "http://10.0.0.1",
            "http://[::2]",
            "http://1127.0.0.1",
        ] {
            assert!(!is_loopback(origin), "{origin}");
        }
    }

    #[test]
    fn a_test_switch_outside_loopback_is_refused_by_name() {
        let loopback = [
            ("WECHAT_API_BASE", "http://127.0.0.1:9100"),
            ("WECOM_API_BASE", "http://127.0.0.1:9100"),
        ];
        let switch = lookup(&[("TEST_NO_DUE_ALARMS", "1")]);
        assert_eq!(check(&switch, &loopback), Ok(()));
        let production = [
            ("WECHAT_API_BASE", "https://api.weixin.qq.com"),
            ("WECOM_API_BASE", "http://127.0.0.1:9100"),
        ];
        match check(&switch, &production) {
            Err(AppError::Config { variable, .. }) => assert_eq!(variable, "TEST_NO_DUE_ALARMS"),
            other => panic!("{other:?}"),
        }
        assert_eq!(check(&lookup(&[]), &production), Ok(()));
        assert_eq!(
            check(&lookup(&[("TEST_FAIL_ERASES", " ")]), &production),
            Ok(())
        );
    }

    #[test]
    fn plain_http_is_for_loopback_only() {
        let origins = [
            ("WECHAT_API_BASE", "https://api.weixin.qq.com"),
            ("WECOM_API_BASE", "http://relay.example.com/wecom"),
        ];
        match check(&lookup(&[]), &origins) {
            Err(AppError::Config { variable, .. }) => assert_eq!(variable, "WECOM_API_BASE"),
            other => panic!("{other:?}"),
        }
    }
}
