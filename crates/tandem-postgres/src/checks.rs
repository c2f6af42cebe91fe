//! `tandem check` for a PostgreSQL endpoint: every prerequisite, each with its fix.
//!
//! The checks run before anything is created, as the role tandem will run as, and never
//! change the database. They follow what the pipeline will do and in that order: read the
//! log (server version, `wal_level`, a free slot and WAL sender, the `REPLICATION`
//! attribute), write without echo (the origin functions), create its objects (publication,
//! schema `tandem`), and for each mapped table, detect conflicts (`REPLICA IDENTITY FULL`,
//! so updates and deletes carry the whole before-image), match rows (a primary or unique
//! key) and read and write it (privileges).
//!
//! A query that fails is itself a failed check with the error as its detail: a check run
//! is a report for the DBA, not a stage of the pipeline.

use tandem_core::change::TableId;
use tandem_core::check::CheckResult;
use tandem_core::config::EndpointConfig;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row};

use crate::ddl::{qualified, quote_ident, DEFAULT_SCHEMA};

/// The oldest server tandem supports.
pub const MIN_SERVER_VERSION: i32 = 140_000;

/// Functions the applier calls to tag its writes with the replication origin.
const ORIGIN_FUNCTIONS: [&str; 3] = [
    "pg_replication_origin_oid(text)",
    "pg_replication_origin_create(text)",
    "pg_replication_origin_session_setup(text)",
];

/// Check the endpoint as the role `client` is logged in as, for the mapped `tables`.
pub async fn check(ep: &EndpointConfig, client: &Client, tables: &[TableId]) -> Vec<CheckResult> {
    let mut out = Vec::new();
    let settings = match one(
        client,
        "SELECT current_setting('server_version_num')::int, current_setting('server_version'),
                current_setting('wal_level'), current_user::text,
                current_setting('max_replication_slots')::int,
                (SELECT count(*)::int FROM pg_replication_slots),
                EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1),
                current_setting('max_wal_senders')::int,
                (SELECT count(*)::int FROM pg_stat_replication),
                r.rolsuper, r.rolreplication, current_database()::text
         FROM pg_roles r WHERE r.rolname = current_user",
        &[&ep.slot_name()],
    )
    .await
    {
        Ok(row) => row,
        Err(e) => {
            out.push(CheckResult::fail(
                "connect",
                e,
                "check the endpoint's URL and password",
            ));
            return out;
        }
    };
    let get_i = |i: usize| settings.try_get::<_, i32>(i).unwrap_or_default();
    let get_s = |i: usize| settings.try_get::<_, String>(i).unwrap_or_default();
    let get_b = |i: usize| settings.try_get::<_, bool>(i).unwrap_or_default();
    let (version, wal_level, role, database) = (get_i(0), get_s(2), get_s(3), get_s(11));
    let (superuser, replication) = (get_b(9), get_b(10));

    out.push(if version >= MIN_SERVER_VERSION {
        CheckResult::pass("server version", format!("PostgreSQL {}", get_s(1)))
    } else {
        CheckResult::fail(
            "server version",
            format!("PostgreSQL {} is older than 14", get_s(1)),
            "upgrade the server to PostgreSQL 14 or later",
        )
    });
    out.push(if wal_level == "logical" {
        CheckResult::pass("wal_level", "wal_level is logical")
    } else {
        CheckResult::fail(
            "wal_level",
            format!("wal_level is {wal_level}; logical decoding needs logical"),
            "run ALTER SYSTEM SET wal_level = logical; and restart PostgreSQL",
        )
    });

    let (max_slots, used_slots, has_slot) = (get_i(4), get_i(5), get_b(6));
    out.push(if has_slot || used_slots < max_slots {
        let detail = if has_slot {
            format!("slot {} exists", ep.slot_name())
        } else {
            format!("{used_slots} of max_replication_slots = {max_slots} in use")
        };
        CheckResult::pass("replication slots", detail)
    } else {
        CheckResult::fail(
            "replication slots",
            format!("all {max_slots} replication slots are in use"),
            format!(
                "drop an unused slot (SELECT pg_drop_replication_slot('name');) or run ALTER SYSTEM SET \
                 max_replication_slots = {}; and restart",
                max_slots + 1
            ),
        )
    });
    let (max_senders, used_senders) = (get_i(7), get_i(8));
    out.push(if used_senders < max_senders {
        CheckResult::pass(
            "wal senders",
            format!("{used_senders} of max_wal_senders = {max_senders} in use"),
        )
    } else {
        CheckResult::fail(
            "wal senders",
            format!("all {max_senders} WAL senders are in use"),
            format!(
                "run ALTER SYSTEM SET max_wal_senders = {}; and restart",
                max_senders + 1
            ),
        )
    });
    out.push(if superuser || replication {
        let how = if superuser {
            "is superuser"
        } else {
            "has REPLICATION"
        };
        CheckResult::pass("replication privilege", format!("role {role} {how}"))
    } else {
        CheckResult::fail(
            "replication privilege",
            format!("role {role} may not start logical replication"),
            format!("run ALTER ROLE {} REPLICATION;", quote_ident(&role)),
        )
    });

    out.push(origin_check(client, &role).await);
    out.push(create_check(ep, client, &role, &database).await);
    for table in tables {
        out.extend(table_checks(client, &role, table).await);
    }
    out
}

