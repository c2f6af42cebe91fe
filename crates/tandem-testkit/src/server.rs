//! A server child process, and the watchdog that cleans up after it if we die.
//!
//! The invariant: a server started by the kit never outlives the process that started it,
//! and its throwaway data directory goes with it — even when a test panics, the harness
//! calls `exit` with shared instances still held in statics (which Rust never drops), or
//! the test process is killed outright by a timeout.
//!
//! Destructors cannot give that guarantee, so every server gets a *watchdog*: a tiny
//! `sh` process whose stdin is a pipe whose only write end lives in our process (std opens
//! pipes close-on-exec, so no other child inherits it). The watchdog blocks reading that
//! pipe. However our process ends, the kernel closes the write end, the read returns EOF,
//! and the watchdog signals the server, waits for it, kills it if it lingers and removes
//! the data directory. A stop through the kit's own API first *disarms* the watchdog (kills
//! it) and then stops the server itself, so the watchdog never signals a pid that may have
//! been reused.
//!
//! Servers and watchdogs run in process groups of their own, so a Ctrl-C in the terminal
//! (or a test runner killing the test's group) does not hit them directly: the server is
//! stopped in an orderly way by whoever owns it.
//!
//! `PR_SET_PDEATHSIG` was rejected: it fires when the *thread* that spawned the child
//! exits, and test harnesses run tests on short-lived threads while a shared instance must
//! outlive the test that started it; it would also need `unsafe` in `pre_exec`.

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::KitError;

/// How often a starting or stopping server is polled.
const POLL: Duration = Duration::from_millis(20);
/// How much of the log (from the end) an error message may quote.
const LOG_TAIL_BYTES: u64 = 64 * 1024;
/// How many log lines an error message quotes.
const LOG_TAIL_LINES: usize = 40;

/// The watchdog. `$1` server pid, `$2` signal number, `$3` directory to remove (or "").
///
/// It ignores terminal signals, waits for EOF on stdin, then stops the server: the chosen
/// signal, up to 10 s for it to go (a zombie counts as gone), then SIGKILL.
const WATCHDOG_SCRIPT: &str = r#"
trap '' HUP INT TERM QUIT PIPE
while read -r _; do :; done
alive() { [ -d "/proc/$1" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
if kill -"$2" "$1" 2>/dev/null; then
  i=0
  while alive "$1" && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
  kill -9 "$1" 2>/dev/null
fi
if [ -n "$3" ]; then rm -rf -- "$3"; fi
"#;

/// What the watchdog does if our process dies while the server runs.
#[derive(Debug, Clone)]
pub(crate) struct OrphanPolicy {
    /// The first signal sent to the server.
    pub signal: Signal,
    /// The throwaway directory to remove afterwards; `None` for persistent instances.
    pub remove_dir: Option<PathBuf>,
}

/// A running server process (see the module docs for the cleanup guarantee).
#[derive(Debug)]
pub(crate) struct ServerProcess {
    server: &'static str,
    child: Child,
    watchdog: Option<Watchdog>,
    log: PathBuf,
    /// Length of the log file when this process was spawned: errors quote only what this
    /// start wrote, not an earlier run's lines.
    log_start: u64,
}

impl ServerProcess {
    /// Spawns `cmd` with its output appended to `log`, and arms a watchdog for it.
    pub(crate) fn spawn(
        server: &'static str,
        mut cmd: Command,
        log: &Path,
        orphan: &OrphanPolicy,
    ) -> Result<Self, KitError> {
        let log_file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(KitError::io(format!(
                "opening the log file {}",
                log.display()
            )))?;
        let log_start = log_file.metadata().map(|m| m.len()).unwrap_or(0);
        let stderr = log_file
            .try_clone()
            .map_err(KitError::io("duplicating the log file handle"))?;
        cmd.stdin(Stdio::null())
            .stdout(log_file)
            .stderr(stderr)
            .process_group(0);
        let child = cmd.spawn().map_err(KitError::io(format!(
            "starting {}",
            cmd.get_program().to_string_lossy()
        )))?;
        let mut process = ServerProcess {
            server,
            child,
            watchdog: None,
            log: log.to_path_buf(),
            log_start,
        };
        process.watchdog = Some(Watchdog::arm(process.child.id(), orphan)?);
        Ok(process)
    }

    /// Polls until `probe` says the server is ready, it exits, or `timeout` passes.
    ///
    /// `probe` is only called once the TCP port accepts connections.
    pub(crate) async fn wait_ready<F, Fut>(
        &mut self,
        port: u16,
        timeout: Duration,
        mut probe: F,
    ) -> Result<(), KitError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    return Err(self.startup_error(format!("the server exited ({status})")))
                }
                Ok(None) => {}
                Err(e) => return Err(KitError::io("polling the server process")(e)),
            }
            if port_accepts(port).await && probe().await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(self.startup_error(format!("not ready after {} s", timeout.as_secs())));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Whether this start failed because its port was taken (the caller may retry).
    pub(crate) fn lost_port_race(&self) -> bool {
        self.log_since_start().contains("Address already in use")
    }

    /// Disarms the watchdog, sends `signal` and waits up to `grace` for the server to exit,
    /// then kills it. Returns false if it had to be killed.
    pub(crate) async fn shutdown(&mut self, signal: Signal, grace: Duration) -> bool {
        self.disarm();
        if self.has_exited() {
            return true;
        }
        let _ = kill(self.pid(), signal);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.has_exited() {
                return true;
            }
            tokio::time::sleep(POLL).await;
        }
        self.kill_now();
        false
    }

    /// [`Self::shutdown`] for an owner's orderly stop: an error if the server had to be
    /// killed.
    pub(crate) async fn stop(mut self, signal: Signal, grace: Duration) -> Result<(), KitError> {
        if self.shutdown(signal, grace).await {
            Ok(())
        } else {
            Err(KitError::Shutdown {
                server: self.server,
                grace_secs: grace.as_secs(),
            })
        }
    }

    /// [`Self::shutdown`] for destructors, which cannot await.
    pub(crate) fn shutdown_blocking(&mut self, signal: Signal, grace: Duration) -> bool {
        self.disarm();
        if self.has_exited() {
            return true;
        }
        let _ = kill(self.pid(), signal);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.has_exited() {
                return true;
            }
            std::thread::sleep(POLL);
        }
        self.kill_now();
        false
    }

    /// The error for a failed start, quoting what the server logged during it.
    pub(crate) fn startup_error(&self, reason: String) -> KitError {
        let text = self.log_since_start();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
        KitError::Startup {
            server: self.server,
            reason,
            log: self.log.clone(),
            log_tail: tail,
        }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(i32::MAX))
    }

    fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    fn kill_now(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn disarm(&mut self) {
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.child.kill();
            let _ = watchdog.child.wait();
        }
    }

    fn log_since_start(&self) -> String {
        read_log(&self.log, self.log_start).unwrap_or_else(|e| format!("(log unreadable: {e})"))
    }
}

