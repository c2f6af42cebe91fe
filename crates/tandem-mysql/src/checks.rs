//! `tandem check` for a MySQL/MariaDB endpoint: every prerequisite of reading its binlog and
//! applying to it, each reported with what was found and the fix.
//!
//! Why each check exists:
//! - `log_bin`, `binlog_format=ROW`, `binlog_row_image=FULL`: tandem reads row events and
//!   needs full before-images to detect conflicts (design: conflicts).
//! - `binlog_row_metadata=FULL`: column names and signedness in the log itself, so events
//!   written before an `ALTER TABLE` decode with the columns they had.
//! - `log_bin_compress=OFF` (MariaDB): compressed row events are not decodable.
//! - `server_id`: 0 disables the binlog for replication, and tandem's reader must present
//!   an id different from the server's own.
//! - privileges: `REPLICATION SLAVE` to stream, `BINLOG MONITOR` (MariaDB) /
//!   `REPLICATION CLIENT` (MySQL) to read binlog positions, DML on the mapped tables,
//!   `CREATE` for tandem's own tables (unless they already exist), and on MySQL `RELOAD`
//!   for the initial snapshot's short global read lock (MySQL has no lock-free way to tie a
//!   snapshot to a binlog position; see [`crate::snapshot`]).
//! - tables: they exist, have a key rows can be matched by, and are transactional (InnoDB),
//!   because exactly-once rests on the checkpoint committing with the rows.
//!
//! Privileges are read from `SHOW GRANTS` for the current user. Privileges held only
//! through a role, and database-name wildcards in grants, are not evaluated; such a grant
//! reports as missing with the exact `GRANT` to run.

use std::collections::BTreeMap;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};
use tandem_core::check::CheckResult;
use tandem_core::config::catalog::Catalog;
use tandem_core::error::StageError;
use tandem_core::TableId;

use crate::catalog::{text, MySqlCatalog};
use crate::connect::{classify, is_mariadb};
use crate::ddl::TANDEM_TABLES;

/// Run every check for an endpoint whose reader presents `reader_server_id` and whose
/// mappings name `tables` in `database`.
pub async fn check_endpoint(
    conn: &mut Conn,
    reader_server_id: u32,
    database: &str,
    tables: &[TableId],
) -> Result<Vec<CheckResult>, StageError> {
    let mariadb = is_mariadb(conn).await?;
    let mut out = server_settings(conn, mariadb, reader_server_id).await?;
    let catalog = MySqlCatalog::load(conn, database).await?;
    let rows: Vec<Row> = conn
        .query("SHOW GRANTS FOR CURRENT_USER()")
        .await
        .map_err(|e| classify("Reading the user's grants", e))?;
    let grants = rows
        .iter()
        .map(|r| text(r, 0))
        .collect::<Result<Vec<_>, _>>()?;
    let user: Option<Row> = conn
        .query_first("SELECT CURRENT_USER()")
        .await
        .map_err(|e| classify("Reading the current user", e))?;
    let user = match user {
        Some(row) => quote_account(&text(&row, 0)?),
        None => "tandem".into(),
    };
    out.extend(privileges(
        &Grants::parse(&grants),
        mariadb,
        database,
        tables,
        &catalog,
        &user,
    ));
    out.extend(table_checks(&catalog, tables));
    Ok(out)
}

