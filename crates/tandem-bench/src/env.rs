//! What every benchmark needs: a pair of throwaway servers, databases on them, a config for
//! `tandem run`, and the tandem process itself with its peak memory and CPU time.
//!
//! tandem runs as the release binary next to this one (`target/release/tandem`), exactly as
//! an operator runs it, so that what is measured includes its real runtime: the pipeline,
//! grouping, checkpointing and the HTTP server.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tandem_testkit::{MariaInstance, MariaOptions, PgInstance, PgOptions, TestDb};

/// Both servers, started once per `tandem-bench` run.
pub struct Servers {
    pub pg: PgInstance,
    pub maria: MariaInstance,
}

impl Servers {
    /// PostgreSQL with `fsync = on`: MariaDB's commits are durable
    /// (`innodb_flush_log_at_trx_commit = 1`), and a comparison must not give one side
    /// free commits.
    pub async fn start() -> Result<Servers> {
        let pg = PgInstance::start(PgOptions {
            fsync: true,
            extra_conf: vec![("max_wal_size".into(), "2GB".into())],
            ..PgOptions::default()
        })
        .await
        .context("starting PostgreSQL")?;
        let maria = MariaInstance::start(MariaOptions {
            extra_args: vec!["--max-allowed-packet=256M".into()],
            ..MariaOptions::default()
        })
        .await
        .context("starting MariaDB")?;
        Ok(Servers { pg, maria })
    }

    pub async fn pg_client(&self, db: &TestDb) -> Result<tokio_postgres::Client> {
        let (client, conn) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls)
            .await
            .context("connecting to PostgreSQL")?;
        tokio::spawn(conn);
        Ok(client)
    }

    pub async fn maria_conn(&self, db: &TestDb) -> Result<mysql_async::Conn> {
        let opts = mysql_async::Opts::from_url(db.url()).context("MariaDB url")?;
        mysql_async::Conn::new(opts)
            .await
            .context("connecting to MariaDB")
    }
}

/// One `[[mappings]]` entry of the bench config: same column names on both sides.
pub struct Mapping<'a> {
    pub name: &'a str,
    pub direction: &'a str,
    pub inventory_table: &'a str,
    pub retail_table: &'a str,
    pub columns: &'a [&'a str],
}

