//! The token falls back to `AUTOPLAY_TOKEN` (its own test binary: it sets the
//! process environment).

mod support;

use std::time::Duration;

use autoplay_sdk::ConnectorClient;
use support::*;

#[test]
fn token_falls_back_to_the_environment_variable() {
    // SAFETY: this test binary has a single test, so no other thread reads the environment.
    unsafe { std::env::set_var(autoplay_sdk::TOKEN_ENV_VAR, "uk_from_env") };
    let server = TestServer::always(Reply::stream(vec![Step::Stall]));
    let client = ConnectorClient::builder(server.url())
        .token("")
        .build()
        .unwrap();
    let bg = client.run_in_background().unwrap();
    let request = server
        .wait_for_requests(1, Duration::from_secs(10))
        .remove(0);
    drop(bg);
    assert_eq!(request.header("authorization"), Some("Bearer uk_from_env"));

    // A token given to the builder wins over the environment.
    let client = ConnectorClient::builder(server.url())
        .token("uk_explicit")
        .build()
        .unwrap();
    let bg = client.run_in_background().unwrap();
    let request = server
        .wait_for_requests(2, Duration::from_secs(10))
        .remove(1);
    drop(bg);
    assert_eq!(request.header("authorization"), Some("Bearer uk_explicit"));
}
