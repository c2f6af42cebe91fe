//! Row filters and value transforms: expressions in CEL, the Common Expression Language.
//!
//! A mapping may say which rows leave a side (`where`) and compute the value written to a
//! column (`transform`), for example to mask personal data before it crosses. These are
//! [CEL](https://github.com/google/cel-spec) expressions, evaluated by the `cel` crate of
//! the cel-rust project: a specified, side-effect-free, always-terminating language that
//! DBAs may already know from Kubernetes or Envoy, rather than a home-made one.
//!
//! # Variables
//! - `row`: the source row, a map of source column name → value (every column the source
//!   sent, mapped or not). A column whose value an expression cannot read (a type tandem
//!   does not know, an unchanged TOAST value) is absent: reading it fails the row.
//! - `value` (transforms only): the source value of the mapped column.
//!
//! # Values
//! Canonical values become CEL values so that nothing exact is rounded on the way:
//!
//! | tandem | CEL |
//! |---|---|
//! | boolean, integer, unsigned, float | `bool`, `int`, `uint`, `double` |
//! | decimal | `string` holding the exact decimal (`"12.50"`); compare with `double(row.price) > 0.0` |
//! | text, JSON, UUID | `string` |
//! | binary | `bytes` |
//! | date, time of day | `string` (`"2024-05-01"`, `"13:45:00.250000"`) |
//! | timestamp, timestamptz | `timestamp` (naive timestamps are taken as UTC) |
//! | NULL | `null` |
//!
//! A transform's result goes back the same way and is then converted to the target column
//! exactly as an untransformed value would be ([`crate::convert`]). A string written to a
//! decimal, date or time column is parsed as one, so `value` passed through a transform
//! arrives digit for digit; an unparsable string is an error for that row, never a NULL.
//!
//! # Functions
//! The CEL standard library, the strings extension (`lowerAscii`, `replace`, `split`,
//! `substring`, `trim`, …) and tandem's masking helpers, listed in [`FUNCTIONS`]. The
//! helpers pass `null` through, so a nullable personal-data column does not fail its NULLs.
//!
//! Every expression is compiled when the config loads ([`compile`]); a syntax error, an
//! unknown variable or an unknown function is a config error with its field path. What
//! can still fail is evaluation against a real row (a type error, a missing key), which is
//! a definite error for that row: the mapper reports it and the applier dead-letters it.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, LazyLock};

use bigdecimal::BigDecimal;
use cel::common::ast::{EntryExpr, Expr};
use cel::common::types::{self, CelBytes, CelString};
use cel::common::value::{CowVal, Val};
use cel::objects::{Key, Map};
use cel::{Context, Env, ExecutionError, IdedExpr, Program};
use chrono::{NaiveDate, NaiveTime, Utc};
use sha2::{Digest, Sha256};

use crate::change::{Cell, Row, TableSchema};
use crate::value::{ColumnType, Value};

/// What `redact` writes in place of a value.
pub const REDACTED: &str = "***";

/// tandem's functions on top of CEL's standard library: `(signature, what it does)`, for
/// the README and `tandem check`.
pub const FUNCTIONS: &[(&str, &str)] = &[
    (
        "sha256(string|bytes) -> string",
        "lowercase hex SHA-256 of the UTF-8 text or the bytes",
    ),
    ("redact(string) -> string", "\"***\""),
    (
        "mask_email(string) -> string",
        "keeps the first character and the domain: \"jane@example.com\" -> \"j***@example.com\"",
    ),
    ("lower(string) -> string", "Unicode lowercase"),
    ("upper(string) -> string", "Unicode uppercase"),
];

/// Names tandem adds (for "did you mean" and the unknown-function check).
const TANDEM_FUNCTIONS: &[&str] = &["sha256", "redact", "mask_email", "lower", "upper"];

/// Identifiers CEL resolves by itself (type names used as values: `type(x) == int`).
const CEL_IDENTS: &[&str] = &[
    "int",
    "uint",
    "double",
    "bool",
    "string",
    "bytes",
    "list",
    "map",
    "null_type",
    "type",
    "timestamp",
    "duration",
    "dyn",
    "optional_type",
];

/// Where an expression is used, which decides the variables it may read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExprKind {
    /// `where`: a boolean over `row`.
    Filter,
    /// `transform`: a value computed from `value` and `row`.
    Transform,
}

impl ExprKind {
    fn variables(self) -> &'static [&'static str] {
        match self {
            ExprKind::Filter => &["row"],
            ExprKind::Transform => &["value", "row"],
        }
    }
}

