//! `tandem check`: is everything in place for `tandem run`?
//!
//! Validates the config (exit 2 when unusable), connects to both endpoints and asks each
//! endpoint crate for its prerequisite checks, then checks every mapping against both
//! catalogs. One line per check; every failure carries the statement or setting that
//! fixes it. Exit 1 when any check failed.

use std::path::Path;

use tandem_core::change::TableId;
use tandem_core::check::CheckResult;
use tandem_core::config::catalog::{check_mapping, Catalog};
use tandem_core::config::{Config, EndpointConfig, EndpointKind, Secret};

/// Load and validate the config; on failure print why and return exit code 2.
pub fn load_config(path: &Path) -> Result<Config, u8> {
    match Config::load(path) {
        Ok(cfg) => Ok(cfg),
        Err(e) => {
            eprintln!("{}: the configuration is not usable:", path.display());
            for err in &e.0 {
                eprintln!("  {err}");
            }
            Err(2)
        }
    }
}

/// Read an endpoint's password from where the config says.
pub fn password(name: &str, ep: &EndpointConfig) -> Result<Option<Secret>, CheckResult> {
    match &ep.password {
        None => Ok(None),
        Some(r) => r.resolve().map(Some).map_err(|why| {
            CheckResult::fail(
                format!("{name}: password"),
                why,
                format!("provide endpoints.{name}.password"),
            )
        }),
    }
}

/// Tables of `endpoint` named by the mappings.
pub fn mapped_tables(cfg: &Config, endpoint: &str, default_schema: &str) -> Vec<TableId> {
    let mut v: Vec<TableId> = cfg
        .mappings
        .iter()
        .filter_map(|m| m.sides.get(endpoint))
        .map(|s| TableId::parse(&s.table, default_schema))
        .collect();
    v.sort();
    v.dedup();
    v
}

fn print(results: &[CheckResult]) {
    for r in results {
        println!(
            "{} {}: {}",
            if r.ok { "OK  " } else { "FAIL" },
            r.name,
            r.detail
        );
        if let Some(fix) = &r.fix {
            println!("     fix: {fix}");
        }
    }
}

pub async fn run(path: &Path) -> u8 {
    let cfg = match load_config(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut results = vec![CheckResult::pass(
        "config",
        format!(
            "{} mapping(s), endpoints {}",
            cfg.mappings.len(),
            cfg.priority().join(", ")
        ),
    )];
    for m in &cfg.mappings {
        for w in &m.warnings {
            println!("WARN {w}");
        }
    }
    let mut pg_catalog = None;
    let mut my_catalog = None;
    if let Some((name, ep)) = cfg.endpoint(EndpointKind::Postgres) {
        match password(name, ep) {
            Err(r) => results.push(r),
            Ok(pw) => match tandem_postgres::connect::connect(ep, pw.as_ref(), "tandem check").await
            {
                Err(e) => results.push(CheckResult::fail(
                    format!("{name}: connect"),
                    e.report(),
                    "check the URL, the password and that the server accepts connections from here",
                )),
                Ok((client, _conn)) => {
                    results.push(CheckResult::pass(
                        format!("{name}: connect"),
                        ep.url.clone(),
                    ));
                    let tables = mapped_tables(&cfg, name, "public");
                    let r = tandem_postgres::checks::check(ep, &client, &tables).await;
                    results.extend(r.into_iter().map(|c| prefixed(name, c)));
                    let mut schemas: Vec<&str> = tables.iter().map(|t| t.schema.as_str()).collect();
                    schemas.dedup();
                    match tandem_postgres::catalog::PgCatalog::load(&client, &schemas, "public")
                        .await
                    {
                        Ok(c) => pg_catalog = Some((name.to_owned(), c)),
                        Err(e) => results.push(CheckResult::fail(
                            format!("{name}: catalog"),
                            e.report(),
                            "grant SELECT on the catalog",
                        )),
                    }
                }
            },
        }
    }
    if let Some((name, ep)) = cfg.endpoint(EndpointKind::Mysql) {
        match password(name, ep) {
            Err(r) => results.push(r),
            Ok(pw) => match tandem_mysql::connect::connect(ep, pw.as_ref()).await {
                Err(e) => results.push(CheckResult::fail(
                    format!("{name}: connect"),
                    e.report(),
                    "check the URL, the password and that the server accepts connections from here",
                )),
                Ok(mut conn) => {
                    results.push(CheckResult::pass(
                        format!("{name}: connect"),
                        ep.url.clone(),
                    ));
                    let db = ep.database().unwrap_or_default();
                    let tables = mapped_tables(&cfg, name, &db);
                    match tandem_mysql::checks::check_endpoint(
                        &mut conn,
                        ep.server_id(),
                        &db,
                        &tables,
                    )
                    .await
                    {
                        Ok(r) => results.extend(r.into_iter().map(|c| prefixed(name, c))),
                        Err(e) => results.push(CheckResult::fail(
                            format!("{name}: checks"),
                            e.report(),
                            "see the error",
                        )),
                    }
                    match tandem_mysql::catalog::MySqlCatalog::load(&mut conn, &db).await {
                        Ok(c) => my_catalog = Some((name.to_owned(), c)),
                        Err(e) => results.push(CheckResult::fail(
                            format!("{name}: catalog"),
                            e.report(),
                            "grant SELECT on information_schema",
                        )),
                    }
                }
            },
        }
    }
    if let (Some((pn, pc)), Some((mn, mc))) = (&pg_catalog, &my_catalog) {
        let cats: Vec<(&str, &dyn Catalog)> = vec![(pn.as_str(), pc), (mn.as_str(), mc)];
        for (i, m) in cfg.mappings.iter().enumerate() {
            let errs = check_mapping(m, i, &cats);
            if errs.is_empty() {
                results.push(CheckResult::pass(
                    format!("mapping {}", m.name),
                    "tables, columns, keys and types match",
                ));
            }
            for e in errs {
                results.push(CheckResult::fail(
                    format!("mapping {}", m.name),
                    format!("{}: {}", e.path, e.message),
                    e.fix,
                ));
            }
        }
    }
    print(&results);
    let failed = results.iter().filter(|r| !r.ok).count();
    if failed == 0 {
        println!("all {} checks passed", results.len());
        0
    } else {
        println!("{failed} of {} checks failed", results.len());
        1
    }
}

fn prefixed(endpoint: &str, mut c: CheckResult) -> CheckResult {
    c.name = format!("{endpoint}: {}", c.name);
    c
}
