//! Benchmark 2: the sources' decode rate against the servers' own tools on the same log.
//!
//! PostgreSQL: two pgoutput slots are created before the workload; `pg_recvlogical` drains
//! one (to `/dev/null`), `PgSource` the other, pulling and decoding every change into the
//! core model with no sink behind it. MariaDB: `mariadb-binlog --read-from-remote-server -v`
//! and `MySqlSource` read the same binlog range; the tool's `###` row lines are counted.
//!
//! The MariaDB run also measures the bound the server itself sets, on the same range, with
//! two clients that decode nothing: `mariadb-binlog --raw`, which writes the events to a
//! file as they arrive, and tandem's own transport (`mysql_async`'s binlog stream: framing,
//! checksum, one buffer per event) with every event only counted. The dump thread streams
//! at least as fast as the faster of the two; the second is also what `MySqlSource` would
//! reach with a free decoder.

use std::io::BufRead as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use mysql_async::prelude::Queryable;
use tandem_core::change::{SourceEvent, TableId};
use tandem_core::config::{EndpointConfig, EndpointKind, LoopPrevention, TlsConfig, TlsMode};
use tandem_core::position::Position;
use tandem_core::source::Source;

use crate::db::{Conn, Side};
use crate::env::{usage_of, ServerCpu, Servers};
use crate::workload;

const TIMEOUT: Duration = Duration::from_secs(900);

fn endpoint(kind: EndpointKind, url: &str) -> EndpointConfig {
    EndpointConfig {
        kind,
        url: url.to_owned(),
        password: None,
        tls: TlsConfig {
            mode: TlsMode::Disable,
            ca_file: None,
        },
        slot: Some("tsrc".into()),
        publication: Some("bench_pub".into()),
        origin: None,
        server_id: Some(4_242_424),
        loop_prevention: LoopPrevention::Auto,
        xa_held_rows: None,
    }
}

/// Pulls `changes` changes out of `source`; returns the time and the events seen.
async fn drain(source: &mut dyn Source, changes: u64, started: Instant) -> Result<Duration> {
    let mut seen = 0u64;
    while seen < changes {
        let ev = tokio::time::timeout(TIMEOUT, source.next_event())
            .await
            .context("the source stalled")??;
        match ev {
            SourceEvent::Change(c) => {
                std::hint::black_box(&c);
                seen += 1;
            }
            SourceEvent::Commit(c) => {
                // As the pipeline would after a target commit: lets the server move on.
                source.acknowledge(&c.position).await?;
            }
            _ => {}
        }
    }
    Ok(started.elapsed())
}

