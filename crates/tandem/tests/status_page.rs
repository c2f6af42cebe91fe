//! The status page as an operator sees it: `tandem run` against real servers, the page at
//! `/` loaded in headless Chromium, and the rendered DOM checked for what the page promises —
//! a card per direction with its state, lag, throughput and applied changes, and the halted
//! marker of a mapping whose table drifted. Also the endpoint's guard: with a bearer token
//! configured, `/status` refuses anonymous readers while `/healthz` stays open, and neither
//! the token nor a database password ever appears in what the endpoint serves.
//!
//! Chromium is Debian's `chromium` (`make setup` installs it). Without it these tests skip
//! with a message on a developer's machine, but fail under CI (`CI` set), where a skipped
//! browser test would silently test nothing.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use tandem_testkit::{shared_maria, shared_pg};
use tokio::process::{Child, Command};

/// How long the page may run (in Chromium's virtual time) before its DOM is dumped: a few
/// of its one-second refreshes, so the throughput has two samples to compare.
const VIRTUAL_TIME_MS: u32 = 5000;
const DIRECTION: &str = "inventory->retail";
const TOKEN_ENV: &str = "TANDEM_TEST_STATUS_TOKEN";

/// Debian's Chromium, or `None` (after saying so) when it is absent outside CI.
fn chromium() -> Option<PathBuf> {
    let candidates = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .into_iter()
        .chain(["/usr/bin/chromium", "/usr/bin/chromium-browser"].map(PathBuf::from));
    for c in candidates {
        if c.is_file() {
            return Some(c);
        }
    }
    let under_ci = std::env::var("CI").is_ok_and(|v| !matches!(v.as_str(), "" | "0" | "false"));
    assert!(
        !under_ci,
        "chromium is required under CI: /usr/bin/chromium is missing (`make setup` installs \
         Debian's chromium package)"
    );
    eprintln!(
        "SKIPPED: the status page test needs Debian's chromium (/usr/bin/chromium, or set \
         CHROMIUM=/path); run `make setup` to install it"
    );
    None
}

/// Loads `url` in headless Chromium and returns the DOM after the page's scripts ran.
async fn rendered_dom(browser: &Path, url: &str) -> String {
    let profile = tempfile::tempdir().expect("chromium profile dir");
    // As root Chromium needs --no-sandbox; the networking flags keep it from calling home,
    // which this machine's closed network refuses (see the env notes).
    let child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--virtual-time-budget={VIRTUAL_TIME_MS}"))
        .arg("--dump-dom")
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("chromium starts");
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("chromium finished within 60 s")
        .expect("chromium ran");
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        dom.contains("<body"),
        "chromium rendered nothing ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    dom
}

/// The direction's card in the rendered page (from its element to the next card).
fn card<'a>(dom: &'a str, direction: &str) -> Option<&'a str> {
    let id: String = direction
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let start = dom.find(&format!(r#"id="d-{id}""#))?;
    let rest = &dom[start..];
    let end = rest[1..]
        .find(r#"class="card""#)
        .map_or(rest.len(), |e| e + 1);
    Some(&rest[..end])
}

/// The text of the element marked `data-field="name"` inside `html`.
fn field<'a>(html: &'a str, name: &str) -> Option<&'a str> {
    let marker = format!(r#"data-field="{name}">"#);
    let start = html.find(&marker)? + marker.len();
    let len = html[start..].find('<')?;
    Some(&html[start..start + len])
}

/// `tandem run`, killed when dropped (the servers are throwaway, so no clean stop needed).
struct Daemon {
    _process: Child,
}

impl Daemon {
    fn start(config: &Path, env: &[(&str, &str)]) -> Daemon {
        let child = Command::new(env!("CARGO_BIN_EXE_tandem"))
            .args(["run", "-c"])
            .arg(config)
            .env("INVENTORY_PASSWORD", "")
            .env("RETAIL_PASSWORD", "")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("tandem run starts");
        Daemon { _process: child }
    }
}

/// `GET path` with an optional bearer token: the status code and the body.
async fn get(addr: &str, path: &str, token: Option<&str>) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n").as_bytes(),
    )
    .await
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.ok()?;
    let (head, body) = buf.split_once("\r\n\r\n")?;
    let code = head.split(' ').nth(1)?.parse().ok()?;
    Some((code, body.to_owned()))
}

/// The direction's entry in `/status`, once `ready` accepts it (60 s at most).
async fn wait_for_status(
    addr: &str,
    token: Option<&str>,
    what: &str,
    ready: impl Fn(&Value) -> bool,
) -> Value {
    wait_for_part(addr, token, what, |v| &v["directions"][DIRECTION], ready).await
}