impl Drop for ServerProcess {
    /// Last line of defence: owners stop the server gracefully before this runs.
    fn drop(&mut self) {
        self.disarm();
        if !self.has_exited() {
            self.kill_now();
        }
    }
}

/// The watchdog process and the write end of its pipe (see the module docs).
#[derive(Debug)]
struct Watchdog {
    child: Child,
    _armed: ChildStdin,
}

impl Watchdog {
    fn arm(server_pid: u32, orphan: &OrphanPolicy) -> Result<Self, KitError> {
        let dir = orphan
            .remove_dir
            .as_deref()
            .map(Path::as_os_str)
            .unwrap_or_default();
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(WATCHDOG_SCRIPT)
            .arg("tandem-kit-watchdog")
            .arg(server_pid.to_string())
            .arg((orphan.signal as i32).to_string())
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(KitError::io("starting the watchdog shell"))?;
        match child.stdin.take() {
            Some(armed) => Ok(Watchdog {
                child,
                _armed: armed,
            }),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                Err(KitError::io("arming the watchdog")(std::io::Error::other(
                    "no stdin pipe",
                )))
            }
        }
    }
}

/// Spawns a server with `spawn(port)` and waits until `probe(port)` says it is ready,
/// making up to `attempts` starts while the port turns out to be taken: with no fixed
/// port, each on a new free port (another process won the race for the last one); on a
/// restart, on the same port, in case the old socket lingers. A start that failed is
/// stopped with `abandon` (signal and grace) before the next attempt or the error.
pub(crate) async fn launch<S, P, F, Fut>(
    fixed_port: Option<u16>,
    attempts: u32,
    ready_timeout: Duration,
    abandon: (Signal, Duration),
    mut spawn: S,
    mut probe: P,
) -> Result<(u16, ServerProcess), KitError>
where
    S: FnMut(u16) -> Result<ServerProcess, KitError>,
    P: FnMut(u16) -> F,
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        let port = match fixed_port {
            Some(port) => port,
            None => free_port()?,
        };
        let mut process = spawn(port)?;
        match process.wait_ready(port, ready_timeout, probe(port)).await {
            Ok(()) => return Ok((port, process)),
            Err(e) => {
                let retry = process.lost_port_race() && attempt < attempts;
                process.shutdown(abandon.0, abandon.1).await;
                if !retry {
                    return Err(e);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

/// A port that was free a moment ago. Another process may take it before the server binds
/// it; starts therefore retry on "Address already in use".
pub(crate) fn free_port() -> Result<u16, KitError> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
        .map_err(KitError::io("binding 127.0.0.1:0 to pick a free port"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(KitError::io("reading the picked port"))
}

async fn port_accepts(port: u16) -> bool {
    let connect = tokio::net::TcpStream::connect(("127.0.0.1", port));
    matches!(
        tokio::time::timeout(Duration::from_secs(1), connect).await,
        Ok(Ok(_))
    )
}

fn read_log(path: &Path, start: u64) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let from = start.max(len.saturating_sub(LOG_TAIL_BYTES));
    file.seek(SeekFrom::Start(from))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
