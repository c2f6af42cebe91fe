//! `tandem status`: the daemon's `/status` as a compact table.
//!
//! Talks plain HTTP/1.1 to the daemon's loopback endpoint (no TLS, no redirects), which is
//! all this needs; the bearer token, when the daemon has one, comes from `TANDEM_HTTP_TOKEN`.

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub async fn fetch(addr: &str, path: &str) -> Result<String, String> {
    let mut s = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| format!("timed out connecting to {addr}"))?
        .map_err(|e| format!("cannot connect to {addr}: {e} (is `tandem run` running?)"))?;
    let auth = std::env::var("TANDEM_HTTP_TOKEN")
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or("malformed HTTP response")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!(
            "{}: {body}",
            head.lines().next().unwrap_or_default()
        ));
    }
    Ok(body.to_owned())
}

fn render(body: &str) -> String {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        return body.to_owned();
    };
    let mut out = format!(
        "{:<22} {:<10} {:>9} {:>10} {:>10} {:>9} {:>6}  {}\n",
        "DIRECTION", "STATE", "LAG s", "CHANGES", "TXNS", "CONFLICTS", "DEAD", "POSITION / ERROR"
    );
    if let Some(dirs) = v.get("directions").and_then(|d| d.as_object()) {
        for (name, d) in dirs {
            let num = |k: &str| d.get(k).and_then(|x| x.as_f64());
            let s = |k: &str| d.get(k).and_then(|x| x.as_str()).unwrap_or("-").to_owned();
            let tail = match d.get("last_error").and_then(|e| e.as_str()) {
                Some(e) => format!("error: {e}"),
                None => s("applied_position"),
            };
            out.push_str(&format!(
                "{:<22} {:<10} {:>9} {:>10} {:>10} {:>9} {:>6}  {}\n",
                name,
                s("state"),
                num("lag_seconds").map_or("-".into(), |l| format!("{l:.3}")),
                num("changes_applied").unwrap_or(0.0),
                num("transactions_applied").unwrap_or(0.0),
                num("conflicts").unwrap_or(0.0),
                num("dead_letters").unwrap_or(0.0),
                tail
            ));
            if let Some(h) = d.get("halted_mappings").and_then(|h| h.as_object()) {
                for (m, why) in h {
                    out.push_str(&format!(
                        "  HALTED mapping {m}: {}\n",
                        why.as_str().unwrap_or_default()
                    ));
                }
            }
        }
    }
    out
}

pub async fn run(addr: String, config: Option<PathBuf>, watch: bool) -> u8 {
    let addr = match config {
        Some(p) => match super::check::load_config(&p) {
            Ok(c) => c.daemon.listen.clone(),
            Err(code) => return code,
        },
        None => addr,
    };
    loop {
        match fetch(&addr, "/status").await {
            Ok(body) => {
                if watch {
                    print!("\x1b[2J\x1b[H");
                }
                print!("{}", render(&body));
            }
            Err(e) => {
                eprintln!("{e}");
                if !watch {
                    return 1;
                }
            }
        }
        if !watch {
            return 0;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
