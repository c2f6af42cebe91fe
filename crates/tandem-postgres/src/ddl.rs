//! tandem's own tables in the PostgreSQL endpoint, and the quoting of names in SQL text.
//!
//! The checkpoint table is what makes apply exactly-once: the applier upserts its row in
//! the same transaction as the rows it applies (see `sink`), so the row and the data can
//! never disagree after a crash. Conflicts and dead letters live beside it so that a DBA
//! can query them with the data they concern.
//!
//! The tables are created if missing, never altered or dropped: `CREATE … IF NOT EXISTS`
//! is idempotent and safe when two tandem processes start at once (a concurrent creation
//! fails with a unique violation on the catalog, which is retried).

use tandem_core::error::StageError;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

/// The schema tandem's tables live in unless configured otherwise.
pub const DEFAULT_SCHEMA: &str = "tandem";

/// Quote an identifier for SQL text, always, so that case and keywords survive.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `"schema"."name"`.
pub fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(name))
}

/// The statements creating tandem's tables in `schema`.
pub fn create_statements(schema: &str) -> Vec<String> {
    let s = quote_ident(schema);
    vec![
        format!("CREATE SCHEMA IF NOT EXISTS {s}"),
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.checkpoints (
                pipeline text PRIMARY KEY,
                position text NOT NULL,
                source_commit_time timestamptz,
                applied_at timestamptz NOT NULL DEFAULT now())"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.conflicts (
                id bigserial PRIMARY KEY,
                at timestamptz NOT NULL DEFAULT now(),
                mapping text NOT NULL,
                kind text NOT NULL,
                strategy text NOT NULL,
                decision text NOT NULL,
                key jsonb NOT NULL,
                before jsonb,
                after jsonb,
                current jsonb,
                source_commit_time timestamptz,
                resolved_at timestamptz,
                resolution text)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.dead_letters (
                id bigserial PRIMARY KEY,
                at timestamptz NOT NULL DEFAULT now(),
                mapping text NOT NULL,
                key jsonb NOT NULL,
                change jsonb NOT NULL,
                reason text NOT NULL,
                source_position text,
                retried_at timestamptz)"
        ),
    ]
}

/// Create tandem's tables in `schema` if they are missing.
pub async fn ensure_tables(client: &Client, schema: &str) -> Result<(), StageError> {
    for attempt in 0..3 {
        match try_create(client, schema).await {
            Ok(()) => return Ok(()),
            // Two processes creating the same object at once: the loser sees the winner's
            // catalog row as a duplicate. The next round finds everything in place.
            Err(e) if attempt < 2 && e.code() == Some(&SqlState::UNIQUE_VIOLATION) => continue,
            Err(e) => {
                let what = format!("Cannot create tandem's tables in schema {schema:?}");
                return Err(if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) {
                    StageError::definite_from(
                        what,
                        format!(
                            "GRANT CREATE ON DATABASE to tandem's role, or create schema {schema} \
                             owned by it (tandem check lists the privileges it needs)"
                        ),
                        e,
                    )
                } else if e.code().is_some() {
                    StageError::definite_from(what, "see the cause; tandem check may tell more", e)
                } else {
                    StageError::transient(what, e)
                });
            }
        }
    }
    Ok(())
}

async fn try_create(client: &Client, schema: &str) -> Result<(), tokio_postgres::Error> {
    for stmt in create_statements(schema) {
        client.batch_execute(&stmt).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_always_quoted() {
        assert_eq!(quote_ident("Items"), "\"Items\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(qualified("public", "order"), "\"public\".\"order\"");
    }

    #[test]
    fn tables_go_to_the_configured_schema() {
        let stmts = create_statements("Ops");
        assert!(
            stmts.iter().skip(1).all(|s| s.contains("\"Ops\".")),
            "{stmts:?}"
        );
    }
}
