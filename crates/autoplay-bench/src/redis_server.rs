//! The `redis-server` that parts 6 and 7 measure the Redis store on: started
//! by the benchmark itself on a free port of 127.0.0.1 with a temp dir, the
//! durability a deployment would use (`appendonly yes`, `appendfsync everysec`,
//! no RDB snapshots), and stopped by its PID when dropped (also on a panic).

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The settings the server runs with, for the report.
pub const SETTINGS: &str = "`appendonly yes`, `appendfsync everysec`, `save \"\"`";

/// A running `redis-server` of this benchmark.
pub struct RedisServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts one (`$REDIS_SERVER` or `redis-server` on the `PATH`); the error
    /// says what is missing.
    pub fn start() -> Result<Self, String> {
        let dir = tempfile::Builder::new()
            .prefix("autoplay-bench-redis-")
            .tempdir()
            .map_err(|e| format!("no temp dir for redis-server: {e}"))?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| format!("no free port: {e}"))?;
        let binary = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let child = Command::new(&binary)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(dir.path())
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
            ])
            // Its clients are the replicas: a handful of connections each.
            .args(["--maxclients", "1000"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {binary} (Debian package redis-server): {e}"))?;
        let server = Self {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err("redis-server did not listen within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(server)
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `redis-server --version`, shortened to its version.
    pub fn version() -> String {
        let binary = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        Command::new(binary)
            .arg("--version")
            .output()
            .ok()
            .and_then(|o| {
                let text = String::from_utf8_lossy(&o.stdout).into_owned();
                text.split_whitespace()
                    .find_map(|w| w.strip_prefix("v=").map(str::to_owned))
            })
            .unwrap_or_else(|| "?".into())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