pub async fn postgres(servers: &Servers, changes: u64) -> Result<Vec<String>> {
    eprintln!("== decode PostgreSQL: {changes} changes");
    let plan = workload::plan(changes, 1000, 7);
    let db = servers.pg.create_database("decode_pg").await?;
    servers
        .pg
        .psql(
            &db.name,
            &format!(
                "{}CREATE PUBLICATION bench_pub FOR TABLE public.items;\n\
                 SELECT 1 FROM pg_create_logical_replication_slot('recv', 'pgoutput');\n\
                 SELECT 1 FROM pg_create_logical_replication_slot('tsrc', 'pgoutput');\n",
                workload::pg_ddl("items")
            ),
        )
        .await?;
    let mut conn = Conn::open(servers, Side::Pg, &db).await?;
    for ops in &plan.txns {
        conn.apply_ops("items", ops).await?;
    }
    // A non-transactional message moves the decoder past the last commit, so the tool's
    // --endpos is reached by a keepalive.
    let end = servers
        .pg
        .psql(
            &db.name,
            "SELECT pg_logical_emit_message(false, 'bench', 'end'); SELECT pg_current_wal_lsn();",
        )
        .await?;
    let endpos = end.lines().last().unwrap_or_default().trim().to_owned();

    let started = Instant::now();
    let st = Command::new("timeout")
        .arg(TIMEOUT.as_secs().to_string())
        .arg("pg_recvlogical")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-p"])
        .arg(servers.pg.port().to_string())
        .args(["-d", &db.name, "--slot", "recv", "--start", "--no-loop"])
        .args(["--endpos", &endpos])
        .args(["-o", "proto_version=1", "-o", "publication_names=bench_pub"])
        .args(["-f", "/dev/null"])
        .status()
        .context("running pg_recvlogical")?;
    let tool = started.elapsed();
    if !st.success() {
        bail!("pg_recvlogical failed: {st}");
    }
    let tool_rate = plan.changes as f64 / tool.as_secs_f64();
    eprintln!(
        "   pg_recvlogical: {:.1} s = {tool_rate:.0} changes/s",
        tool.as_secs_f64()
    );

    let ep = endpoint(EndpointKind::Postgres, db.url());
    let cpu0 = usage_of(std::process::id()).cpu_secs;
    let started = Instant::now();
    let mut source = tandem_postgres::source::PgSource::start(
        &ep,
        None,
        &[TableId::new("public", "items")],
        None,
    )
    .await
    .context("starting PgSource")?;
    let ours = drain(&mut source, plan.changes, started).await?;
    let cpu = usage_of(std::process::id()).cpu_secs - cpu0;
    source.shutdown().await.ok();
    let rate = plan.changes as f64 / ours.as_secs_f64();
    eprintln!(
        "   PgSource: {:.1} s = {rate:.0} changes/s",
        ours.as_secs_f64()
    );
    Ok(vec![format!(
        "| PostgreSQL pgoutput | {} changes | PgSource {rate:.0}/s ({:.1} s, {cpu:.1} client CPU-s) | pg_recvlogical {tool_rate:.0}/s ({:.1} s) | **{:.0}%** |",
        plan.changes,
        ours.as_secs_f64(),
        tool.as_secs_f64(),
        100.0 * rate / tool_rate
    )])
}

async fn master_status(conn: &mut mysql_async::Conn) -> Result<(String, u64)> {
    let row: Option<mysql_async::Row> = conn.query_first("SHOW MASTER STATUS").await?;
    let row = row.context("no binlog")?;
    let file: String = row.get(0).context("File")?;
    let pos: u64 = row.get(1).context("Position")?;
    Ok((file, pos))
}