/// The part of `/status` that `part` picks, once `ready` accepts it (60 s at most).
async fn wait_for_part(
    addr: &str,
    token: Option<&str>,
    what: &str,
    part: impl Fn(&Value) -> &Value,
    ready: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    loop {
        if let Some((200, body)) = get(addr, "/status", token).await {
            if let Ok(v) = serde_json::from_str::<Value>(&body) {
                if ready(part(&v)) {
                    return part(&v).clone();
                }
            }
            last = body;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; last /status: {last}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn status_page_shows_the_streaming_direction_with_lag_and_applied_changes() {
    let Some(browser) = chromium() else { return };
    let pg = shared_pg().await;
    let maria = shared_maria().await;
    let pair = demo_pair(pg, maria, 20).await;
    let listen = format!("127.0.0.1:{}", free_port());
    let cfg = write_config(&pair, pg, maria, &listen, |t| t);
    let _daemon = Daemon::start(&cfg, &[]);

    wait_for_status(&listen, None, "the direction to stream", |d| {
        d["state"] == "streaming"
    })
    .await;
    pg.psql(
        &pair.inventory.name,
        "UPDATE items SET on_hand = on_hand + 5, updated_at = now() WHERE sku <= 'SKU-00005'; \
         INSERT INTO items (sku, name, unit_price, on_hand) VALUES ('PAGE-1', 'Page mug', 9.90, 3);",
    )
    .await
    .expect("inventory writes");
    let deadline = Instant::now() + Duration::from_secs(60);
    while maria
        .sql(
            &pair.retail.name,
            "SELECT stock_qty FROM products WHERE sku = 'PAGE-1'",
        )
        .await
        .unwrap_or_default()
        .trim()
        != "3"
    {
        assert!(
            Instant::now() < deadline,
            "the new item never reached the shop"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let status = wait_for_status(&listen, None, "changes applied with a lag", |d| {
        d["changes_applied"].as_u64().unwrap_or(0) >= 6 && d["lag_seconds"].is_number()
    })
    .await;

    let dom = rendered_dom(&browser, &format!("http://{listen}/")).await;
    let card = card(&dom, DIRECTION).unwrap_or_else(|| panic!("no {DIRECTION} card in {dom}"));
    // The card's heading names the direction (HTML-escaped, as the page must).
    assert!(card.contains("<h2>inventory-&gt;retail "), "{card}");
    assert_eq!(field(card, "state"), Some("streaming"), "{card}");
    let lag = field(card, "lag").unwrap_or_default();
    let secs = lag.strip_suffix(" s").and_then(|n| n.parse::<f64>().ok());
    assert!(
        secs.is_some_and(|s| (0.0..60.0).contains(&s)),
        "lag shown as {lag:?}"
    );
    let changes: u64 = field(card, "changes")
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no changes count in {card}"));
    let before = status["changes_applied"].as_u64().unwrap_or(u64::MAX);
    assert!(
        changes >= before && changes > 0,
        "page shows {changes} changes, /status said {before}"
    );
    assert!(
        field(card, "rate").is_some_and(|r| r.ends_with("changes/s")),
        "{card}"
    );
    assert!(card.contains("<canvas"), "no lag chart in {card}");
    assert!(!card.contains(r#"data-field="halted""#), "{card}");
    assert!(dom.contains("version "), "no header line in {dom}");
}

#[tokio::test]
async fn status_page_shows_the_verify_result_and_the_differing_key() {
    let Some(browser) = chromium() else { return };
    let pg = shared_pg().await;
    let maria = shared_maria().await;
    let pair = demo_pair(pg, maria, 20).await;
    let listen = format!("127.0.0.1:{}", free_port());
    let cfg = write_config(&pair, pg, maria, &listen, |t| {
        format!("{t}\n[verify]\ninterval = \"1s\"\n")
    });
    let _daemon = Daemon::start(&cfg, &[]);
    wait_for_part(
        &listen,
        None,
        "a verify run finding both sides equal",
        |v| &v["verify"],
        |v| v["last_run"].is_string() && v["equal"] == true,
    )
    .await;
    let dom = rendered_dom(&browser, &format!("http://{listen}/")).await;
    assert_eq!(field(&dom, "verify"), Some("equal"), "{dom}");
    assert_eq!(field(&dom, "verify-products"), Some("equal"), "{dom}");

    // Drift no change log sees: the shop renames an item with its binlog off.
    maria
        .sql(
            &pair.retail.name,
            "SET SESSION sql_log_bin = 0; UPDATE products SET title = 'Drifted' WHERE sku = 'SKU-00007'",
        )
        .await
        .expect("drift on the shop");
    wait_for_part(
        &listen,
        None,
        "a verify run naming the drifted key",
        |v| &v["verify"],
        |v| v["equal"] == false && v["mappings"]["products"]["differing_keys"] == 1,
    )
    .await;
    let dom = rendered_dom(&browser, &format!("http://{listen}/")).await;
    assert_eq!(field(&dom, "verify"), Some("differs"), "{dom}");
    assert_eq!(
        field(&dom, "verify-products"),
        Some("1 differing keys"),
        "{dom}"
    );
    assert!(
        dom.contains("SKU-00007"),
        "the differing key is not shown: {dom}"
    );
}

#[tokio::test]
async fn status_page_marks_a_mapping_halted_by_a_drifted_table() {
    let Some(browser) = chromium() else { return };
    let pg = shared_pg().await;
    let maria = shared_maria().await;
    let pair = demo_pair(pg, maria, 5).await;
    // The shop renamed a mapped column behind tandem's back.
    maria
        .sql(
            &pair.retail.name,
            "ALTER TABLE products CHANGE title product_title varchar(255) NOT NULL;",
        )
        .await
        .expect("drift the retail table");
    let listen = format!("127.0.0.1:{}", free_port());
    let cfg = write_config(&pair, pg, maria, &listen, |t| t);
    let _daemon = Daemon::start(&cfg, &[]);

    wait_for_status(&listen, None, "the products mapping to halt", |d| {
        d["halted_mappings"].get("products").is_some()
    })
    .await;
    let dom = rendered_dom(&browser, &format!("http://{listen}/")).await;
    let card = card(&dom, DIRECTION).unwrap_or_else(|| panic!("no {DIRECTION} card in {dom}"));
    assert_eq!(field(card, "halted"), Some("halted: products"), "{card}");
    // The reason names the column, so the DBA knows what to fix.
    assert!(card.contains("title"), "{card}");
}

#[tokio::test]
async fn token_guards_status_but_not_healthz_and_no_secret_is_served() {
    let pg = shared_pg().await;
    let maria = shared_maria().await;
    let pair = demo_pair(pg, maria, 5).await;
    // Real passwords on both sides: PostgreSQL's trust authentication accepts any, and the
    // shop connects as a user of its own that has one.
    let token = "tok-7f3c9a1e-page";
    let pg_password = "pg-secret-4b1d";
    let my_password = "my-secret-9e2a";
    let user = format!("u_{}", pair.retail.name);
    maria
        .sql(
            "",
            &format!(
                "CREATE USER '{user}'@'%' IDENTIFIED BY '{my_password}'; \
                 GRANT ALL PRIVILEGES ON *.* TO '{user}'@'%';"
            ),
        )
        .await
        .expect("retail user with a password");
    let listen = format!("127.0.0.1:{}", free_port());
    let cfg = write_config(&pair, pg, maria, &listen, |t| {
        t.replace(
            "[daemon]\n",
            &format!("[daemon]\ntoken = {{ env = \"{TOKEN_ENV}\" }}\n"),
        )
        .replace("mysql://root@", &format!("mysql://{user}@"))
    });
    let _daemon = Daemon::start(
        &cfg,
        &[
            (TOKEN_ENV, token),
            ("INVENTORY_PASSWORD", pg_password),
            ("RETAIL_PASSWORD", my_password),
        ],
    );

    let status = wait_for_status(&listen, Some(token), "the direction to stream", |d| {
        d["state"] == "streaming"
    })
    .await;
    assert!(status["last_error"].is_null(), "{status}");

    let anonymous = get(&listen, "/status", None).await.map(|r| r.0);
    assert_eq!(anonymous, Some(401), "/status without the token");
    let wrong = get(&listen, "/status", Some("tok-wrong"))
        .await
        .map(|r| r.0);
    assert_eq!(wrong, Some(401), "/status with a wrong token");
    assert_eq!(
        get(&listen, "/metrics", None).await.map(|r| r.0),
        Some(401),
        "/metrics without the token"
    );
    assert_eq!(
        get(&listen, "/healthz", None).await.map(|r| r.0),
        Some(200),
        "/healthz stays open for liveness probes"
    );

    let mut served = Vec::new();
    for path in ["/status", "/metrics", "/readyz", "/"] {
        let (code, body) = get(&listen, path, Some(token)).await.unwrap_or_default();
        assert!(code == 200 || path == "/readyz", "{path}: {code} {body}");
        served.push((path.to_owned(), body));
    }
    if let Some(browser) = chromium() {
        // The page takes the token from its URL fragment, which the browser never sends.
        let dom = rendered_dom(&browser, &format!("http://{listen}/#token={token}")).await;
        let c = card(&dom, DIRECTION).unwrap_or_else(|| panic!("no card with the token: {dom}"));
        assert_eq!(field(c, "state"), Some("streaming"), "{c}");
        served.push(("page with token".into(), dom));
        let dom = rendered_dom(&browser, &format!("http://{listen}/")).await;
        assert!(
            dom.contains("HTTP 401") && card(&dom, DIRECTION).is_none(),
            "the page without the token shows no data: {dom}"
        );
        served.push(("page without token".into(), dom));
    }
    for (what, body) in &served {
        for secret in [token, pg_password, my_password] {
            assert!(!body.contains(secret), "{what} reveals {secret:?}: {body}");
        }
    }
    let _ = maria.sql("", &format!("DROP USER '{user}'@'%';")).await;
}