/// The global settings the binlog reader depends on.
pub async fn server_settings(
    conn: &mut Conn,
    mariadb: bool,
    reader_server_id: u32,
) -> Result<Vec<CheckResult>, StageError> {
    let rows: Vec<Row> = conn
        .query(
            "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('log_bin', 'binlog_format', \
             'binlog_row_image', 'binlog_row_metadata', 'log_bin_compress', 'server_id')",
        )
        .await
        .map_err(|e| classify("Reading the server's binlog settings", e))?;
    let mut vars = BTreeMap::new();
    for row in &rows {
        vars.insert(text(row, 0)?.to_ascii_lowercase(), text(row, 1)?);
    }
    let get = |name: &str| vars.get(name).map(String::as_str);
    let mut out = Vec::new();
    let mut expect = |name: &str, want: &str, fix: String| {
        let (ok, detail) = match get(name) {
            Some(v) => (v.eq_ignore_ascii_case(want), format!("{name} is {v}")),
            None => (false, format!("the server has no {name} setting")),
        };
        out.push(if ok {
            CheckResult::pass(name, detail)
        } else {
            CheckResult::fail(name, detail, fix)
        });
    };
    expect(
        "log_bin",
        "ON",
        "add `log_bin` (and `server_id = 1` or any non-zero id) to the [mysqld] section of my.cnf and restart the server".into(),
    );
    expect(
        "binlog_format",
        "ROW",
        "run SET GLOBAL binlog_format = 'ROW' and add binlog_format = ROW to my.cnf".into(),
    );
    expect(
        "binlog_row_image",
        "FULL",
        "run SET GLOBAL binlog_row_image = 'FULL' and add binlog_row_image = FULL to my.cnf".into(),
    );
    expect(
        "binlog_row_metadata",
        "FULL",
        if get("binlog_row_metadata").is_some() {
            "run SET GLOBAL binlog_row_metadata = 'FULL' and add binlog_row_metadata = FULL to my.cnf".into()
        } else {
            "upgrade to MariaDB 10.5 or MySQL 8.0.1 or later, which can log column metadata".into()
        },
    );
    if mariadb {
        expect(
            "log_bin_compress",
            "OFF",
            "run SET GLOBAL log_bin_compress = OFF and add log_bin_compress = OFF to my.cnf".into(),
        );
    }
    let id = get("server_id").and_then(|v| v.parse::<u64>().ok());
    out.push(match id {
        Some(0) | None => CheckResult::fail(
            "server_id",
            format!("server_id is {}", get("server_id").unwrap_or("unknown")),
            "set server_id to a non-zero number unique among the servers and replicas, in my.cnf, and restart",
        ),
        Some(id) if id == u64::from(reader_server_id) => CheckResult::fail(
            "server_id",
            format!("the server's id {id} is also the id tandem's reader presents"),
            "set server_id on this endpoint in tandem's config to another number",
        ),
        Some(id) => CheckResult::pass("server_id", format!("server_id is {id}; tandem reads as {reader_server_id}")),
    });
    Ok(out)
}

/// One `GRANT` line: privileges on an object (`*.*`, `db.*`, `db.table`).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Grant {
    privileges: Vec<String>,
    db: String,
    table: String,
}

/// The privileges a user holds, from `SHOW GRANTS`.
#[derive(Clone, Debug, Default)]
pub struct Grants(Vec<Grant>);

impl Grants {
    /// Parse `SHOW GRANTS` output. Lines granting roles or proxies, and column-level
    /// privileges, are skipped.
    pub fn parse(lines: &[String]) -> Grants {
        Grants(lines.iter().filter_map(|l| parse_grant(l)).collect())
    }

    /// Whether `privilege` is held on `db`.`table` (`"*"` for all).
    pub fn has(&self, privilege: &str, db: &str, table: &str) -> bool {
        self.0.iter().any(|g| {
            let covers = (g.db == "*") || (g.db == db && (g.table == "*" || g.table == table));
            covers
                && g.privileges
                    .iter()
                    .any(|p| p == privilege || p == "ALL PRIVILEGES" || p == "ALL")
        })
    }
}

fn parse_grant(line: &str) -> Option<Grant> {
    let rest = line.trim().strip_prefix("GRANT ")?;
    let (privs, rest) = split_top(rest, " ON ")?;
    let (object, _) = split_top(rest, " TO ")?;
    let object = object.trim();
    let object = object.strip_prefix("TABLE ").unwrap_or(object);
    if object.starts_with("PROCEDURE ")
        || object.starts_with("FUNCTION ")
        || object.starts_with("PACKAGE ")
    {
        return None;
    }
    let (db, table) = split_top(object, ".")?;
    let privileges = split_list(privs)
        .into_iter()
        .filter(|p| !p.contains('('))
        .map(|p| p.trim().to_ascii_uppercase())
        .collect();
    Some(Grant {
        privileges,
        db: unquote(db),
        table: unquote(table),
    })
}

/// Split at the first `sep` outside backticks, quotes and parentheses.
fn split_top<'a>(s: &'a str, sep: &str) -> Option<(&'a str, &'a str)> {
    let (mut depth, mut quote) = (0i32, None::<char>);
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '`' | '\'' | '"') => quote = Some(c),
            (None, '(') => depth += 1,
            (None, ')') => depth -= 1,
            (None, _) if depth == 0 && s.get(i..).is_some_and(|r| r.starts_with(sep)) => {
                return Some((s.get(..i)?, s.get(i + sep.len()..)?));
            }
            _ => {}
        }
    }
    None
}