/// Writes a tandem config for `inv` and `ret` with `mappings` into a fresh directory.
/// Each mapping's conflict strategy is `prefer:` its source endpoint.
pub fn write_config(
    servers: &Servers,
    inv: &TestDb,
    ret: &TestDb,
    mappings: &[Mapping<'_>],
) -> Result<(PathBuf, String)> {
    let mut text = String::new();
    for m in mappings {
        let owner = m.direction.split("->").next().unwrap_or("inventory");
        text.push_str(&format!(
            "\n[[mappings]]\nname = \"{}\"\ndirection = \"{}\"\n\
             inventory = {{ table = \"{}\", key = [\"id\"] }}\n\
             retail = {{ table = \"{}\", key = [\"id\"] }}\n\
             conflict = \"prefer:{owner}\"\ncolumns = [\n",
            m.name, m.direction, m.inventory_table, m.retail_table
        ));
        for c in m.columns {
            text.push_str(&format!("  {{ inventory = \"{c}\", retail = \"{c}\" }},\n"));
        }
        text.push_str("]\n");
    }
    write_config_toml(servers, inv, ret, &text)
}

/// Writes a tandem config for `inv` and `ret` with the given `[[mappings]]` TOML into a
/// fresh directory; returns its path and the daemon's listen address.
pub fn write_config_toml(
    servers: &Servers,
    inv: &TestDb,
    ret: &TestDb,
    mappings_toml: &str,
) -> Result<(PathBuf, String)> {
    let listen = format!("127.0.0.1:{}", free_port()?);
    let mut text = format!(
        "[daemon]\nlisten = \"{listen}\"\n\n\
         [endpoints.inventory]\nkind = \"postgres\"\nurl = \"{}\"\n\
         password = {{ env = \"INVENTORY_PASSWORD\" }}\ntls = {{ mode = \"disable\" }}\n\n\
         [endpoints.retail]\nkind = \"mysql\"\nurl = \"{}\"\n\
         password = {{ env = \"RETAIL_PASSWORD\" }}\ntls = {{ mode = \"disable\" }}\n",
        servers.pg.url(&inv.name),
        servers.maria.url(&ret.name),
    );
    text.push_str(mappings_toml);
    let dir =
        std::env::temp_dir().join(format!("tandem-bench-{}-{}", std::process::id(), inv.name));
    std::fs::create_dir_all(&dir).context("bench temp dir")?;
    let path = dir.join("tandem.toml");
    std::fs::write(&path, text).context("writing the bench config")?;
    Ok((path, listen))
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// The release `tandem` binary next to this executable.
pub fn tandem_binary() -> Result<PathBuf> {
    let me = std::env::current_exe().context("locating tandem-bench")?;
    let bin = me.with_file_name("tandem");
    if !bin.exists() {
        bail!(
            "{} not found: build it first (cargo build --release -p tandem)",
            bin.display()
        );
    }
    Ok(bin)
}

/// A running `tandem run`; killed when dropped.
pub struct Tandem {
    child: Child,
    listen: String,
    pub started: Instant,
}

/// What a finished tandem run cost.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    /// Peak resident set (VmHWM), MiB.
    pub peak_rss_mib: f64,
    /// User + system CPU seconds.
    pub cpu_secs: f64,
}

impl Tandem {
    pub fn start(config: &Path, listen: &str) -> Result<Tandem> {
        let log = config.with_file_name("tandem.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let child = Command::new(tandem_binary()?)
            .args(["run", "-c"])
            .arg(config)
            .env("INVENTORY_PASSWORD", "")
            .env("RETAIL_PASSWORD", "")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .context("starting tandem run")?;
        Ok(Tandem {
            child,
            listen: listen.to_owned(),
            started: Instant::now(),
        })
    }

    /// Waits until `directions` directions report `streaming` in `/status`.
    pub async fn wait_streaming(&mut self, directions: usize, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = http_get(&self.listen, "/status").await {
                if status.matches(r#""state":"streaming""#).count() >= directions {
                    return Ok(());
                }
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                bail!("tandem exited with {st} before streaming (see its log)");
            }
            if Instant::now() > deadline {
                bail!("tandem did not reach streaming within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Fails if the process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Ok(Some(st)) = self.child.try_wait() {
            bail!("tandem exited with {st} (see its log)");
        }
        Ok(())
    }

    pub fn usage(&self) -> Usage {
        usage_of(self.child.id())
    }

    /// What the daemon applied once it reports at least `txns` source transactions (or
    /// after 10 s): it counts a group right after the target commit returns, so a reader
    /// of the target can see the rows a moment before the count.
    pub async fn applied_at_least(&self, txns: usize) -> Applied {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let applied = self.applied().await;
            if applied.txns >= txns as f64 || Instant::now() > deadline {
                return applied;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What the daemon applied so far, from its own `/metrics`.
    pub async fn applied(&self) -> Applied {
        let body = http_get(&self.listen, "/metrics").await.unwrap_or_default();
        let sum_where = |prefix: &str, label: &str| -> f64 {
            body.lines()
                .filter(|l| l.starts_with(prefix) && l.contains(label))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .fold(0.0, |a, b| a + b)
        };
        let sum = |prefix: &str| sum_where(prefix, "");
        Applied {
            txns: sum("tandem_transactions_applied_total"),
            changes: sum("tandem_changes_applied_total"),
            commits: sum("tandem_apply_batch_duration_seconds_count"),
            open_secs: sum("tandem_apply_batch_duration_seconds_sum"),
            copied_rows: sum("tandem_snapshot_rows_total"),
            checked: sum_where("tandem_apply_checked_rows_total", r#"outcome="applied""#),
            reread: sum_where("tandem_apply_checked_rows_total", r#"outcome="reread""#),
        }
    }

    /// SIGTERM and wait for a clean exit; returns the usage read just before.
    pub fn stop(mut self) -> Result<Usage> {
        let usage = self.usage();
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(st) = self.child.try_wait()? {
                if !st.success() {
                    eprintln!("warning: tandem exited with {st}");
                }
                return Ok(usage);
            }
            if Instant::now() > deadline {
                bail!("tandem did not stop within 60 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tandem {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU seconds the two servers have used so far: PostgreSQL's postmaster with its
/// backends (live ones and, through the postmaster's children's times, ended ones) and
/// the `mariadbd` process (all its threads). Differences of two readings tell how much
/// server work a phase took, which on 2 shared cores bounds how fast it can be.
#[derive(Debug, Default, Clone, Copy)]
pub struct ServerCpu {
    pub pg: f64,
    pub maria: f64,
}

impl ServerCpu {
    pub fn read(servers: &Servers) -> ServerCpu {
        let postmaster: Option<u32> =
            std::fs::read_to_string(servers.pg.data_dir().join("postmaster.pid"))
                .ok()
                .and_then(|s| s.lines().next()?.trim().parse().ok());
        let datadir = format!("--datadir={}", servers.maria.data_dir().display());
        let mut cpu = ServerCpu::default();
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return cpu;
        };
        for entry in procs.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Some(fields) = proc_stat_fields(pid) else {
                continue;
            };
            let field = |i: usize| {
                fields
                    .get(i)
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or(0.0)
            };
            // After the command name: ppid is field 1, utime/stime 11/12, cutime/cstime 13/14.
            let own = (field(11) + field(12)) / TICKS_PER_SEC;
            let ppid = field(1) as u32;
            if Some(pid) == postmaster {
                cpu.pg += own + (field(13) + field(14)) / TICKS_PER_SEC;
            } else if Some(ppid) == postmaster {
                cpu.pg += own;
            } else if std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&datadir))
            {
                cpu.maria += own;
            }
        }
        cpu
    }

    pub fn since(self, earlier: ServerCpu) -> ServerCpu {
        ServerCpu {
            pg: self.pg - earlier.pg,
            maria: self.maria - earlier.maria,
        }
    }
}

/// Clock ticks per second of `/proc/*/stat` times (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
const TICKS_PER_SEC: f64 = 100.0;

/// The whitespace-separated fields after a process's parenthesised command name.
fn proc_stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// A daemon's own count of what it applied (`tandem_*` metrics).
#[derive(Debug, Default, Clone, Copy)]
pub struct Applied {
    pub txns: f64,
    pub changes: f64,
    /// Target commits: the apply-batch histogram's count.
    pub commits: f64,
    pub open_secs: f64,
    /// Rows an initial copy wrote.
    pub copied_rows: f64,
    /// Rows written with the conflict check inside the write, and rows read back after it.
    pub checked: f64,
    pub reread: f64,
}

impl std::fmt::Display for Applied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let per = self.commits.max(1.0);
        write!(
            f,
            "{:.0} source txns, {:.0} changes in {:.0} target commits ({:.1} txns, {:.0} changes \
             and {:.1} ms open per commit); {:.0} rows copied; {:.0} rows written checked, \
             {:.0} read back",
            self.txns,
            self.changes,
            self.commits,
            self.txns / per,
            self.changes / per,
            self.open_secs * 1e3 / per,
            self.copied_rows,
            self.checked,
            self.reread
        )
    }
}

/// Peak RSS and CPU time of a live process, from `/proc`.
pub fn usage_of(pid: u32) -> Usage {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let ticks: f64 = stat
        .rsplit_once(')')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|t| t.parse::<f64>().ok())
                .sum()
        })
        .unwrap_or(0.0);
    Usage {
        peak_rss_mib: hwm_kib / 1024.0,
        cpu_secs: ticks / 100.0,
    }
}

pub async fn http_get(addr: &str, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.ok()?;
    Some(buf)
}

/// Runs `tandem verify -c config` (tandem's own comparison of both sides); returns its
/// summary line when the sides are equal, fails with its report when they are not.
pub fn tandem_verify(config: &Path) -> Result<String> {
    let out = Command::new(tandem_binary()?)
        .args(["verify", "-c"])
        .arg(config)
        .env("INVENTORY_PASSWORD", "")
        .env("RETAIL_PASSWORD", "")
        .env("NO_COLOR", "1")
        .output()
        .context("running tandem verify")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "tandem verify exited with {}: {}{}",
            out.status,
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(stdout
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or("equal")
        .trim()
        .to_owned())
}

/// Runs a shell pipeline; fails with its stderr if it fails. Returns the elapsed time.
pub fn shell(script: &str) -> Result<Duration> {
    let started = Instant::now();
    let out = Command::new("bash")
        .args(["-o", "pipefail", "-c", script])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .context("running bash")?;
    if !out.status.success() {
        bail!(
            "`{script}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(started.elapsed())
}

/// Load average and a timestamp, for the record.
pub fn machine_note() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "{} UTC, {cores} cores, load {}",
        chrono::Utc::now().format("%Y-%m-%d %H:%M"),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// psql/mariadb command prefixes for shell pipelines against the bench servers.
pub fn psql_cmd(servers: &Servers, db: &str) -> String {
    format!(
        "psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres -p {} -d {db}",
        servers.pg.port()
    )
}

pub fn mariadb_cmd(servers: &Servers, tool: &str, db: &str) -> String {
    format!(
        "{tool} --no-defaults --protocol=TCP -h 127.0.0.1 -P {} -u root {db}",
        servers.maria.port()
    )
}
