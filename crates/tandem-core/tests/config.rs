//! Every mistake a DBA can make in a config gets a message naming the field and the fix.

use tandem_core::config::{Config, Direction, Strategy};

const BASE: &str = r#"
[endpoints.inventory]
kind = "postgres"
url = "postgres://tandem@127.0.0.1:5432/inventory"
password = { env = "INVENTORY_PASSWORD" }

[endpoints.retail]
kind = "mysql"
url = "mysql://tandem@127.0.0.1:3306/retail"
password = { env = "RETAIL_PASSWORD" }
"#;

const MAPPING: &str = r#"
[[mappings]]
name = "products"
direction = "both"
inventory = { table = "public.items", key = ["sku"] }
retail    = { table = "products",     key = ["sku"] }
conflict  = { strategy = "last_writer_wins", column = "updated_at" }
columns = [
  { inventory = "sku",        retail = "sku" },
  { inventory = "name",       retail = "title" },
  { inventory = "unit_price", retail = "price",     conflict = "prefer:inventory" },
  { inventory = "on_hand",    retail = "stock_qty", conflict = "delta" },
  { inventory = "updated_at", retail = "updated_at" },
]
"#;

fn errors(text: &str) -> String {
    match Config::parse(text) {
        Ok(_) => panic!("config was accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

fn with_mapping(replace: &str, by: &str) -> String {
    assert!(
        MAPPING.contains(replace),
        "test bug: {replace:?} not in the mapping"
    );
    format!("{BASE}{}", MAPPING.replace(replace, by))
}

#[test]
fn shipped_configs_parse() {
    for path in ["../../configs/reference.toml", "../../configs/demo.toml"] {
        let cfg =
            Config::load(std::path::Path::new(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(!cfg.mappings.is_empty());
    }
    let cfg = Config::parse(&format!("{BASE}{MAPPING}")).unwrap();
    let m = &cfg.mappings[0];
    assert_eq!(m.direction, Direction::Both);
    assert_eq!(m.strategy_for(&m.columns[3]), Strategy::Delta);
    assert_eq!(
        m.strategy_for(&m.columns[1]),
        Strategy::LastWriterWins {
            column: Some("updated_at".into())
        }
    );
    assert_eq!(cfg.priority(), vec!["inventory", "retail"]);
}

#[test]
fn inline_password_is_refused_with_advice() {
    let e = errors(&BASE.replace(
        r#"password = { env = "RETAIL_PASSWORD" }"#,
        r#"password = "s3cret""#,
    ));
    assert!(
        e.contains("inline secrets are refused") && e.contains("{ env = "),
        "{e}"
    );
    assert!(
        !e.contains("s3cret"),
        "the secret leaked into the message: {e}"
    );
}

#[test]
fn password_in_url_is_refused() {
    let e = errors(&format!(
        "{}{MAPPING}",
        BASE.replace("mysql://tandem@", "mysql://tandem:hunter2@")
    ));
    assert!(
        e.contains("endpoints.retail.url: contains a password"),
        "{e}"
    );
}

#[test]
fn unknown_endpoint_key_suggests_the_right_one() {
    let e = errors(&format!(
        "{}{MAPPING}",
        BASE.replace(
            "kind = \"mysql\"",
            "kind = \"mysql\"\npasword = { env = \"X\" }"
        )
    ));
    assert!(
        e.contains("unknown field `pasword`") && e.contains("did you mean \"password\"?"),
        "{e}"
    );
}

#[test]
fn misspelled_mapping_key_names_path_and_suggestion() {
    let e = errors(&with_mapping("conflict  = {", "conflcit  = {"));
    assert!(
        e.contains("mappings[0].conflcit: unknown key; did you mean \"conflict\"?"),
        "{e}"
    );
}

#[test]
fn misspelled_endpoint_in_mapping() {
    let e = errors(&with_mapping("retail    = { table", "retial    = { table"));
    assert!(
        e.contains("mappings[0].retial: unknown key; did you mean \"retail\"?"),
        "{e}"
    );
    assert!(e.contains("mappings[0].retail: is missing"), "{e}");
}

#[test]
fn key_column_must_be_mapped() {
    let e = errors(&with_mapping(
        r#"key = ["sku"] }
conflict"#,
        r#"key = ["skew"] }
conflict"#,
    ));
    assert!(
        e.contains(
            "mappings[0].retail.key: key column \"skew\" is not in columns; did you mean \"sku\"?"
        ),
        "{e}"
    );
}

#[test]
fn unknown_strategy_suggests() {
    let e = errors(&with_mapping(
        r#"conflict = "delta""#,
        r#"conflict = "detla""#,
    ));
    assert!(
        e.contains(
            "mappings[0].columns[3].conflict: \"detla\" is not a strategy; did you mean \"delta\"?"
        ),
        "{e}"
    );
}

#[test]
fn incoming_wins_is_refused_with_reason() {
    let e = errors(&with_mapping(
        r#"conflict = "delta""#,
        r#"conflict = "incoming_wins""#,
    ));
    assert!(
        e.contains("diverge") && e.contains("last_writer_wins"),
        "{e}"
    );
}

#[test]
fn prefer_needs_a_known_endpoint() {
    let e = errors(&with_mapping("prefer:inventory", "prefer:inventroy"));
    assert!(
        e.contains(
            "prefer names \"inventroy\", which is not an endpoint; did you mean \"inventory\"?"
        ),
        "{e}"
    );
}

#[test]
fn last_writer_wins_needs_a_mapped_column() {
    let e = errors(&with_mapping(
        r#"column = "updated_at""#,
        r#"column = "updatd_at""#,
    ));
    assert!(e.contains("mappings[0].conflict.column: timestamp column \"updatd_at\" is not a mapped column; did you mean \"updated_at\"?"), "{e}");
    let e = errors(&with_mapping(
        r#"{ strategy = "last_writer_wins", column = "updated_at" }"#,
        r#""last_writer_wins""#,
    ));
    assert!(
        e.contains("last_writer_wins needs the timestamp column"),
        "{e}"
    );
}

#[test]
fn key_columns_never_conflict() {
    let e = errors(&with_mapping(
        r#"{ inventory = "sku",        retail = "sku" }"#,
        r#"{ inventory = "sku", retail = "sku", conflict = "max" }"#,
    ));
    assert!(
        e.contains("mappings[0].columns[0].conflict: key columns never conflict"),
        "{e}"
    );
}

#[test]
fn direction_typo() {
    let e = errors(&with_mapping(
        r#"direction = "both""#,
        r#"direction = "inventory->retial""#,
    ));
    assert!(
        e.contains(
            "mappings[0].direction: \"retial\" is not an endpoint; did you mean \"retail\"?"
        ),
        "{e}"
    );
}

#[test]
fn column_missing_an_endpoint() {
    let e = errors(&with_mapping(
        r#"{ inventory = "name",       retail = "title" }"#,
        r#"{ inventory = "name" }"#,
    ));
    assert!(
        e.contains("mappings[0].columns[1].retail: is missing"),
        "{e}"
    );
}

#[test]
fn duplicate_mapping_names_and_bad_on_error() {
    let twice = format!(
        "{BASE}{MAPPING}{}",
        MAPPING.replace(
            "name = \"products\"",
            "name = \"products\"\non_error = \"ignore\""
        )
    );
    let e = errors(&twice);
    assert!(
        e.contains("mappings[1].on_error: \"ignore\" is not an error policy"),
        "{e}"
    );
    let twice = format!("{BASE}{MAPPING}{MAPPING}");
    assert!(errors(&twice).contains("mappings[1].name: mapping name \"products\" is used twice"));
}

#[test]
fn endpoints_must_be_one_of_each() {
    let e = errors(&format!(
        "{}{MAPPING}",
        BASE.replace("kind = \"mysql\"", "kind = \"postgres\"")
            .replace("mysql://", "postgres://")
    ));
    assert!(e.contains("found 2 postgres and 0 mysql"), "{e}");
}

#[test]
fn verify_tls_needs_ca() {
    let e = errors(&format!(
        "{}{MAPPING}",
        BASE.replace(
            "password = { env = \"RETAIL_PASSWORD\" }",
            "password = { env = \"RETAIL_PASSWORD\" }\ntls = { mode = \"verify-full\" }"
        )
    ));
    assert!(
        e.contains("endpoints.retail.tls.ca_file: certificate verification needs the CA"),
        "{e}"
    );
}

#[test]
fn no_strategy_is_a_warning_not_an_error() {
    let cfg = Config::parse(
        &with_mapping(
            r#"conflict  = { strategy = "last_writer_wins", column = "updated_at" }"#,
            "",
        )
        .replace(r#",     conflict = "prefer:inventory""#, "")
        .replace(r#", conflict = "delta""#, ""),
    )
    .unwrap();
    let w = &cfg.mappings[0].warnings;
    assert_eq!(w.len(), 1);
    assert!(
        w[0].to_string().contains("no conflict strategy"),
        "{}",
        w[0]
    );
}

#[test]
fn all_errors_are_reported_at_once() {
    let text =
        with_mapping("conflict  = {", "conflcit  = {").replace("prefer:inventory", "prefer:nobody");
    let e = errors(&text);
    assert!(e.lines().count() >= 2, "{e}");
}

#[test]
fn where_filter_that_does_not_compile_names_its_path() {
    let e = errors(&with_mapping(
        r#"retail    = { table = "products",     key = ["sku"] }"#,
        r#"retail    = { table = "products",     key = ["sku"], where = "row.qty >" }"#,
    ));
    assert!(
        e.starts_with("mappings[0].retail.where: does not compile:") && e.contains("line 1"),
        "{e}"
    );
}

#[test]
fn where_filter_with_a_misspelled_variable_suggests_row() {
    let e = errors(&with_mapping(
        r#"retail    = { table = "products",     key = ["sku"] }"#,
        r#"retail    = { table = "products",     key = ["sku"], where = "rwo.stock_qty > 0" }"#,
    ));
    assert_eq!(
        e,
        "mappings[0].retail.where: unknown variable \"rwo\"; did you mean \"row\"?"
    );
}

#[test]
fn transform_with_unknown_function_names_its_path() {
    let e = errors(&with_mapping(
        r#"{ inventory = "name",       retail = "title" },"#,
        r#"{ inventory = "name",       retail = "title", transform = { inventory = "sha265(value)" } },"#,
    ));
    assert_eq!(
        e,
        "mappings[0].columns[1].transform.inventory: unknown function \"sha265\"; did you mean \"sha256\"?"
    );
}

#[test]
fn transform_on_a_key_column_is_refused() {
    let e = errors(&with_mapping(
        r#"{ inventory = "sku",        retail = "sku" },"#,
        r#"{ inventory = "sku",        retail = "sku", transform = { retail = "lower(value)" } },"#,
    ));
    assert!(
        e.starts_with("mappings[0].columns[0].transform.retail: key columns cannot be transformed"),
        "{e}"
    );
}

#[test]
fn valid_expressions_load_and_unused_ones_warn() {
    let text = with_mapping(
        r#"direction = "both""#,
        r#"direction = "retail->inventory""#,
    )
    .replace(
        r#"{ inventory = "name",       retail = "title" },"#,
        r#"{ inventory = "name",       retail = "title", transform = { inventory = "mask_email(value)", retail = "upper(value)" } },"#,
    )
    .replace(
        r#"retail    = { table = "products",     key = ["sku"] }"#,
        r#"retail    = { table = "products",     key = ["sku"], where = "row.stock_qty > 0" }"#,
    );
    let cfg = Config::parse(&text).unwrap_or_else(|e| panic!("{e}"));
    let m = &cfg.mappings[0];
    assert_eq!(
        m.sides["retail"].filter.as_deref(),
        Some("row.stock_qty > 0")
    );
    let warnings: Vec<String> = m.warnings.iter().map(|w| w.to_string()).collect();
    assert!(
        warnings
            .iter()
            .any(|w| w
                .starts_with("mappings[0].columns[1].transform.retail: rows never flow to retail")),
        "{warnings:?}"
    );
}

#[test]
fn transform_one_way_on_a_two_way_mapping_warns_that_the_value_flows_back() {
    let cfg = Config::parse(&with_mapping(
        r#"{ inventory = "name",       retail = "title" },"#,
        r#"{ inventory = "name",       retail = "title", transform = { inventory = "redact(value)" } },"#,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let warnings: Vec<String> = cfg.mappings[0]
        .warnings
        .iter()
        .map(|w| w.to_string())
        .collect();
    assert!(
        warnings.iter().any(|w| w.starts_with(
            "mappings[0].columns[1].transform.inventory: rows also flow from inventory to retail"
        )),
        "{warnings:?}"
    );
}

#[test]
fn snapshot_chunk_rows_defaults_and_is_validated() {
    let cfg = Config::parse(&format!("{BASE}{MAPPING}")).expect("valid");
    assert_eq!(cfg.daemon.snapshot_chunk_rows, 5_000);
    let cfg = Config::parse(&format!(
        "[daemon]\nsnapshot_chunk_rows = 250\n{BASE}{MAPPING}"
    ))
    .expect("valid");
    assert_eq!(cfg.daemon.snapshot_chunk_rows, 250);
    for bad in ["0", "2000000"] {
        let e = errors(&format!(
            "[daemon]\nsnapshot_chunk_rows = {bad}\n{BASE}{MAPPING}"
        ));
        assert!(e.contains("daemon.snapshot_chunk_rows"), "{e}");
        assert!(e.contains("between 1 and 1000000"), "{e}");
    }
}

#[test]
fn tombstones_are_accepted_with_a_warning_that_they_do_nothing_yet() {
    let cfg = Config::parse(&with_mapping(
        r#"name = "products""#,
        "name = \"products\"\ntombstones = \"24h\"",
    ))
    .unwrap();
    let w: Vec<String> = cfg.mappings[0]
        .warnings
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        w.iter()
            .any(|w| w.contains("mappings[0].tombstones: tombstones are not implemented yet")),
        "{w:?}"
    );
}

#[test]
fn verify_interval_is_off_by_default_and_checked() {
    let cfg = Config::parse(&format!("{BASE}{MAPPING}")).unwrap();
    assert_eq!(cfg.verify.interval(), None);
    let cfg = Config::parse(&format!("{BASE}{MAPPING}\n[verify]\ninterval = \"1h\"\n")).unwrap();
    assert_eq!(
        cfg.verify.interval(),
        Some(std::time::Duration::from_secs(3600))
    );
    let e = errors(&format!(
        "{BASE}{MAPPING}\n[verify]\ninterval = \"hourly\"\n"
    ));
    assert!(
        e.contains("verify.interval") && e.contains("not a duration") && e.contains("\"1h\""),
        "{e}"
    );
    let e = errors(&format!(
        "{BASE}{MAPPING}\n[verify]\ninterval = \"500ms\"\n"
    ));
    assert!(e.contains("shorter than one second"), "{e}");
    let e = errors(&format!("{BASE}{MAPPING}\n[verify]\nintervall = \"1h\"\n"));
    assert!(e.contains("intervall"), "{e}");
}

#[test]
fn xa_held_rows_defaults_and_is_validated() {
    let cfg = Config::parse(&format!("{BASE}{MAPPING}")).expect("valid");
    let retail = &cfg.endpoints["retail"];
    assert_eq!(retail.xa_held_rows(), 100_000);
    let set = BASE.replace(
        "url = \"mysql://tandem@127.0.0.1:3306/retail\"",
        "url = \"mysql://tandem@127.0.0.1:3306/retail\"\nxa_held_rows = 250000",
    );
    let cfg = Config::parse(&format!("{set}{MAPPING}")).expect("valid");
    assert_eq!(cfg.endpoints["retail"].xa_held_rows(), 250_000);
    for bad in ["0", "20000000"] {
        let text = BASE.replace(
            "url = \"mysql://tandem@127.0.0.1:3306/retail\"",
            &format!("url = \"mysql://tandem@127.0.0.1:3306/retail\"\nxa_held_rows = {bad}"),
        );
        let e = errors(&format!("{text}{MAPPING}"));
        assert!(e.contains("endpoints.retail.xa_held_rows"), "{e}");
        assert!(e.contains("between 1 and 10000000"), "{e}");
    }
    let on_pg = BASE.replace(
        "url = \"postgres://tandem@127.0.0.1:5432/inventory\"",
        "url = \"postgres://tandem@127.0.0.1:5432/inventory\"\nxa_held_rows = 10",
    );
    let e = errors(&format!("{on_pg}{MAPPING}"));
    assert!(e.contains("endpoints.inventory.xa_held_rows"), "{e}");
    assert!(e.contains("only applies to mysql"), "{e}");
}