fn split_list(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some((a, b)) = split_top(rest, ",") {
        out.push(a);
        rest = b;
    }
    out.push(rest);
    out
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    match s.strip_prefix('`').and_then(|x| x.strip_suffix('`')) {
        Some(inner) => inner.replace("``", "`"),
        None => s.to_owned(),
    }
}

/// `user@host` as `SHOW GRANTS`/`GRANT` want it: `'user'@'host'`.
fn quote_account(user_at_host: &str) -> String {
    match user_at_host.rsplit_once('@') {
        Some((u, h)) => format!("'{u}'@'{h}'"),
        None => format!("'{user_at_host}'"),
    }
}

/// Privilege checks; `user` is quoted for the fix (`'tandem'@'%'`).
pub fn privileges(
    grants: &Grants,
    mariadb: bool,
    database: &str,
    tables: &[TableId],
    catalog: &MySqlCatalog,
    user: &str,
) -> Vec<CheckResult> {
    let mut out = Vec::new();
    // SUPER still implies the monitoring privileges on older servers.
    let global = |p: &str| grants.has(p, "*", "*") || grants.has("SUPER", "*", "*");
    out.push(if grants.has("REPLICATION SLAVE", "*", "*") {
        CheckResult::pass("privilege REPLICATION SLAVE", "granted on *.*")
    } else {
        CheckResult::fail(
            "privilege REPLICATION SLAVE",
            "not granted: the binlog cannot be streamed",
            format!("GRANT REPLICATION SLAVE ON *.* TO {user};"),
        )
    });
    let monitor = if mariadb {
        "BINLOG MONITOR"
    } else {
        "REPLICATION CLIENT"
    };
    // MariaDB ≥ 10.5 shows REPLICATION CLIENT as BINLOG MONITOR; older ones the other way.
    let has_monitor = global(monitor) || global("REPLICATION CLIENT") || global("BINLOG MONITOR");
    out.push(if has_monitor {
        CheckResult::pass(format!("privilege {monitor}"), "granted on *.*")
    } else {
        CheckResult::fail(
            format!("privilege {monitor}"),
            "not granted: binlog positions cannot be read",
            format!("GRANT {monitor} ON *.* TO {user};"),
        )
    });
    if !mariadb {
        out.push(if global("RELOAD") {
            CheckResult::pass("privilege RELOAD", "granted on *.*")
        } else {
            CheckResult::fail(
                "privilege RELOAD",
                "not granted: the initial snapshot cannot take its short global read lock \
                 (FLUSH TABLES WITH READ LOCK), which MySQL needs to give the snapshot's binlog \
                 position",
                format!("GRANT RELOAD ON *.* TO {user};"),
            )
        });
    }
    for t in tables {
        let missing: Vec<&str> = ["SELECT", "INSERT", "UPDATE", "DELETE"]
            .into_iter()
            .filter(|p| !grants.has(p, &t.schema, &t.name))
            .collect();
        let name = format!("privileges on {t}");
        out.push(if missing.is_empty() {
            CheckResult::pass(name, "SELECT, INSERT, UPDATE, DELETE granted")
        } else {
            CheckResult::fail(
                name,
                format!("missing {}", missing.join(", ")),
                format!(
                    "GRANT {} ON `{}`.`{}` TO {user};",
                    missing.join(", "),
                    t.schema,
                    t.name
                ),
            )
        });
    }
    let tandem_tables_exist = TANDEM_TABLES
        .iter()
        .all(|n| catalog.table(&TableId::new(database, *n)).is_some());
    out.push(if grants.has("CREATE", database, "*") {
        CheckResult::pass(
            format!("privilege CREATE on {database}"),
            "granted: tandem can create its tables",
        )
    } else if tandem_tables_exist {
        CheckResult::pass(
            format!("privilege CREATE on {database}"),
            "not granted, but tandem's tables exist",
        )
    } else {
        CheckResult::fail(
            format!("privilege CREATE on {database}"),
            "not granted and tandem's tables (tandem_checkpoints, …) do not exist",
            format!("GRANT CREATE, SELECT, INSERT, UPDATE, DELETE ON `{database}`.* TO {user};"),
        )
    });
    out
}

