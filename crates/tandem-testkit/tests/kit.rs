//! The kit's promises, checked against real servers: each server comes up configured the
//! way tandem relies on, test databases are separate and go away, restarts keep data and
//! port, and nothing is left running or on disk when the process that started a server
//! dies without cleaning up.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tandem_testkit::{shared_maria, shared_pg, MariaInstance, MariaOptions, PgInstance, PgOptions};
use tokio::io::{AsyncBufReadExt as _, BufReader};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Generous bounds: the targets are 3 s and 5 s, but CI may run four tests on two cores.
const PG_START_BOUND: Duration = Duration::from_secs(10);
const MARIA_START_BOUND: Duration = Duration::from_secs(15);

#[tokio::test]
async fn pg_is_ready_for_logical_decoding_and_hands_out_separate_databases() -> TestResult {
    let started = Instant::now();
    let pg = shared_pg().await;
    let elapsed = started.elapsed();
    eprintln!("shared PostgreSQL ready in {elapsed:?}");
    assert!(
        elapsed < PG_START_BOUND,
        "PostgreSQL took {elapsed:?} to start"
    );

    let settings = pg
        .psql(
            "postgres",
            "SELECT current_setting('wal_level'), current_setting('track_commit_timestamp'), \
                    current_setting('max_replication_slots'), current_setting('TimeZone')",
        )
        .await?;
    assert_eq!(settings, "logical|on|20|UTC");

    let a = pg.create_database("kit a").await?;
    let b = pg.create_database("kit a").await?;
    assert_ne!(a.name, b.name);
    assert!(a.name.starts_with("kit_a_"), "{}", a.name);
    assert_eq!(
        a.url(),
        format!("postgres://postgres@127.0.0.1:{}/{}", pg.port(), a.name)
    );
    pg.psql(
        &a.name,
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);",
    )
    .await?;
    assert_eq!(pg.psql(&a.name, "SELECT count(*) FROM t").await?, "1");
    assert!(
        pg.psql(&b.name, "SELECT count(*) FROM t").await.is_err(),
        "databases share a table"
    );

    let slot = pg
        .psql(
            &a.name,
            "SELECT slot_name FROM pg_create_logical_replication_slot('kit_slot', 'pgoutput')",
        )
        .await?;
    assert_eq!(slot, "kit_slot");
    let plugin = pg
        .psql(
            "postgres",
            "SELECT plugin FROM pg_replication_slots WHERE slot_name = 'kit_slot'",
        )
        .await?;
    assert_eq!(plugin, "pgoutput");

    // A session still connected and a slot on the database must not stop the drop.
    let mut session = tokio::process::Command::new("psql")
        .args([
            "-X",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-p",
            &pg.port().to_string(),
        ])
        .args(["-d", &a.name, "-c", "SELECT pg_sleep(60)"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let a_name = a.name.clone();
    wait_for(|| async {
        let sql = format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{a_name}'");
        pg.psql("postgres", &sql).await.is_ok_and(|n| n == "1")
    })
    .await?;
    drop(a);
    let left = pg
        .psql(
            "postgres",
            &format!(
                "SELECT (SELECT count(*) FROM pg_database WHERE datname = '{a_name}') \
                      + (SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'kit_slot')"
            ),
        )
        .await?;
    assert_eq!(left, "0", "the database or its slot survived the drop");
    let _ = session.kill().await;
    Ok(())
}

#[tokio::test]
async fn pg_without_logical_wal_reports_replica() -> TestResult {
    let pg = PgInstance::start(PgOptions {
        wal_level_logical: false,
        ..PgOptions::default()
    })
    .await?;
    assert_eq!(pg.psql("postgres", "SHOW wal_level").await?, "replica");
    pg.stop().await?;
    Ok(())
}

#[tokio::test]
async fn pg_extra_conf_overrides_the_kits_settings() -> TestResult {
    let opts = PgOptions {
        extra_conf: vec![("max_replication_slots".into(), "7".into())],
        ..PgOptions::default()
    };
    let pg = PgInstance::start(opts).await?;
    assert_eq!(
        pg.psql("postgres", "SHOW max_replication_slots").await?,
        "7"
    );
    Ok(())
}

#[tokio::test]
async fn pg_restart_keeps_port_and_data_and_stop_removes_the_directory() -> TestResult {
    let mut pg = PgInstance::start(PgOptions::default()).await?;
    let port = pg.port();
    let dir = instance_dir(pg.data_dir());
    pg.psql(
        "postgres",
        "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('before');",
    )
    .await?;

    let started = Instant::now();
    pg.restart().await?;
    eprintln!("PostgreSQL restarted in {:?}", started.elapsed());
    assert_eq!(pg.port(), port);
    assert_eq!(pg.psql("postgres", "SELECT v FROM kept").await?, "before");

    pg.stop().await?;
    assert!(!dir.exists(), "{} was not removed", dir.display());
    assert!(!port_accepts(port), "PostgreSQL still listens after stop");
    Ok(())
}

#[tokio::test]
async fn maria_has_a_full_row_binlog_and_hands_out_separate_databases() -> TestResult {
    let started = Instant::now();
    let maria = shared_maria().await;
    let elapsed = started.elapsed();
    eprintln!("shared MariaDB ready in {elapsed:?}");
    assert!(
        elapsed < MARIA_START_BOUND,
        "MariaDB took {elapsed:?} to start"
    );

    let binlog = maria
        .sql(
            "",
            "SELECT @@binlog_format, @@binlog_row_image, @@binlog_row_metadata, @@log_bin;",
        )
        .await?;
    assert_eq!(binlog, "ROW\tFULL\tFULL\t1");
    let other = maria
        .sql(
            "",
            "SELECT @@gtid_strict_mode, @@time_zone, @@character_set_server, @@server_id;",
        )
        .await?;
    assert_eq!(other, "1\t+00:00\tutf8mb4\t1");

    let a = maria.create_database("kit-a").await?;
    let b = maria.create_database("kit-a").await?;
    assert_ne!(a.name, b.name);
    assert_eq!(
        a.url(),
        format!("mysql://root@127.0.0.1:{}/{}", maria.port(), a.name)
    );
    maria
        .sql(
            &a.name,
            "CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1);",
        )
        .await?;
    assert_eq!(maria.sql(&a.name, "SELECT COUNT(*) FROM t;").await?, "1");
    assert!(
        maria.sql(&b.name, "SELECT COUNT(*) FROM t;").await.is_err(),
        "databases share a table"
    );

    // A session holding a metadata lock on a table must not make the drop hang.
    let mut session = tokio::process::Command::new("mariadb")
        .args([
            "--no-defaults",
            "-h",
            "127.0.0.1",
            "-u",
            "root",
            "-P",
            &maria.port().to_string(),
        ])
        .args([
            "-D",
            &a.name,
            "-e",
            "BEGIN; SELECT * FROM t; SELECT SLEEP(60);",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let a_name = a.name.clone();
    wait_for(|| async {
        let sql = format!("SELECT COUNT(*) FROM information_schema.processlist WHERE db = '{a_name}' AND state = 'User sleep';");
        maria.sql("", &sql).await.is_ok_and(|n| n == "1")
    })
    .await?;
    let started = Instant::now();
    drop(a);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the drop waited for the session"
    );
    let sql =
        format!("SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = '{a_name}';");
    assert_eq!(
        maria.sql("", &sql).await?,
        "0",
        "the database survived the drop"
    );
    let _ = session.kill().await;
    Ok(())
}

#[tokio::test]
async fn maria_without_binlog_reports_it_off() -> TestResult {
    let maria = MariaInstance::start(MariaOptions {
        binlog: false,
        ..MariaOptions::default()
    })
    .await?;
    assert_eq!(maria.sql("", "SELECT @@log_bin;").await?, "0");
    maria.stop().await?;
    Ok(())
}

#[tokio::test]
async fn maria_restart_keeps_port_data_and_binlog_and_stop_removes_the_directory() -> TestResult {
    let mut maria = MariaInstance::start(MariaOptions::default()).await?;
    let port = maria.port();
    let dir = instance_dir(maria.data_dir());
    let db = maria.create_database("restart").await?;
    maria
        .sql(
            &db.name,
            "CREATE TABLE kept (v TEXT); INSERT INTO kept VALUES ('before');",
        )
        .await?;
    let gtid = maria.sql("", "SELECT @@gtid_binlog_pos;").await?;

    let started = Instant::now();
    maria.restart().await?;
    eprintln!("MariaDB restarted in {:?}", started.elapsed());
    assert_eq!(maria.port(), port);
    assert_eq!(maria.sql(&db.name, "SELECT v FROM kept;").await?, "before");
    assert_eq!(maria.sql("", "SELECT @@gtid_binlog_pos;").await?, gtid);

    drop(db);
    maria.stop().await?;
    assert!(!dir.exists(), "{} was not removed", dir.display());
    assert!(!port_accepts(port), "MariaDB still listens after stop");
    Ok(())
}

#[tokio::test]
async fn a_failed_start_quotes_the_server_log_and_leaves_nothing_behind() -> TestResult {
    let bad_pg = PgOptions {
        extra_conf: vec![("wal_level".into(), "bogus".into())],
        ..PgOptions::default()
    };
    let bad_maria = MariaOptions {
        extra_args: vec!["--binlog-format=BOGUS".into()],
        ..MariaOptions::default()
    };
    let (pg, maria) = tokio::join!(PgInstance::start(bad_pg), MariaInstance::start(bad_maria));
    for (result, expected) in [
        (pg.map(drop), "invalid value for parameter \"wal_level\""),
        (maria.map(drop), "BOGUS"),
    ] {
        let Err(err) = result else {
            return Err(format!("a server started with {expected}").into());
        };
        let message = err.to_string();
        assert!(
            message.contains(expected),
            "the error does not quote the log: {message}"
        );
        let tandem_testkit::KitError::Startup { log, .. } = err else {
            return Err(format!("not a startup error: {message}").into());
        };
        let dir = log.parent().ok_or("log without a directory")?;
        assert!(!dir.exists(), "{} was left behind", dir.display());
    }
    Ok(())
}

/// Child half of `servers_die_with_the_process_that_started_them`: starts both servers,
/// reports where they are, and aborts, so no destructor runs.
#[tokio::test]
#[ignore = "run by servers_die_with_the_process_that_started_them"]
async fn orphan_child() {
    if std::env::var_os("TANDEM_KIT_ORPHAN_CHILD").is_none() {
        return;
    }
    let pg = shared_pg().await;
    let maria = shared_maria().await;
    // libtest may have printed "test orphan_child ... " on the same line: mark ours.
    let (pg_dir, maria_dir) = (instance_dir(pg.data_dir()), instance_dir(maria.data_dir()));
    println!("\nKIT-SERVER pg {} {}", pg.port(), pg_dir.display());
    println!("KIT-SERVER maria {} {}", maria.port(), maria_dir.display());
    std::process::abort();
}

#[tokio::test]
async fn servers_die_with_the_process_that_started_them() -> TestResult {
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "orphan_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("TANDEM_KIT_ORPHAN_CHILD", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
    let mut servers = Vec::new();
    while let Some(line) = lines.next_line().await? {
        let Some(report) = line.strip_prefix("KIT-SERVER ") else {
            continue;
        };
        let mut words = report.split_whitespace();
        if let (Some(kind @ ("pg" | "maria")), Some(port), Some(dir)) =
            (words.next(), words.next(), words.next())
        {
            servers.push((kind.to_owned(), port.parse::<u16>()?, PathBuf::from(dir)));
        }
    }
    let status = child.wait().await?;
    assert!(!status.success(), "the child was meant to abort");
    assert_eq!(servers.len(), 2, "the child did not report both servers");

    for (kind, port, dir) in servers {
        wait_for(|| async { !port_accepts(port) && !dir.exists() })
            .await
            .map_err(|_| format!("{kind} outlived its parent: port {port}, {}", dir.display()))?;
    }
    Ok(())
}

#[tokio::test]
async fn tandem_kit_up_serves_until_terminated_and_keeps_its_data() -> TestResult {
    let dir = tempfile::Builder::new()
        .prefix("tandem-kit-up-")
        .tempdir_in("/tmp")?;
    for round in 0..2 {
        let mut kit = tokio::process::Command::new(env!("CARGO_BIN_EXE_tandem-kit"))
            .arg("up")
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let env_file = dir.path().join("env");
        wait_for(|| async { env_file.exists() })
            .await
            .map_err(|_| "no env file")?;
        let env = std::fs::read_to_string(&env_file)?;
        let var = |name: &str| {
            env.lines()
                .find_map(|l| l.strip_prefix(&format!("export {name}=")))
                .map(|v| v.trim_matches('\'').to_owned())
                .ok_or(format!("{name} missing from {env}"))
        };
        let pg_url = var("TANDEM_PG_URL")?;
        let maria_port = var("TANDEM_MARIA_PORT")?;
        assert!(
            pg_url.starts_with("postgres://postgres@127.0.0.1:"),
            "{pg_url}"
        );

        let psql = |sql: &str| {
            std::process::Command::new("psql")
                .args(["-X", "-A", "-t", &pg_url, "-c", sql])
                .output()
        };
        let maria = |sql: &str| {
            std::process::Command::new("mariadb")
                .args(["--no-defaults", "-h", "127.0.0.1", "-u", "root", "-N", "-B"])
                .args(["-P", &maria_port, "-e", sql])
                .output()
        };
        if round == 0 {
            assert!(psql("CREATE DATABASE kept_pg")?.status.success());
            assert!(maria("CREATE DATABASE kept_maria")?.status.success());
        } else {
            let pg_out = psql("SELECT datname FROM pg_database WHERE datname = 'kept_pg'")?;
            assert_eq!(String::from_utf8_lossy(&pg_out.stdout).trim(), "kept_pg");
            let maria_out = maria("SHOW DATABASES LIKE 'kept_maria'")?;
            assert_eq!(
                String::from_utf8_lossy(&maria_out.stdout).trim(),
                "kept_maria"
            );
        }

        let pid = nix::unistd::Pid::from_raw(i32::try_from(kit.id().ok_or("kit exited")?)?);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
        let status = tokio::time::timeout(Duration::from_secs(60), kit.wait()).await??;
        assert!(status.success(), "tandem-kit exited with {status}");
        assert!(!env_file.exists(), "the env file outlived the servers");
        assert!(
            dir.path().join("pg/data/PG_VERSION").exists(),
            "the kept data is gone"
        );
    }
    Ok(())
}

/// The directory an instance lives in (its data directory's parent).
fn instance_dir(data_dir: &Path) -> PathBuf {
    data_dir.parent().map(Path::to_path_buf).unwrap_or_default()
}

fn port_accepts(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1))
        .is_ok()
}

/// Polls `check` every 50 ms for up to 20 s.
async fn wait_for<F, Fut>(mut check: F) -> Result<(), &'static str>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if check().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err("timed out")
}