async fn one(client: &Client, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row, String> {
    client
        .query_one(sql, params)
        .await
        .map_err(|e| match e.as_db_error() {
            Some(db) => db.message().to_owned(),
            None => e.to_string(),
        })
}

async fn origin_check(client: &Client, role: &str) -> CheckResult {
    let name = "replication origin";
    let sql = "SELECT array_agg(f) FILTER (WHERE NOT has_function_privilege(f, 'EXECUTE'))
               FROM unnest($1::text[]) AS f";
    let functions: Vec<String> = ORIGIN_FUNCTIONS.iter().map(|f| (*f).to_owned()).collect();
    match one(client, sql, &[&functions]).await {
        Err(e) => CheckResult::fail(name, e, "see the detail"),
        Ok(row) => match row.try_get::<_, Option<Vec<String>>>(0) {
            Ok(None) => CheckResult::pass(
                name,
                format!("role {role} may tag its writes with an origin"),
            ),
            Ok(Some(missing)) => CheckResult::fail(
                name,
                format!("role {role} may not call {}", missing.join(", ")),
                missing
                    .iter()
                    .map(|f| format!("GRANT EXECUTE ON FUNCTION {f} TO {};", quote_ident(role)))
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            Err(e) => CheckResult::fail(name, e.to_string(), "see the detail"),
        },
    }
}

/// tandem creates a publication and its schema: it needs CREATE on the database, unless
/// both exist already and the schema is its to write in.
async fn create_check(
    ep: &EndpointConfig,
    client: &Client,
    role: &str,
    database: &str,
) -> CheckResult {
    let name = "create publication and schema";
    let sql = "SELECT has_database_privilege(current_database(), 'CREATE'),
                      EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1),
                      EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $2)
                        AND has_schema_privilege($2, 'CREATE')";
    let row = match one(client, sql, &[&ep.publication_name(), &DEFAULT_SCHEMA]).await {
        Ok(r) => r,
        Err(e) => return CheckResult::fail(name, e, "see the detail"),
    };
    let (may_create, has_publication, has_schema) = (
        row.try_get::<_, bool>(0).unwrap_or_default(),
        row.try_get::<_, bool>(1).unwrap_or_default(),
        row.try_get::<_, bool>(2).unwrap_or_default(),
    );
    if may_create {
        CheckResult::pass(
            name,
            format!("role {role} may create in database {database}"),
        )
    } else if has_publication && has_schema {
        CheckResult::pass(
            name,
            format!(
                "publication {} and schema {DEFAULT_SCHEMA} exist",
                ep.publication_name()
            ),
        )
    } else {
        CheckResult::fail(
            name,
            format!("role {role} may not create the publication or schema {DEFAULT_SCHEMA} in database {database}"),
            format!("run GRANT CREATE ON DATABASE {} TO {};", quote_ident(database), quote_ident(role)),
        )
    }
}

async fn table_checks(client: &Client, role: &str, table: &TableId) -> Vec<CheckResult> {
    let q = qualified(&table.schema, &table.name);
    let prefix = format!("table {table}");
    let sql = "SELECT c.relreplident::text,
                      EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisunique
                              AND i.indpred IS NULL AND i.indexprs IS NULL),
                      array_remove(ARRAY[
                        CASE WHEN NOT has_table_privilege(c.oid, 'SELECT') THEN 'SELECT' END,
                        CASE WHEN NOT has_table_privilege(c.oid, 'INSERT') THEN 'INSERT' END,
                        CASE WHEN NOT has_table_privilege(c.oid, 'UPDATE') THEN 'UPDATE' END,
                        CASE WHEN NOT has_table_privilege(c.oid, 'DELETE') THEN 'DELETE' END], NULL)
               FROM pg_class c WHERE c.oid = to_regclass($1)";
    let row = match client.query_opt(sql, &[&q]).await {
        Ok(Some(row)) => row,
        Ok(None) => {
            return vec![CheckResult::fail(
                format!("{prefix}: exists"),
                format!("{table} does not exist"),
                "create the table or correct the mapping's table name",
            )]
        }
        Err(e) => {
            return vec![CheckResult::fail(
                format!("{prefix}: exists"),
                e.to_string(),
                "see the detail",
            )]
        }
    };
    let ident: String = row.try_get(0).unwrap_or_default();
    let has_key: bool = row.try_get(1).unwrap_or_default();
    let missing: Vec<String> = row.try_get(2).unwrap_or_default();
    let mut out = vec![CheckResult::pass(
        format!("{prefix}: exists"),
        format!("{table} exists"),
    )];
    out.push(if ident == "f" {
        CheckResult::pass(format!("{prefix}: replica identity"), "REPLICA IDENTITY FULL")
    } else {
        let now = match ident.as_str() {
            "d" => "DEFAULT",
            "i" => "USING INDEX",
            "n" => "NOTHING",
            _ => "unknown",
        };
        CheckResult::fail(
            format!("{prefix}: replica identity"),
            format!("REPLICA IDENTITY is {now}: updates and deletes lack the before-image conflicts are judged by"),
            format!("run ALTER TABLE {q} REPLICA IDENTITY FULL;"),
        )
    });
    out.push(if has_key {
        CheckResult::pass(format!("{prefix}: key"), "has a primary or unique key")
    } else {
        CheckResult::fail(
            format!("{prefix}: key"),
            "no primary key or unique index on plain columns: rows cannot be matched",
            format!("run ALTER TABLE {q} ADD PRIMARY KEY (…); naming the key columns"),
        )
    });
    out.push(if missing.is_empty() {
        CheckResult::pass(
            format!("{prefix}: privileges"),
            format!("role {role} may SELECT, INSERT, UPDATE, DELETE"),
        )
    } else {
        CheckResult::fail(
            format!("{prefix}: privileges"),
            format!("role {role} lacks {}", missing.join(", ")),
            format!(
                "run GRANT {} ON {q} TO {};",
                missing.join(", "),
                quote_ident(role)
            ),
        )
    });
    out
}