/// Per-table checks: exists, has a key, is InnoDB.
pub fn table_checks(catalog: &MySqlCatalog, tables: &[TableId]) -> Vec<CheckResult> {
    let mut out = Vec::new();
    for t in tables {
        let Some(table) = catalog.table(t) else {
            out.push(CheckResult::fail(
                format!("table {t}"),
                "does not exist",
                format!(
                    "create it, or correct the table name in the mapping (tables: {})",
                    catalog.table_names().join(", ")
                ),
            ));
            continue;
        };
        out.push(CheckResult::pass(
            format!("table {t}"),
            format!("{} columns", table.schema.columns.len()),
        ));
        out.push(if table.schema.key.is_empty() {
            CheckResult::fail(
                format!("table {t}: key"),
                "has no primary key and no unique key on NOT NULL columns",
                format!(
                    "ALTER TABLE `{}`.`{}` ADD PRIMARY KEY (…);",
                    t.schema, t.name
                ),
            )
        } else {
            let names: Vec<&str> = table
                .schema
                .key
                .iter()
                .filter_map(|&i| table.schema.columns.get(i))
                .map(|c| c.name.as_str())
                .collect();
            CheckResult::pass(
                format!("table {t}: key"),
                format!("rows are identified by ({})", names.join(", ")),
            )
        });
        let engine = catalog.engine(&t.name).unwrap_or("unknown");
        out.push(if engine.eq_ignore_ascii_case("InnoDB") {
            CheckResult::pass(format!("table {t}: engine"), "InnoDB (transactional)")
        } else {
            CheckResult::fail(
                format!("table {t}: engine"),
                format!("{engine} is not transactional: applied rows and the checkpoint could not commit together"),
                format!("ALTER TABLE `{}`.`{}` ENGINE=InnoDB;", t.schema, t.name),
            )
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(lines: &[&str]) -> Grants {
        Grants::parse(&lines.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn show_grants_lines_parse() {
        let g = grants(&[
            "GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO `tandem`@`%` IDENTIFIED BY PASSWORD '*X'",
            "GRANT SELECT, INSERT, UPDATE (qty, `a,b`), DELETE ON `retail`.`products` TO `tandem`@`%`",
            "GRANT CREATE ON `retail`.* TO `tandem`@`%`",
            "GRANT `app_role` TO `tandem`@`%`",
        ]);
        assert!(g.has("REPLICATION SLAVE", "*", "*"));
        assert!(g.has("BINLOG MONITOR", "*", "*"));
        assert!(g.has("SELECT", "retail", "products"));
        assert!(
            !g.has("UPDATE", "retail", "products"),
            "a column grant is not a table grant"
        );
        assert!(g.has("DELETE", "retail", "products"));
        assert!(!g.has("SELECT", "retail", "orders"));
        assert!(g.has("CREATE", "retail", "*"));
        let all = grants(&["GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` WITH GRANT OPTION"]);
        assert!(all.has("DELETE", "x", "y") && all.has("REPLICATION SLAVE", "*", "*"));
    }

    fn names(results: &[CheckResult]) -> Vec<(&str, bool)> {
        results.iter().map(|r| (r.name.as_str(), r.ok)).collect()
    }

    #[test]
    fn mysql_needs_reload_for_the_snapshot_lock_and_mariadb_does_not() {
        let catalog = MySqlCatalog::empty("retail");
        let without = grants(&["GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO `t`@`%`"]);
        let mysql = privileges(&without, false, "retail", &[], &catalog, "'t'@'%'");
        assert!(
            names(&mysql).contains(&("privilege RELOAD", false)),
            "{mysql:?}"
        );
        let fix = mysql.iter().find(|r| r.name == "privilege RELOAD").unwrap();
        assert_eq!(fix.fix.as_deref(), Some("GRANT RELOAD ON *.* TO 't'@'%';"));
        let with =
            grants(&["GRANT RELOAD, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO `t`@`%`"]);
        let mysql = privileges(&with, false, "retail", &[], &catalog, "'t'@'%'");
        assert!(names(&mysql).contains(&("privilege RELOAD", true)));
        let maria = privileges(&without, true, "retail", &[], &catalog, "'t'@'%'");
        assert!(!maria.iter().any(|r| r.name == "privilege RELOAD"));
    }
}
