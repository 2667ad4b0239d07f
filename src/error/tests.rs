use super::*;

#[test]
fn statuses_follow_the_contract() {
    let cases = [
        (AppError::BadRequest("x".into()), 400, "bad_request"),
        (AppError::Unauthorized, 401, "unauthorized"),
        (AppError::NotFound, 404, "not_found"),
        (
            AppError::MethodNotAllowed { allow: "GET" },
            405,
            "method_not_allowed",
        ),
        (AppError::ForbiddenAccount, 403, "forbidden_account"),
        (AppError::UnknownAccount, 404, "unknown_account"),
        (
            AppError::RefreshTooSoon {
                retry_after_secs: 3,
                reason: TooSoonReason::ForceDailyLimit,
            },
            429,
            "refresh_too_soon",
        ),
        (
            AppError::Upstream(UpstreamFailure::HttpStatus { status: 500 }),
            502,
            "upstream_http_error",
        ),
        (
            AppError::Upstream(UpstreamFailure::Timeout { after_ms: 10 }),
            504,
            "upstream_timeout",
        ),
        (
            AppError::NoValidToken {
                last_failure: None,
                retry_after_secs: 1,
            },
            503,
            "no_valid_token",
        ),
    ];
    for (error, status, code) in cases {
        assert_eq!(error.status(), status, "{error:?}");
        assert_eq!(error.code(), code);
        assert_eq!(error.body()["error"], code);
    }
}

#[test]
fn wechat_fields_appear_only_when_wechat_spoke() {
    let failure = UpstreamFailure::WeChat {
        errcode: -1,
        errmsg: "system error".into(),
    };
    let body = AppError::Upstream(failure.clone()).body();
    assert_eq!(body["wechat_errcode"], -1);
    assert_eq!(body["wechat_errmsg"], "system error");
    assert!(body.get("wechat_rid").is_none(), "WeChat gave no rid");
    let with_rid = UpstreamFailure::WeChat {
        errcode: 45009,
        errmsg: "reach max api daily quota limit rid: 64eed8de-4cdaca9b".into(),
    };
    assert_eq!(
        AppError::Upstream(with_rid).body()["wechat_rid"],
        "64eed8de-4cdaca9b"
    );

    let body = AppError::NoValidToken {
        last_failure: Some(failure),
        retry_after_secs: 5,
    }
    .body();
    assert_eq!(body["wechat_errcode"], -1);

    let body = AppError::Upstream(UpstreamFailure::HttpStatus { status: 500 }).body();
    assert!(body.get("wechat_errcode").is_none());
}

#[test]
fn config_errors_name_the_variable() {
    let error = AppError::Config {
        variable: "WECHAT_APPSECRET",
        problem: "is not set".into(),
    };
    assert_eq!(error.status(), 500);
    assert!(error.message().contains("WECHAT_APPSECRET"));
}

#[test]
fn failures_round_trip_through_storage_json() {
    let failure = UpstreamFailure::WeChat {
        errcode: 45009,
        errmsg: "reach max api daily quota limit".into(),
    };
    let stored = serde_json::to_string(&failure).unwrap();
    assert_eq!(
        serde_json::from_str::<UpstreamFailure>(&stored).unwrap(),
        failure
    );
}

#[test]
fn relayed_errors_keep_status_body_and_retry_after() {
    let original = AppError::RefreshTooSoon {
        retry_after_secs: 7,
        reason: TooSoonReason::MinInterval,
    };
    let relayed = AppError::Relayed {
        status: 429,
        body: original.body(),
        retry_after_secs: Some(7),
    };
    assert_eq!(relayed.status(), 429);
    assert_eq!(relayed.code(), "refresh_too_soon");
    assert_eq!(relayed.body(), original.body());
    assert_eq!(relayed.retry_after_secs(), Some(7));
    assert_eq!(relayed.message(), original.message());
}

#[test]
fn wechat_shapes() {
    let wechat = AppError::Upstream(UpstreamFailure::WeChat {
        errcode: 40164,
        errmsg: "invalid ip".into(),
    });
    assert_eq!(
        wechat_shape(&wechat.body()),
        json!({"errcode": 40164, "errmsg": "invalid ip"})
    );
    assert_eq!(
        wechat_shape(&AppError::Unauthorized.body())["errcode"],
        40125
    );
    assert_eq!(
        wechat_shape(&AppError::ForbiddenAccount.body())["errcode"],
        40125
    );
    assert_eq!(
        wechat_shape(&AppError::UnknownAccount.body())["errcode"],
        40013
    );
    let too_soon = AppError::RefreshTooSoon {
        retry_after_secs: 7,
        reason: TooSoonReason::ForceDailyLimit,
    };
    assert_eq!(wechat_shape(&too_soon.body())["errcode"], 45009);
    let timeout = AppError::Upstream(UpstreamFailure::Timeout { after_ms: 10 });
    assert_eq!(wechat_shape(&timeout.body())["errcode"], -1);
}
