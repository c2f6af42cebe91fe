//! Helpers shared by the binary's end-to-end tests: demo schemas on throwaway servers, a
//! config pointing at them, and the `tandem` binary.
#![allow(clippy::unwrap_used)]
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Output;

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
