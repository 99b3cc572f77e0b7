//! The token falls back to `AUTOPLAY_TOKEN`, then to 0.13.0's
//! `AUTOPLAY_APP_UNKEY_TOKEN` (its own test binary: it sets the process environment).

mod support;

use std::time::Duration;

use autoplay_sdk::{APP_TOKEN_ENV_VAR, ConnectorClient, TOKEN_ENV_VAR};
use support::*;

/// Sets (or, with `None`, removes) an environment variable.
fn set_env(name: &str, value: Option<&str>) {
    // SAFETY: this test binary has a single test, and no client of it is running
    // while the environment changes, so no other thread reads the environment.
    unsafe {
        match value {
            Some(value) => std::env::set_var(name, value),
            None => std::env::remove_var(name),
        }
    }
}

#[test]
fn token_falls_back_to_the_environment_variables() {
    let server = TestServer::always(Reply::stream(vec![Step::Stall]));
    let mut seen = 0;
    // The `Authorization` header of the next connection of a client built with
    // `explicit` as its token (`None`: no `.token()` call).
    let mut authorization = |explicit: Option<&str>| {
        let mut builder = ConnectorClient::builder(server.url());
        if let Some(token) = explicit {
            builder = builder.token(token);
        }
        let bg = builder.build().unwrap().run_in_background().unwrap();
        seen += 1;
        let request = server
            .wait_for_requests(seen, Duration::from_secs(10))
            .remove(seen - 1);
        drop(bg);
        request.header("authorization").map(str::to_owned)
    };
    let bearer = |t: &str| Some(format!("Bearer {t}"));

    set_env(TOKEN_ENV_VAR, Some("uk_from_env"));
    set_env(APP_TOKEN_ENV_VAR, None);
    assert_eq!(authorization(Some("")), bearer("uk_from_env"));
    assert_eq!(authorization(None), bearer("uk_from_env"));
    // A token given to the builder wins over the environment.
    assert_eq!(authorization(Some("uk_explicit")), bearer("uk_explicit"));

    // Ours wins over 0.13.0's.
    set_env(APP_TOKEN_ENV_VAR, Some("uk_app"));
    assert_eq!(authorization(None), bearer("uk_from_env"));
    // 0.13.0's when ours is unset or blank, trimmed as 0.13.0 trims it.
    set_env(APP_TOKEN_ENV_VAR, Some(" uk_app\n"));
    set_env(TOKEN_ENV_VAR, None);
    assert_eq!(authorization(None), bearer("uk_app"));
    set_env(TOKEN_ENV_VAR, Some(" \t\n"));
    assert_eq!(authorization(Some("")), bearer("uk_app"));
    // The explicit token still wins over both.
    assert_eq!(authorization(Some("uk_explicit")), bearer("uk_explicit"));

    // Ours is trimmed too.
    set_env(TOKEN_ENV_VAR, Some("  uk_padded\r\n"));
    assert_eq!(authorization(None), bearer("uk_padded"));

    // Neither (or blank ones): no Authorization header at all.
    set_env(TOKEN_ENV_VAR, None);
    set_env(APP_TOKEN_ENV_VAR, Some("   "));
    assert_eq!(authorization(None), None);
    set_env(APP_TOKEN_ENV_VAR, None);
    assert_eq!(authorization(Some("")), None);
}
