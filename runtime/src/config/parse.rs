//! TOML -> [`Config`] (placeholder until the parser lands).

use std::path::Path;

use super::Config;

/// A rules file could not be read or is invalid.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

/// Reads and validates a rules file.
///
/// # Errors
/// Always, until the parser lands.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    Err(ConfigError(format!("{}: parser not yet implemented", path.display())))
}

/// Parses rules from a string.
///
/// # Errors
/// Always, until the parser lands.
pub fn parse_str(_text: &str, path: &Path) -> Result<Config, ConfigError> {
    load(path)
}
