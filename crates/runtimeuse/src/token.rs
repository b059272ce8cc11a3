//! The runtime's token: from `--token`/`RUNTIMEUSE_TOKEN` or `--token-file`, never empty.

use std::path::Path;

use anyhow::{Context, bail};
use runtimeuse_server::redact::Redactor;

/// Name of the environment variable `--token` is read from.
const TOKEN_ENV: &str = "RUNTIMEUSE_TOKEN";

/// The token to require, if any.
///
/// # Errors
///
/// An empty token (flag, variable or file) is refused rather than silently serving
/// without authentication; so is a token file that cannot be read or is not UTF-8.
pub fn resolve(flag: Option<&str>, file: Option<&Path>) -> anyhow::Result<Option<String>> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the token file {}", path.display()))?;
        let token = text.strip_suffix('\n').unwrap_or(&text);
        let token = token.strip_suffix('\r').unwrap_or(token);
        if token.trim().is_empty() {
            bail!(
                "the token file {} is empty: refusing to serve without authentication",
                path.display()
            );
        }
        return Ok(Some(token.to_owned()));
    }
    let empty_env = std::env::var_os(TOKEN_ENV).is_some_and(|v| v.is_empty());
    match flag {
        Some(token) if !token.trim().is_empty() => Ok(Some(token.to_owned())),
        Some(_) => bail!(
            "the token (--token or {TOKEN_ENV}) is empty: refusing to serve without \
             authentication; set a token, or unset it to serve without one"
        ),
        None if empty_env => bail!(
            "{TOKEN_ENV} is set but empty: refusing to serve without authentication; set a \
             token, or unset the variable to serve without one"
        ),
        None => Ok(None),
    }
}

/// A redactor for the token (empty without one).
pub fn redactor(token: Option<&str>) -> Redactor {
    token.map(|t| Redactor::new([t])).unwrap_or_default()
}
