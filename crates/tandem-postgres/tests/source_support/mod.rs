//! Helpers shared by the source tests: an endpoint for a kit database, event collection.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use tandem_core::change::{SourceEvent, TableId};
use tandem_core::config::{EndpointConfig, EndpointKind, LoopPrevention, TlsConfig, TlsMode};
use tandem_core::source::Source;
use tandem_testkit::TestDb;

/// An endpoint for `db` whose slot, publication and origin are named after the database,
/// so concurrent tests on one server never share them.
pub fn endpoint(db: &TestDb) -> EndpointConfig {
    EndpointConfig {
        kind: EndpointKind::Postgres,
        url: db.url().to_owned(),
        password: None,
        tls: TlsConfig {
            mode: TlsMode::Disable,
            ca_file: None,
        },
        slot: Some(db.name.clone()),
        publication: Some(format!("pub_{}", db.name)),
        origin: Some(format!("o_{}", db.name)),
        server_id: None,
        loop_prevention: LoopPrevention::default(),
        xa_held_rows: None,
    }
}

pub fn table(name: &str) -> TableId {
    TableId::new("public", name)
}

/// The next event, failing the test after 20 s.
pub async fn next(src: &mut impl Source) -> SourceEvent {
    tokio::time::timeout(Duration::from_secs(20), src.next_event())
        .await
        .expect("no event within 20 s")
        .expect("source error")
}

/// Events up to and including the next Commit (or Progress).
pub async fn transaction(src: &mut impl Source) -> Vec<SourceEvent> {
    let mut out = Vec::new();
    loop {
        let ev = next(src).await;
        let end = matches!(ev, SourceEvent::Commit(_) | SourceEvent::Progress { .. });
        out.push(ev);
        if end {
            return out;
        }
    }
}

/// A SQL session pinned like tandem's own.
pub async fn client(db: &TestDb) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(
        &format!(
            "{} options='-c TimeZone=UTC -c DateStyle=ISO'",
            url_to_kv(db.url())
        ),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    c
}

/// `postgres://user@host:port/db` → libpq key/value form, so options can be appended.
fn url_to_kv(url: &str) -> String {
    let rest = url.trim_start_matches("postgres://");
    let (user, rest) = rest.split_once('@').unwrap();
    let (hostport, db) = rest.split_once('/').unwrap();
    let (host, port) = hostport.split_once(':').unwrap();
    format!("host={host} port={port} user={user} dbname={db}")
}
