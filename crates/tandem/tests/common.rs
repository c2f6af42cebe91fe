//! Helpers shared by the binary's end-to-end tests: demo schemas on throwaway servers, a
//! config pointing at them, and the `tandem` binary.
#![allow(clippy::unwrap_used)]
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use tandem_testkit::{MariaInstance, PgInstance, TestDb};

pub const INVENTORY_SQL: &str = include_str!("../../../configs/demo-inventory.sql");
pub const RETAIL_SQL: &str = include_str!("../../../configs/demo-retail.sql");

pub struct Pair {
    pub inventory: TestDb,
    pub retail: TestDb,
    pub dir: PathBuf,
}

/// Both demo schemas on fresh databases (with `rows` items instead of the demo's 3000).
pub async fn demo_pair(pg: &PgInstance, maria: &MariaInstance, rows: usize) -> Pair {
    let inventory = pg.create_database("inv").await.expect("inventory database");
    let retail = maria.create_database("ret").await.expect("retail database");
    pg.psql(
        &inventory.name,
        &INVENTORY_SQL.replace(
            "generate_series(1, 3000)",
            &format!("generate_series(1, {rows})"),
        ),
    )
    .await
    .expect("inventory schema");
    maria
        .sql(&retail.name, RETAIL_SQL)
        .await
        .expect("retail schema");
    let dir = std::env::temp_dir().join(format!(
        "tandem-e2e-{}-{}",
        std::process::id(),
        inventory.name
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    Pair {
        inventory,
        retail,
        dir,
    }
}

/// The demo config rewritten for `pair`, with `edit` applied to its text.
pub fn write_config(
    pair: &Pair,
    pg: &PgInstance,
    maria: &MariaInstance,
    listen: &str,
    edit: impl Fn(String) -> String,
) -> PathBuf {
    let text = include_str!("../../../configs/demo.toml")
        .replace(
            "postgres://postgres@127.0.0.1:55432/inventory",
            &pg.url(&pair.inventory.name),
        )
        .replace(
            "mysql://root@127.0.0.1:53306/retail",
            &maria.url(&pair.retail.name),
        )
        .replace("127.0.0.1:9187", listen);
    let path = pair.dir.join("tandem.toml");
    std::fs::write(&path, edit(text)).expect("config written");
    path
}

pub fn tandem(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(args)
        .env("INVENTORY_PASSWORD", "")
        .env("RETAIL_PASSWORD", "")
        .output()
        .expect("tandem runs")
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// `tandem run -c config` as a child process, killed when dropped whatever the test's
/// outcome (a failing test must not leave a daemon behind). Logs at `warn` unless
/// `RUST_LOG` says otherwise.
pub struct Daemon(pub Child);

impl Daemon {
    pub fn start(config: &Path) -> Daemon {
        let child = Command::new(env!("CARGO_BIN_EXE_tandem"))
            .args(["run", "-c", config.to_str().expect("utf-8 path")])
            .env("INVENTORY_PASSWORD", "")
            .env("RETAIL_PASSWORD", "")
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("tandem run starts");
        Daemon(child)
    }

    /// SIGTERM, then wait (at most 40 s) for the exit status.
    pub fn terminate(mut self) -> ExitStatus {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if let Ok(Some(status)) = self.0.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "tandem did not exit within 40 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Poll `f` until it holds, failing the test after 60 s.
pub async fn wait_for<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A plain HTTP GET against the daemon's endpoint; `None` while it is not listening.
pub async fn http_get(addr: &str, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.ok()?;
    Some(buf)
}

/// Poll `f` every `every` until it holds, failing the test after `limit`.
pub async fn wait_for_within<F, Fut>(what: &str, limit: Duration, every: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !f().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {} s waiting for {what}",
            limit.as_secs()
        );
        tokio::time::sleep(every).await;
    }
}

/// Until the daemon at `listen` answers `/readyz` with 200: every direction streaming.
pub async fn wait_ready(listen: &str) {
    wait_for("every direction to stream (/readyz 200)", || async {
        http_get(listen, "/readyz")
            .await
            .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
    })
    .await;
}

/// A process's peak resident set size in KiB (`VmHWM` in /proc/PID/status, Linux).
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

/// CPU time (user + system) a process has used so far, from /proc/PID/stat (Linux).
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).expect("stat format");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    let hz = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .unwrap_or(100.0);
    ticks as f64 / hz
}