/// Why an expression does not compile.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CompileError {
    /// What is wrong, in a sentence fragment.
    pub message: String,
    /// What to change.
    pub fix: String,
}

/// Why an expression failed on a row. The caller adds which mapping and column.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EvalError(pub String);

/// A compiled expression.
pub struct Expression {
    source: String,
    kind: ExprKind,
    program: Program,
    env: Arc<Env>,
}

/// The environment every expression runs in: built once, shared by all.
static ENV: LazyLock<Result<Arc<Env>, String>> =
    LazyLock::new(|| build_env().map(Arc::new).map_err(|e| e.to_string()));

fn env() -> Result<Arc<Env>, String> {
    ENV.clone()
}

fn build_env() -> Result<Env, cel::DeclarationError> {
    let mut env = Env::stdlib();
    env.add_extension(cel::extensions::strings)?;
    cel::add_overload!(env, fn sha256_string: (CelString) -> CelString, name = "sha256")?;
    cel::add_overload!(env, fn sha256_bytes: (CelBytes) -> CelString, name = "sha256")?;
    cel::add_overload!(env, fn redact: (CelString) -> CelString)?;
    cel::add_overload!(env, fn mask_email: (CelString) -> CelString, name = "mask_email")?;
    cel::add_overload!(env, fn lower: (CelString) -> CelString)?;
    cel::add_overload!(env, fn upper: (CelString) -> CelString)?;
    for name in TANDEM_FUNCTIONS {
        env.add_overload(
            name,
            &format!("{name}_null"),
            vec![types::NULL_TYPE],
            pass_null,
        )?;
    }
    Ok(env)
}

/// `f(null) == null` for the masking helpers: a NULL has nothing to hide.
fn pass_null<'b, 'v>(mut args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    args.pop()
        .ok_or_else(|| ExecutionError::invalid_argument_count(1, 0))
}

fn hex(digest: &[u8]) -> String {
    digest.iter().fold(String::with_capacity(64), |mut s, b| {
        s.push_str(&format!("{b:02x}"));
        s
    })
}

