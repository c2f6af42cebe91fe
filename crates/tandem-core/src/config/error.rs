//! Configuration errors: each names the field path, what is wrong, and the fix.

use std::fmt;

/// One problem in the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// Where: `mappings[2].columns[1].retail`.
    pub path: String,
    /// What constraint is broken, in a sentence fragment.
    pub message: String,
    /// What to change.
    pub fix: String,
}

impl ConfigError {
    pub fn new(
        path: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        ConfigError {
            path: path.into(),
            message: message.into(),
            fix: fix.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.fix.is_empty() {
            write!(f, "{}: {}", self.path, self.message)
        } else {
            write!(f, "{}: {}; {}", self.path, self.message, self.fix)
        }
    }
}

/// Every problem found, reported together so the DBA fixes them in one pass.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn one(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
    pub fn push(&mut self, e: ConfigError) {
        self.0.push(e);
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn into_result(self) -> Result<(), ConfigErrors> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The closest candidate to a misspelled name, if one is close enough to be a likely typo.
pub fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let name = name.to_lowercase();
    candidates
        .into_iter()
        .map(|c| {
            let lc = c.to_lowercase();
            let edits = strsim::osa_distance(&name, &lc);
            let close = strsim::jaro_winkler(&name, &lc) >= 0.8
                || (edits <= 2 && name.len().min(lc.len()) >= 3 && edits < name.len());
            (close, std::cmp::Reverse(edits), c)
        })
        .filter(|(close, _, _)| *close)
        .max_by_key(|(_, edits, _)| *edits)
        .map(|(_, _, c)| c)
}

/// "did you mean …" text, or a list of what is allowed.
pub(crate) fn did_you_mean(name: &str, candidates: &[&str]) -> String {
    match suggest(name, candidates.iter().copied()) {
        Some(s) => format!("did you mean \"{s}\"?"),
        None if candidates.is_empty() => String::new(),
        None => format!("expected one of: {}", candidates.join(", ")),
    }
}

/// Turn a TOML/serde error into a config error: the line, the message, and a suggestion
/// for unknown keys.
pub(crate) fn from_toml(e: &toml::de::Error) -> ConfigError {
    let msg = e.message().to_owned();
    let fix = unknown_field_fix(&msg).unwrap_or_else(|| {
        if msg.contains(super::secret::INLINE_SECRET_ADVICE) {
            String::new()
        } else {
            "see configs/reference.toml for the expected shape".to_owned()
        }
    });
    let path = e
        .to_string()
        .lines()
        .next()
        .unwrap_or("config")
        .trim_start_matches("TOML parse error at ")
        .to_owned();
    ConfigError::new(path, msg, fix)
}

fn unknown_field_fix(msg: &str) -> Option<String> {
    // serde: "unknown field `passwrd`, expected one of `kind`, `url`, …"
    let rest = msg.strip_prefix("unknown field `")?;
    let (field, rest) = rest.split_once('`')?;
    let expected: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    Some(did_you_mean(field, &expected))
}