pub async fn mariadb(servers: &Servers, changes: u64) -> Result<Vec<String>> {
    eprintln!("== decode MariaDB: {changes} changes");
    let plan = workload::plan(changes, 1000, 7);
    let db = servers.maria.create_database("decode_my").await?;
    servers
        .maria
        .sql(&db.name, &workload::maria_ddl("items"))
        .await?;
    let mut conn = servers.maria_conn(&db).await?;
    let (file, pos) = master_status(&mut conn).await?;
    let mut writer = Conn::Maria(servers.maria_conn(&db).await?);
    for ops in &plan.txns {
        writer.apply_ops("items", ops).await?;
    }
    let (end_file, end_pos) = master_status(&mut conn).await?;

    let raw = raw_dump(servers, &file, pos, &end_file)?;
    let raw_rate = plan.changes as f64 / raw.secs;
    eprintln!(
        "   mariadb-binlog --raw: {:.2} s = {raw_rate:.0} rows/s, {:.1} MiB ({:.1} MariaDB CPU-s)",
        raw.secs,
        raw.bytes as f64 / MIB,
        raw.server_cpu
    );
    let counted = count_stream(servers, &db, &file, pos, &end_file, end_pos).await?;
    let counted_rate = plan.changes as f64 / counted.secs;
    eprintln!(
        "   mysql_async stream, counted only: {:.2} s = {counted_rate:.0} rows/s, {} events, \
         {:.1} MiB ({:.1} client CPU-s)",
        counted.secs,
        counted.events,
        counted.bytes as f64 / MIB,
        counted.client_cpu
    );

    let mut cmd = Command::new("mariadb-binlog");
    cmd.args([
        "--no-defaults",
        "--read-from-remote-server",
        "-h",
        "127.0.0.1",
        "-u",
        "root",
    ])
    .arg(format!("--port={}", servers.maria.port()))
    .arg("-v")
    .arg(format!("--start-position={pos}"));
    if end_file == file {
        cmd.arg(format!("--stop-position={end_pos}"));
    } else {
        cmd.arg("--to-last-log");
    }
    cmd.arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let started = Instant::now();
    let (tool_rows, st) = tokio::task::spawn_blocking(move || -> Result<_> {
        let mut child = cmd.spawn().context("running mariadb-binlog")?;
        let out = child.stdout.take().context("stdout")?;
        let mut rows = 0u64;
        for line in std::io::BufReader::with_capacity(1 << 20, out).split(b'\n') {
            let line = line?;
            if line.starts_with(b"### INSERT INTO")
                || line.starts_with(b"### UPDATE ")
                || line.starts_with(b"### DELETE FROM")
            {
                rows += 1;
            }
        }
        Ok((rows, child.wait()?))
    })
    .await??;
    let tool = started.elapsed();
    if !st.success() {
        bail!("mariadb-binlog failed: {st}");
    }
    if tool_rows != plan.changes {
        eprintln!(
            "   warning: mariadb-binlog printed {tool_rows} rows, expected {}",
            plan.changes
        );
    }
    let tool_rate = tool_rows as f64 / tool.as_secs_f64();
    eprintln!(
        "   mariadb-binlog -v: {:.1} s = {tool_rate:.0} rows/s",
        tool.as_secs_f64()
    );

    let ep = endpoint(EndpointKind::Mysql, db.url());
    let cpu0 = usage_of(std::process::id()).cpu_secs;
    let server0 = ServerCpu::read(servers);
    let started = Instant::now();
    let mut source = tandem_mysql::source::MySqlSource::start(
        &ep,
        None,
        &Position::MySqlFile {
            file: file.clone(),
            pos,
        },
        tandem_mysql::source::SourceOptions::for_endpoint(&ep),
    )
    .await
    .context("starting MySqlSource")?;
    let ours = drain(&mut source, plan.changes, started).await?;
    let cpu = usage_of(std::process::id()).cpu_secs - cpu0;
    let server_cpu = ServerCpu::read(servers).since(server0).maria;
    source.shutdown().await.ok();
    let rate = plan.changes as f64 / ours.as_secs_f64();
    eprintln!(
        "   MySqlSource: {:.2} s = {rate:.0} rows/s ({cpu:.2} client CPU-s, {server_cpu:.1} MariaDB CPU-s)",
        ours.as_secs_f64()
    );
    Ok(vec![
        format!(
            "| MariaDB binlog | {} row changes | MySqlSource {rate:.0}/s ({:.2} s, {cpu:.2} client CPU-s) | mariadb-binlog -R -v {tool_rate:.0}/s ({:.2} s) | **{:.1}×** |",
            plan.changes,
            ours.as_secs_f64(),
            tool.as_secs_f64(),
            rate / tool_rate
        ),
        format!(
            "| MariaDB dump stream, not decoded (the bound) | {:.1} MiB of binlog | counted-only `mysql_async` stream {counted_rate:.0} rows/s ({:.2} s, {:.2} client CPU-s); MySqlSource at {:.0} % of it | `mariadb-binlog -R --raw` {raw_rate:.0} rows/s ({:.2} s, {:.1} MariaDB CPU-s) | raw = **{:.1}×** `-v`; MySqlSource at {:.0} % of raw |",
            raw.bytes as f64 / MIB,
            counted.secs,
            counted.client_cpu,
            100.0 * rate / counted_rate,
            raw.secs,
            raw.server_cpu,
            raw_rate / tool_rate,
            100.0 * rate / raw_rate
        ),
    ])
}

const MIB: f64 = 1024.0 * 1024.0;

/// A read of the binlog range that decodes nothing.
struct RawRead {
    secs: f64,
    bytes: u64,
    events: u64,
    client_cpu: f64,
    server_cpu: f64,
}

