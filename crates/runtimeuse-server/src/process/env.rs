//! The environment a child gets: the runtime's own, minus what it must not hand on.
//!
//! Children never see the runtime's own `RUNTIMEUSE_*` settings (its token among them),
//! nor any variable holding a credential the runtime was told about
//! ([`withhold_secret`]). Variables that are not valid UTF-8 are passed on untouched:
//! they are data of the machine, not ours to judge, and must not make a spawn fail.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt as _;
use std::sync::RwLock;

/// Prefix of the runtime's own settings; variables starting with it are never inherited.
pub const WITHHELD_PREFIX: &str = "RUNTIMEUSE_";

/// Credentials (values) and variable names registered with [`withhold_secret`] and
/// [`withhold_variable`]: process-wide, because the runtime's environment is.
static WITHHELD: RwLock<Withheld> = RwLock::new(Withheld {
    values: Vec::new(),
    names: Vec::new(),
});

struct Withheld {
    values: Vec<Vec<u8>>,
    names: Vec<OsString>,
}

/// Registers a credential of the runtime (its token, say): from now on no inherited
/// variable whose value contains it reaches a child. Empty values are ignored.
pub fn withhold_secret(value: &str) {
    if value.is_empty() {
        return;
    }
    if let Ok(mut withheld) = WITHHELD.write()
        && !withheld
            .values
            .iter()
            .any(|known| known == value.as_bytes())
    {
        withheld.values.push(value.as_bytes().to_vec());
    }
}

/// Registers a variable name that is never inherited by children (on top of every
/// `RUNTIMEUSE_*` name).
pub fn withhold_variable(name: &str) {
    if let Ok(mut withheld) = WITHHELD.write()
        && !withheld.names.iter().any(|known| known == name)
    {
        withheld.names.push(OsString::from(name));
    }
}

/// An explicit environment for a child: exactly these variables, nothing else.
///
/// ```
/// use runtimeuse_server::process::Environment;
///
/// let mut env = Environment::inherited();
/// env.set("GREETING", "hello");
/// assert_eq!(env.get("GREETING").and_then(|v| v.to_str()), Some("hello"));
/// assert!(env.iter().all(|(name, _)| !name.to_string_lossy().starts_with("RUNTIMEUSE_")));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Environment {
    vars: BTreeMap<OsString, OsString>,
}

impl Environment {
    /// No variables at all.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The runtime's environment minus `RUNTIMEUSE_*`, the names registered with
    /// [`withhold_variable`] and every variable whose value contains a credential
    /// registered with [`withhold_secret`].
    pub fn inherited() -> Self {
        Self::filtered(std::env::vars_os())
    }

    /// `vars` minus what [`inherited`](Self::inherited) leaves out.
    pub fn filtered(vars: impl IntoIterator<Item = (OsString, OsString)>) -> Self {
        let withheld = WITHHELD.read();
        let (values, names): (&[Vec<u8>], &[OsString]) = match &withheld {
            Ok(w) => (&w.values, &w.names),
            Err(_) => (&[], &[]),
        };
        let vars = vars
            .into_iter()
            .filter(|(name, value)| {
                !name.as_bytes().starts_with(WITHHELD_PREFIX.as_bytes())
                    && !names.iter().any(|n| n == name)
                    && !values
                        .iter()
                        .any(|secret| contains(value.as_bytes(), secret))
            })
            .collect();
        Self { vars }
    }

    /// Sets one variable (replacing it if present).
    pub fn set(&mut self, name: impl Into<OsString>, value: impl Into<OsString>) {
        self.vars.insert(name.into(), value.into());
    }

    /// Sets every variable of `vars` (the request's `env`, say), over what is there.
    pub fn extend<K, V>(&mut self, vars: impl IntoIterator<Item = (K, V)>)
    where
        K: Into<OsString>,
        V: Into<OsString>,
    {
        for (name, value) in vars {
            self.set(name, value);
        }
    }

    /// Removes one variable.
    pub fn remove(&mut self, name: impl AsRef<OsStr>) {
        self.vars.remove(name.as_ref());
    }

    /// One variable's value.
    pub fn get(&self, name: impl AsRef<OsStr>) -> Option<&OsStr> {
        self.vars.get(name.as_ref()).map(OsString::as_os_str)
    }

    /// Every variable, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&OsStr, &OsStr)> {
        self.vars
            .iter()
            .map(|(k, v)| (k.as_os_str(), v.as_os_str()))
    }

    /// The variables whose name and value are both UTF-8 (for agents that speak JSON);
    /// the others are left out, never replaced.
    pub fn to_utf8(&self) -> BTreeMap<String, String> {
        self.vars
            .iter()
            .filter_map(|(k, v)| Some((k.to_str()?.to_owned(), v.to_str()?.to_owned())))
            .collect()
    }
}

impl<K: Into<OsString>, V: Into<OsString>> FromIterator<(K, V)> for Environment {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut env = Self::empty();
        env.extend(iter);
        env
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_settings_and_credentials_are_left_out() {
        withhold_secret("s3cr3t-env-unit-test");
        let env = Environment::filtered([
            (OsString::from("RUNTIMEUSE_TOKEN"), OsString::from("x")),
            (OsString::from("PATH"), OsString::from("/bin")),
            (
                OsString::from("COPY"),
                OsString::from("a-s3cr3t-env-unit-test-b"),
            ),
        ]);
        assert_eq!(env.iter().count(), 1);
        assert_eq!(env.get("PATH"), Some(OsStr::new("/bin")));
    }

    #[test]
    fn non_utf8_values_pass_through_but_not_into_the_utf8_view() {
        let bad = OsStr::from_bytes(b"\xff\xfe").to_owned();
        let env = Environment::filtered([
            (OsString::from("BAD"), bad.clone()),
            (OsString::from("GOOD"), OsString::from("ok")),
        ]);
        assert_eq!(env.get("BAD"), Some(bad.as_os_str()));
        assert_eq!(env.to_utf8().len(), 1);
    }
}