fn sha256_string(s: &CelString<'_>) -> CelString<'static> {
    hex(&Sha256::digest(s.inner().as_bytes())).into()
}

fn sha256_bytes(b: &CelBytes<'_>) -> CelString<'static> {
    hex(&Sha256::digest(b.inner())).into()
}

fn redact(_: &CelString<'_>) -> CelString<'static> {
    REDACTED.to_owned().into()
}

fn lower(s: &CelString<'_>) -> CelString<'static> {
    s.inner().to_lowercase().into()
}

fn upper(s: &CelString<'_>) -> CelString<'static> {
    s.inner().to_uppercase().into()
}

/// Keep enough of an address to tell rows apart by eye, not enough to contact anyone.
pub fn mask_email_str(s: &str) -> String {
    match s.rsplit_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}{REDACTED}@{domain}")
        }
        None => REDACTED.to_owned(),
    }
}

fn mask_email(s: &CelString<'_>) -> CelString<'static> {
    mask_email_str(s.inner()).into()
}

/// Compile `source` as an expression of `kind`, checking the variables and functions it
/// names so that a typo is a config error rather than a dead letter per row.
pub fn compile(source: &str, kind: ExprKind) -> Result<Expression, CompileError> {
    let env = env().map_err(|e| CompileError {
        message: format!("the expression environment could not be built: {e}"),
        fix: "report this as a bug in tandem".into(),
    })?;
    let program = env.compile(source).map_err(|e| CompileError {
        message: format!("does not compile: {}", parse_message(&e)),
        fix: "write a CEL expression, e.g. row.qty > 0 or sha256(value)".into(),
    })?;
    let mut free = BTreeSet::new();
    let mut bound = BTreeSet::new();
    let mut calls = BTreeSet::new();
    walk(program.expression(), &mut free, &mut bound, &mut calls);
    let allowed = kind.variables();
    for name in free.difference(&bound) {
        if allowed.contains(&name.as_str()) || CEL_IDENTS.contains(&name.as_str()) {
            continue;
        }
        let fix = if name == "value" {
            "a where filter sees the row only: write row.<column>".to_owned()
        } else {
            match crate::config::suggest(name, allowed.iter().copied()) {
                Some(s) => format!("did you mean {s:?}?"),
                None => format!(
                    "the expression can read {}; columns are row.<column>",
                    allowed.join(" and ")
                ),
            }
        };
        return Err(CompileError {
            message: format!("unknown variable {name:?}"),
            fix,
        });
    }
    for name in &calls {
        if !function_exists(&env, name) {
            return Err(CompileError {
                message: format!("unknown function {name:?}"),
                fix: match crate::config::suggest(name, TANDEM_FUNCTIONS.iter().copied()) {
                    Some(s) => format!("did you mean {s:?}?"),
                    None => format!(
                        "use a CEL standard function or one of tandem's: {}",
                        TANDEM_FUNCTIONS.join(", ")
                    ),
                },
            });
        }
    }
    Ok(Expression {
        source: source.to_owned(),
        kind,
        program,
        env,
    })
}

fn parse_message(e: &cel::ParseErrors) -> String {
    e.errors
        .iter()
        .map(|p| format!("{} (line {}, column {})", p.msg, p.pos.0, p.pos.1))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Free identifiers, identifiers bound by comprehensions (`all`, `map`, …) and the names
/// of functions called, other than operators.
fn walk(
    e: &IdedExpr,
    free: &mut BTreeSet<String>,
    bound: &mut BTreeSet<String>,
    calls: &mut BTreeSet<String>,
) {
    match &e.expr {
        Expr::Unspecified | Expr::Literal(_) => {}
        Expr::Ident(name) => {
            if !name.starts_with('@') {
                free.insert(name.clone());
            }
        }
        Expr::Call(call) => {
            let operator = call
                .func_name
                .starts_with(|c: char| !(c.is_alphanumeric() || c == '.'));
            if !operator {
                calls.insert(call.func_name.clone());
            }
            if let Some(t) = &call.target {
                walk(t, free, bound, calls);
            }
            for a in &call.args {
                walk(a, free, bound, calls);
            }
        }
        Expr::Comprehension(c) => {
            bound.insert(c.iter_var.clone());
            bound.extend(c.iter_var2.clone());
            bound.insert(c.accu_var.clone());
            for x in [
                &c.iter_range,
                &c.accu_init,
                &c.loop_cond,
                &c.loop_step,
                &c.result,
            ] {
                walk(x, free, bound, calls);
            }
        }
        Expr::List(l) => {
            for x in &l.elements {
                walk(x, free, bound, calls);
            }
        }
        Expr::Select(s) => walk(&s.operand, free, bound, calls),
        Expr::Map(m) => {
            for entry in &m.entries {
                walk_entry(&entry.expr, free, bound, calls);
            }
        }
        Expr::Struct(s) => {
            for entry in &s.entries {
                walk_entry(&entry.expr, free, bound, calls);
            }
        }
    }
}

fn walk_entry(
    e: &EntryExpr,
    free: &mut BTreeSet<String>,
    bound: &mut BTreeSet<String>,
    calls: &mut BTreeSet<String>,
) {
    match e {
        EntryExpr::StructField(f) => walk(&f.value, free, bound, calls),
        EntryExpr::MapEntry(m) => {
            walk(&m.key, free, bound, calls);
            walk(&m.value, free, bound, calls);
        }
    }
}

/// CEL has no "is this function declared" query; calling it without arguments answers
/// the same question: an unknown name is an undeclared reference, a known one fails on
/// its arguments instead.
fn function_exists(env: &Arc<Env>, name: &str) -> bool {
    let undeclared = |src: &str| match env.compile(src) {
        Ok(p) => matches!(
            p.execute(&Context::with_env(Arc::clone(env))),
            Err(ExecutionError::UndeclaredReference(r)) if r.as_str() == name
        ),
        Err(_) => true,
    };
    !(undeclared(&format!("{name}()")) && undeclared(&format!("null.{name}()")))
}

/// The variables of one row image, converted once and shared by every expression that
/// reads the row.
#[derive(Clone, Debug)]
pub struct RowVars(cel::Value);

impl RowVars {
    /// `row` for `schema`'s columns; cells an expression cannot read are left out.
    pub fn new(schema: &TableSchema, row: &Row) -> RowVars {
        let mut map = HashMap::with_capacity(schema.columns.len());
        for (col, cell) in schema.columns.iter().zip(&row.0) {
            if let Cell::Value(v) = cell {
                if let Ok(c) = to_cel(v) {
                    map.insert(Key::String(Arc::new(col.name.clone())), c);
                }
            }
        }
        RowVars(cel::Value::Map(Map { map: Arc::new(map) }))
    }
}

impl Expression {
    /// The expression as written in the config.
    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn kind(&self) -> ExprKind {
        self.kind
    }

    fn run(&self, row: &RowVars, value: Option<&Value>) -> Result<cel::Value, EvalError> {
        let mut ctx = Context::with_env(Arc::clone(&self.env));
        let boxed = |v: cel::Value| -> Result<Box<dyn Val>, EvalError> {
            v.try_into()
                .map_err(|e: ExecutionError| EvalError(e.to_string()))
        };
        ctx.add_variable_as_val("row", boxed(row.0.clone())?);
        if let Some(v) = value {
            ctx.add_variable_as_val("value", boxed(to_cel(v).map_err(EvalError)?)?);
        }
        self.program
            .execute(&ctx)
            .map_err(|e| EvalError(e.to_string()))
    }

    /// Whether the row passes a filter.
    pub fn matches(&self, row: &RowVars) -> Result<bool, EvalError> {
        match self.run(row, None)? {
            cel::Value::Bool(b) => Ok(b),
            other => Err(EvalError(format!(
                "a where filter must be true or false, it gave a {}",
                other.type_of()
            ))),
        }
    }

    /// The value a transform computes from `value` and the row, in the canonical model,
    /// ready to be converted to the `target` column's type.
    pub fn transform(
        &self,
        value: &Value,
        row: &RowVars,
        target: &ColumnType,
    ) -> Result<Value, EvalError> {
        from_cel(self.run(row, Some(value))?, target).map_err(EvalError)
    }
}

/// A canonical value as a CEL value (see the module docs for the table).
pub fn to_cel(v: &Value) -> Result<cel::Value, String> {
    use cel::Value as C;
    Ok(match v {
        Value::Null => C::Null,
        Value::Bool(b) => C::Bool(*b),
        Value::Int(i) => C::Int(*i),
        Value::UInt(u) => C::UInt(*u),
        Value::Float(x) => C::Float(*x),
        Value::Decimal(d) => C::String(Arc::new(d.to_plain_string())),
        Value::Text(s) | Value::Json(s) => C::String(Arc::new(s.clone())),
        Value::Uuid(u) => C::String(Arc::new(u.to_string())),
        Value::Bytes(b) => C::Bytes(Arc::new(b.clone())),
        Value::Date(d) => C::String(Arc::new(d.format("%Y-%m-%d").to_string())),
        Value::Time(t) => C::String(Arc::new(t.format("%H:%M:%S%.6f").to_string())),
        Value::Timestamp(t) => C::Timestamp(t.and_utc().fixed_offset()),
        Value::TimestampTz(t) => C::Timestamp(t.fixed_offset()),
        Value::Unsupported { type_name, .. } => {
            return Err(format!(
                "a value of type {type_name} cannot be read by an expression"
            ))
        }
    })
}

/// A CEL result as a canonical value for a column of type `target`.
pub fn from_cel(v: cel::Value, target: &ColumnType) -> Result<Value, String> {
    use cel::Value as C;
    Ok(match v {
        C::Null => Value::Null,
        C::Bool(b) => Value::Bool(b),
        C::Int(i) => Value::Int(i),
        C::UInt(u) => Value::UInt(u),
        C::Float(x) => Value::Float(x),
        C::Bytes(b) => Value::Bytes(Arc::unwrap_or_clone(b)),
        C::Timestamp(t) => Value::TimestampTz(t.with_timezone(&Utc)),
        C::String(s) => {
            let s = Arc::unwrap_or_clone(s);
            match target {
                // Decimals, dates and times travel as strings; bring them home exactly.
                ColumnType::Decimal { .. } => {
                    Value::Decimal(s.trim().parse::<BigDecimal>().map_err(|_| {
                        format!("the expression gave {s:?}, which is not a decimal number")
                    })?)
                }
                ColumnType::Date { .. } => Value::Date(
                    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
                        .map_err(|_| format!("the expression gave {s:?}, which is not a date"))?,
                ),
                ColumnType::Time { .. } => {
                    Value::Time(NaiveTime::parse_from_str(s.trim(), "%H:%M:%S%.f").map_err(
                        |_| format!("the expression gave {s:?}, which is not a time of day"),
                    )?)
                }
                _ => Value::Text(s),
            }
        }
        other => {
            return Err(format!(
                "the expression gave a {}, which no column can store",
                other.type_of()
            ))
        }
    })
}

impl fmt::Debug for Expression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Expression")
            .field("source", &self.source)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for ExprKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExprKind::Filter => "where filter",
            ExprKind::Transform => "transform",
        })
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;
    use crate::change::{ColumnSchema, TableId};

    fn schema(cols: &[&str]) -> TableSchema {
        TableSchema {
            table: TableId::new("shop", "order_lines"),
            columns: cols
                .iter()
                .map(|c| ColumnSchema {
                    name: (*c).to_owned(),
                    column_type: ColumnType::Json,
                    native_type: "x".into(),
                    nullable: true,
                })
                .collect(),
            key: vec![0],
        }
    }

    fn vars(pairs: &[(&str, Value)]) -> RowVars {
        let names: Vec<&str> = pairs.iter().map(|(n, _)| *n).collect();
        RowVars::new(
            &schema(&names),
            &Row::from_values(pairs.iter().map(|(_, v)| v.clone())),
        )
    }

    fn text() -> ColumnType {
        ColumnType::Text {
            max_chars: None,
            allows_nul: false,
        }
    }

    fn transform(src: &str, value: Value, target: &ColumnType) -> Result<Value, EvalError> {
        compile(src, ExprKind::Transform)
            .expect("compiles")
            .transform(&value, &vars(&[("v", value.clone())]), target)
    }

    #[test]
    fn expressions_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Expression>();
        check::<RowVars>();
    }

    #[test]
    fn filter_reads_columns_of_the_row() {
        let f = compile("row.qty > 0 && row.status != 'void'", ExprKind::Filter).expect("ok");
        let row =
            |q: i64, s: &str| vars(&[("qty", Value::Int(q)), ("status", Value::Text(s.into()))]);
        assert_eq!(f.matches(&row(2, "paid")), Ok(true));
        assert_eq!(f.matches(&row(0, "paid")), Ok(false));
        assert_eq!(f.matches(&row(3, "void")), Ok(false));
    }

    #[test]
    fn filter_must_give_a_boolean() {
        let f = compile("row.qty", ExprKind::Filter).expect("ok");
        let err = f.matches(&vars(&[("qty", Value::Int(1))])).unwrap_err();
        assert!(err.0.contains("must be true or false"), "{err}");
    }

    #[test]
    fn decimals_pass_through_digit_for_digit() {
        let d = BigDecimal::from_str("12345678901234567890.123456789012").expect("dec");
        let target = ColumnType::Decimal {
            precision: Some(38),
            scale: Some(12),
        };
        assert_eq!(
            transform("value", Value::Decimal(d.clone()), &target),
            Ok(Value::Decimal(d))
        );
        // Trailing zeros are kept as text too.
        assert_eq!(
            to_cel(&Value::Decimal(BigDecimal::from_str("0.10").expect("dec"))),
            Ok(cel::Value::String(Arc::new("0.10".into())))
        );
        assert!(transform("'twelve'", Value::Null, &target)
            .unwrap_err()
            .0
            .contains("not a decimal"));
    }

    #[test]
    fn decimals_compare_through_double_when_asked() {
        let f = compile("double(row.price) >= 9.5", ExprKind::Filter).expect("ok");
        let price =
            |s: &str| vars(&[("price", Value::Decimal(BigDecimal::from_str(s).expect("d")))]);
        assert_eq!(f.matches(&price("9.50")), Ok(true));
        assert_eq!(f.matches(&price("9.49")), Ok(false));
    }

    #[test]
    fn timestamps_are_cel_timestamps() {
        let t = chrono::DateTime::parse_from_rfc3339("2024-05-01T10:00:00.123456Z")
            .expect("ts")
            .with_timezone(&Utc);
        let target = ColumnType::TimestampTz {
            fsp: 6,
            min: NaiveDate::MIN.and_hms_opt(0, 0, 0).expect("t"),
            max: NaiveDate::MAX.and_hms_opt(0, 0, 0).expect("t"),
        };
        assert_eq!(
            transform("value + duration('1h')", Value::TimestampTz(t), &target),
            Ok(Value::TimestampTz(t + chrono::Duration::hours(1)))
        );
        let f = compile(
            "row.at > timestamp('2024-01-01T00:00:00Z')",
            ExprKind::Filter,
        )
        .expect("ok");
        assert_eq!(
            f.matches(&vars(&[("at", Value::Timestamp(t.naive_utc()))])),
            Ok(true)
        );
    }

    #[test]
    fn dates_and_bytes_round_trip() {
        let d = NaiveDate::from_ymd_opt(2024, 2, 29).expect("date");
        let target = ColumnType::Date {
            min: NaiveDate::MIN,
            max: NaiveDate::MAX,
        };
        assert_eq!(
            transform("value", Value::Date(d), &target),
            Ok(Value::Date(d))
        );
        let bytes = ColumnType::Bytes { max_len: None };
        assert_eq!(
            transform("value", Value::Bytes(vec![0, 255]), &bytes),
            Ok(Value::Bytes(vec![0, 255]))
        );
    }

    #[test]
    fn masking_helpers() {
        let t = text();
        let s = |x: &str| Value::Text(x.into());
        assert_eq!(
            transform("mask_email(value)", s("jane.doe@example.com"), &t),
            Ok(s("j***@example.com"))
        );
        assert_eq!(
            transform("mask_email(value)", s("no-at-sign"), &t),
            Ok(s("***"))
        );
        assert_eq!(transform("redact(value)", s("4111 1111"), &t), Ok(s("***")));
        assert_eq!(
            transform("sha256(value)", s("abc"), &t),
            Ok(s(
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
            ))
        );
        assert_eq!(
            transform("sha256(value)", Value::Bytes(b"abc".to_vec()), &t),
            Ok(s(
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
            ))
        );
        assert_eq!(transform("lower(value)", s("ÄBC"), &t), Ok(s("äbc")));
        assert_eq!(transform("upper(value)", s("straße"), &t), Ok(s("STRASSE")));
        assert_eq!(transform("value.lowerAscii()", s("ABC"), &t), Ok(s("abc")));
        // NULLs have nothing to hide: they stay NULL instead of failing the row.
        for f in ["mask_email", "redact", "sha256", "lower", "upper"] {
            assert_eq!(
                transform(&format!("{f}(value)"), Value::Null, &t),
                Ok(Value::Null)
            );
        }
    }

    #[test]
    fn transform_may_read_other_columns() {
        let e = compile("row.first + ' ' + row.last", ExprKind::Transform).expect("ok");
        let row = vars(&[
            ("first", Value::Text("Ada".into())),
            ("last", Value::Text("L".into())),
        ]);
        assert_eq!(
            e.transform(&Value::Null, &row, &text()),
            Ok(Value::Text("Ada L".into()))
        );
    }

    #[test]
    fn runtime_type_error_is_an_eval_error() {
        let err = transform("mask_email(value)", Value::Int(7), &text()).unwrap_err();
        assert!(err.0.contains("mask_email"), "{err}");
        let err = compile("row.missing == 1", ExprKind::Filter)
            .expect("ok")
            .matches(&vars(&[("qty", Value::Int(1))]))
            .unwrap_err();
        assert!(err.0.contains("missing"), "{err}");
    }

    #[test]
    fn unsupported_values_are_not_readable() {
        let v = Value::Unsupported {
            type_name: "geometry".into(),
            text: "POINT(1 2)".into(),
        };
        let err = transform("value", v.clone(), &text()).unwrap_err();
        assert!(err.0.contains("geometry"), "{err}");
        // Absent from `row`, so reading it fails rather than seeing a NULL.
        let f = compile("row.shape == null", ExprKind::Filter).expect("ok");
        assert!(f.matches(&vars(&[("shape", v)])).is_err());
    }

    #[test]
    fn compile_errors_say_what_and_how() {
        let e = compile("row.qty >", ExprKind::Filter).unwrap_err();
        assert!(e.message.starts_with("does not compile"), "{e:?}");
        assert!(e.message.contains("line 1"), "{e:?}");
        let e = compile("rwo.qty > 0", ExprKind::Filter).unwrap_err();
        assert_eq!(e.message, "unknown variable \"rwo\"");
        assert_eq!(e.fix, "did you mean \"row\"?");
        let e = compile("value > 0", ExprKind::Filter).unwrap_err();
        assert!(e.fix.contains("row.<column>"), "{e:?}");
        let e = compile("sha265(value)", ExprKind::Transform).unwrap_err();
        assert_eq!(e.message, "unknown function \"sha265\"");
        assert_eq!(e.fix, "did you mean \"sha256\"?");
    }

    #[test]
    fn standard_library_and_macros_compile() {
        for src in [
            "size(value) > 3 ? value.substring(0, 3) : value",
            "row.tags.exists(t, t == 'vip')",
            "has(row.qty) && int(row.qty) > 0",
            "value.matches('^[a-z]+$') ? value : redact(value)",
            "type(value) == string",
            "string(value).startsWith('x')",
        ] {
            compile(src, ExprKind::Transform).unwrap_or_else(|e| panic!("{src}: {e:?}"));
        }
    }
}
