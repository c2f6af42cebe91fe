//! Secrets: read from the environment or a file, never written in the config, never printed.
//!
//! A config names where a secret lives (`{ env = "NAME" }` or `{ file = "/run/secrets/x" }`);
//! an inline string is refused at parse time with the fix in the message. The value is held
//! in [`Secret`], whose `Debug` and `Display` print `***`, so it cannot leak into logs,
//! metrics, `/status` or error messages by accident.

use std::fmt;
use std::path::PathBuf;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// Where a secret comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(n) => write!(f, "env:{n}"),
            SecretRef::File(p) => write!(f, "file:{}", p.display()),
        }
    }
}

/// Advice shown whenever a secret is written inline.
pub const INLINE_SECRET_ADVICE: &str =
    "inline secrets are refused; write `{ env = \"NAME\" }` to read it from \
     the environment variable NAME, or `{ file = \"/run/secrets/NAME\" }` to read it from a file";

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SecretRef;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("{ env = \"NAME\" } or { file = \"PATH\" }")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<SecretRef, E> {
                Err(E::custom(INLINE_SECRET_ADVICE))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SecretRef, A::Error> {
                let mut out = None;
                while let Some(k) = map.next_key::<String>()? {
                    let r = match k.as_str() {
                        "env" => SecretRef::Env(map.next_value()?),
                        "file" => SecretRef::File(map.next_value()?),
                        other => {
                            return Err(de::Error::custom(format!(
                                "unknown key `{other}` in a secret; use `env` or `file`"
                            )))
                        }
                    };
                    if out.replace(r).is_some() {
                        return Err(de::Error::custom(
                            "a secret takes exactly one of `env` or `file`",
                        ));
                    }
                }
                out.ok_or_else(|| de::Error::custom("a secret needs `env` or `file`"))
            }
        }
        d.deserialize_any(V)
    }
}

impl SecretRef {
    /// Read the secret. A file's trailing newline is dropped (as `echo > file` writes one).
    pub fn resolve(&self) -> Result<Secret, String> {
        match self {
            SecretRef::Env(name) => std::env::var(name).map(Secret).map_err(|_| {
                format!(
                    "environment variable {name} is not set; export it or use {{ file = \"…\" }}"
                )
            }),
            SecretRef::File(path) => std::fs::read_to_string(path)
                .map(|s| Secret(s.trim_end_matches(['\n', '\r']).to_owned()))
                .map_err(|e| format!("cannot read secret file {}: {e}", path.display())),
        }
    }
}

/// A secret value. Prints as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The value, for handing to a driver. Never log the result.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn file_secret_drops_trailing_newline() {
        let dir = std::env::temp_dir().join(format!("tandem-secret-{}", std::process::id()));
        std::fs::write(&dir, "pw\n").unwrap();
        let s = SecretRef::File(dir.clone()).resolve().unwrap();
        assert_eq!(s.expose(), "pw");
        std::fs::remove_file(dir).unwrap();
    }
}
