//! `autoplay connector`: the connector library behind flags.

use std::io::Write;

use autoplay_connector::{Connector, ConnectorConfig, config, parse_product_spec};

use crate::CliError;
use crate::cli::ConnectorArgs;
use crate::signal::Shutdown;

/// The configuration the flags describe: the file (or the defaults), then the flags.
fn build_config(args: &ConnectorArgs) -> Result<ConnectorConfig, CliError> {
    let mut config = match &args.config {
        Some(path) => ConnectorConfig::from_toml_file(path).map_err(CliError::usage)?,
        None => ConnectorConfig::default(),
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    config.apply_secrets_env().map_err(CliError::usage)?;
    for (i, spec) in args.products.iter().enumerate() {
        // The spec holds a key: never echo it back.
        let product = parse_product_spec(spec)
            .map_err(|e| CliError::usage(format!("--product #{}: {e}", i + 1)))?;
        config.set_product(product);
    }
    if let Some(secs) = args.heartbeat_s {
        config.heartbeat_interval =
            config::seconds(secs).map_err(|e| CliError::usage(format!("--heartbeat-s: {e}")))?;
    }
    if let Some(n) = args.replay_events {
        config.replay_capacity = usize::try_from(n).unwrap_or(usize::MAX);
    }
    if let Some(n) = args.summary_threshold {
        config.summary_threshold = n;
    }
    if let Some(n) = args.replay_bytes {
        config.replay_bytes = n;
    }
    if let Some(n) = args.max_frame_bytes {
        config.max_frame_bytes = n;
    }
    if let Some(secs) = args.body_timeout_s {
        config.body_read_timeout =
            config::seconds(secs).map_err(|e| CliError::usage(format!("--body-timeout-s: {e}")))?;
    }
    if let Some(secs) = args.write_timeout_s {
        config.write_timeout = config::seconds(secs)
            .map_err(|e| CliError::usage(format!("--write-timeout-s: {e}")))?;
    }
    if let Some(store) = &args.store {
        config.store = config::StoreConfig::parse(store)
            .map_err(|e| CliError::usage(format!("--store: {e}")))?;
    }
    config.apply_llm_env();
    Ok(config)
}

/// Raises the soft open-files limit to the hard one: each subscriber holds a
/// socket, and the usual soft limit of 1,024 would refuse connections long before
/// memory or CPU run out. Returns the limit now in force.
#[cfg(unix)]
fn raise_open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                ..limit
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    Some(limit.rlim_cur)
}

pub async fn run(args: ConnectorArgs, mut shutdown: Shutdown) -> Result<(), CliError> {
    let mut config = build_config(&args)?;
    let generated = config.ensure_default_product();
    config.validate().map_err(CliError::usage)?;
    // Raised before binding, so no connection is ever refused for it, but logged
    // only once the connector has started: before an error it is noise.
    #[cfg(unix)]
    let open_files = raise_open_files_limit();
    let products: Vec<String> = config.products.iter().map(|p| p.id.clone()).collect();
    let listen = config.listen;
    let connector = Connector::bind(config)
        .await
        .map_err(|e| CliError::failure(format!("cannot start the connector on {listen}: {e}")))?;

    #[cfg(unix)]
    if let Some(limit) = open_files {
        tracing::info!(limit, "open-files limit (one per subscriber)");
    }

    // On stdout, so a script can read the URLs (and a generated key).
    let mut banner = format!(
        "autoplay connector listening on http://{}\n",
        connector.local_addr()
    );
    match &generated {
        Some(demo) => {
            banner.push_str(&format!(
                "No product configured: generated product {:?} with a random API key \
                 (pass --product ID:API_KEY or --config to choose your own).\n\
                 stream:  {}\n\
                 webhook: {}\n\
                 key:     {}\n\
                 Read the stream with `autoplay listen {} --token <key>`; \
                 send webhooks with the key as X-PostHog-Secret or Bearer token.\n",
                demo.id,
                connector.stream_url(&demo.id),
                connector.webhook_url(&demo.id),
                demo.api_key.expose(),
                connector.stream_url(&demo.id),
            ));
        }
        None => {
            for id in &products {
                banner.push_str(&format!(
                    "product {id}: stream {} webhook {}\n",
                    connector.stream_url(id),
                    connector.webhook_url(id)
                ));
            }
        }
    }
    let mut stdout = std::io::stdout().lock();
    // A closed stdout must not stop the server.
    let _ = stdout
        .write_all(banner.as_bytes())
        .and_then(|()| stdout.flush());
    drop(stdout);

    connector
        .serve_with_shutdown(async move { shutdown.recv().await })
        .await
        .map_err(|e| CliError::failure(format!("the connector failed: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn args(argv: &[&str]) -> ConnectorArgs {
        let mut full = vec!["autoplay", "connector"];
        full.extend_from_slice(argv);
        match Cli::try_parse_from(full).unwrap().command {
            Command::Connector(args) => args,
            _ => unreachable!(),
        }
    }

    #[test]
    fn flags_override_the_file() {
        let dir = std::env::temp_dir().join(format!("autoplay-cli-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("autoplay.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9999\"\nsummary_threshold = 7\nreplay_events = 50\n\
             [[products]]\nid = \"acme\"\napi_keys = [\"old\"]\n",
        )
        .unwrap();
        let config = build_config(&args(&[
            "--config",
            path.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--product",
            "acme:new:whsec",
            "--product",
            "beta:k2",
            "--heartbeat-s",
            "0.25",
            "--summary-threshold",
            "3",
            "--replay-bytes",
            "2000000",
            "--max-frame-bytes",
            "65536",
            "--body-timeout-s",
            "2.5",
            "--write-timeout-s",
            "7",
        ]))
        .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(config.listen.port(), 0);
        assert_eq!(config.summary_threshold, 3);
        assert_eq!(config.replay_capacity, 50);
        assert_eq!(config.replay_bytes, 2_000_000);
        assert_eq!(config.max_frame_bytes, 65_536);
        assert_eq!(
            config.body_read_timeout,
            std::time::Duration::from_millis(2500)
        );
        assert_eq!(config.write_timeout, std::time::Duration::from_secs(7));
        assert_eq!(
            config.heartbeat_interval,
            std::time::Duration::from_millis(250)
        );
        let ids: Vec<_> = config.products.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["acme", "beta"]);
        assert!(config.products[0].api_keys[0].matches("new"));
        assert!(!config.products[0].api_keys[0].matches("old"));
        assert_eq!(
            config.products[0].webhook_secret.as_ref().unwrap().expose(),
            "whsec"
        );
    }

    #[test]
    fn bad_product_specs_do_not_echo_the_key() {
        let err = build_config(&args(&["--product", "no_key_here"])).unwrap_err();
        assert_eq!(err.code, 2);
        assert!(!err.message.contains("no_key_here"), "{}", err.message);
    }
}