/// The dump thread's own rate: `mariadb-binlog --raw` saves the stream to a file unparsed.
/// Returns its time and the bytes it wrote (the range plus the few events a dump opens with).
/// Raw mode ignores `--stop-position` and reads to the end of the binlog, which is the end
/// of the range: nothing is written to this server after the workload.
fn raw_dump(servers: &Servers, file: &str, pos: u64, end_file: &str) -> Result<RawRead> {
    let dir = std::env::temp_dir().join(format!("tandem-bench-raw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).context("creating the raw dump directory")?;
    let mut cmd = Command::new("mariadb-binlog");
    cmd.args([
        "--no-defaults",
        "--read-from-remote-server",
        "--raw",
        "-h",
        "127.0.0.1",
        "-u",
        "root",
    ])
    .arg(format!("--port={}", servers.maria.port()))
    .arg(format!("--result-file={}/", dir.display()))
    .arg(format!("--start-position={pos}"));
    if end_file != file {
        cmd.arg("--to-last-log");
    }
    cmd.arg(file).stderr(Stdio::inherit());
    let server0 = ServerCpu::read(servers);
    let started = Instant::now();
    let st = cmd.status().context("running mariadb-binlog --raw")?;
    let secs = started.elapsed().as_secs_f64();
    let server_cpu = ServerCpu::read(servers).since(server0).maria;
    let bytes = std::fs::read_dir(&dir)
        .context("reading the raw dump directory")?
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    std::fs::remove_dir_all(&dir).ok();
    if !st.success() {
        bail!("mariadb-binlog --raw failed: {st}");
    }
    Ok(RawRead {
        secs,
        bytes,
        events: 0,
        client_cpu: 0.0,
        server_cpu,
    })
}

/// tandem's transport alone: the range read through `mysql_async`'s binlog stream, set up
/// as `MySqlSource` sets it up, each event counted and dropped.
async fn count_stream(
    servers: &Servers,
    db: &tandem_testkit::TestDb,
    file: &str,
    pos: u64,
    end_file: &str,
    end_pos: u64,
) -> Result<RawRead> {
    use futures::StreamExt as _;
    use mysql_async::binlog::events::RotateEvent;
    const ROTATE: u8 = 4;
    let cpu0 = usage_of(std::process::id()).cpu_secs;
    let server0 = ServerCpu::read(servers);
    let started = Instant::now();
    let mut conn = servers.maria_conn(db).await?;
    for q in [
        "SET @master_binlog_checksum = @@global.binlog_checksum",
        "SET @master_heartbeat_period = 1000000000",
        "SET @mariadb_slave_capability = 4",
    ] {
        conn.query_drop(q).await?;
    }
    let request = mysql_async::BinlogStreamRequest::new(4_242_425)
        .with_filename(file.as_bytes())
        .with_pos(pos);
    let mut stream = conn.get_binlog_stream(request).await?;
    let (mut in_end_file, mut events, mut bytes) = (file == end_file, 0u64, 0u64);
    loop {
        let event = tokio::time::timeout(TIMEOUT, stream.next())
            .await
            .context("the binlog stream stalled")?
            .context("the server ended the binlog stream")??;
        let header = event.header();
        events += 1;
        bytes += u64::from(header.event_size());
        if header.event_type_raw() == ROTATE {
            // The artificial ROTATE opening a dump may carry the checksum after the name.
            let rotate = event.read_event::<RotateEvent>()?;
            let name = rotate.name_raw();
            in_end_file = name
                .strip_prefix(end_file.as_bytes())
                .is_some_and(|rest| rest.is_empty() || rest.len() == 4);
        } else if in_end_file && u64::from(header.log_pos()) >= end_pos {
            break;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let client_cpu = usage_of(std::process::id()).cpu_secs - cpu0;
    let server_cpu = ServerCpu::read(servers).since(server0).maria;
    drop(stream);
    Ok(RawRead {
        secs,
        bytes,
        events,
        client_cpu,
        server_cpu,
    })
}
