//! Application naming: the four-part RINA application name.
//!
//! A name is a process name, a process instance, an entity name and an entity
//! instance. Only the process name is required. The text form joins the parts with
//! `|` (`server|1|data|`), trailing empty parts may be left out (`echo`).

use core::fmt;
use core::str::FromStr;

/// The longest part of a name, in bytes (keeps management messages small).
pub const MAX_NAME_PART: usize = 255;

/// A RINA application (or IPC process) name.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApplicationName {
    /// Application process name, e.g. `echo`.
    pub process_name: String,
    /// Application process instance.
    pub process_instance: String,
    /// Application entity name.
    pub entity_name: String,
    /// Application entity instance.
    pub entity_instance: String,
}

/// Why a text name was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The process name is empty.
    #[error("the application process name is empty")]
    Empty,
    /// More than four `|`-separated parts.
    #[error("a name has at most four '|'-separated parts")]
    TooManyParts,
    /// A part is longer than [`MAX_NAME_PART`] bytes.
    #[error("a name part is longer than {MAX_NAME_PART} bytes")]
    TooLong,
    /// A part contains a control character.
    #[error("a name part contains a control character")]
    ControlCharacter,
}

impl ApplicationName {
    /// A name with only the process name set.
    pub fn new(process_name: impl Into<String>) -> Self {
        Self {
            process_name: process_name.into(),
            ..Self::default()
        }
    }

    /// A name with process name and instance.
    pub fn with_instance(process_name: impl Into<String>, instance: impl Into<String>) -> Self {
        Self {
            process_name: process_name.into(),
            process_instance: instance.into(),
            ..Self::default()
        }
    }

    /// The four parts in order.
    pub fn parts(&self) -> [&str; 4] {
        [
            &self.process_name,
            &self.process_instance,
            &self.entity_name,
            &self.entity_instance,
        ]
    }

    /// Checks the invariants a decoded or configured name must hold.
    pub fn validate(&self) -> Result<(), NameError> {
        if self.process_name.is_empty() {
            return Err(NameError::Empty);
        }
        for p in self.parts() {
            if p.len() > MAX_NAME_PART {
                return Err(NameError::TooLong);
            }
            if p.chars().any(char::is_control) {
                return Err(NameError::ControlCharacter);
            }
        }
        Ok(())
    }
}

impl fmt::Display for ApplicationName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts = self.parts();
        let used = parts.iter().rposition(|p| !p.is_empty()).unwrap_or(0) + 1;
        for (i, p) in parts[..used].iter().enumerate() {
            if i > 0 {
                f.write_str("|")?;
            }
            f.write_str(p)?;
        }
        Ok(())
    }
}

impl FromStr for ApplicationName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        let mut parts = s.split('|');
        let mut take = || parts.next().unwrap_or("").to_owned();
        let name = Self {
            process_name: take(),
            process_instance: take(),
            entity_name: take(),
            entity_instance: take(),
        };
        if s.split('|').count() > 4 {
            return Err(NameError::TooManyParts);
        }
        name.validate()?;
        Ok(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip() {
        let n: ApplicationName = "server|1|data|".parse().unwrap();
        assert_eq!(n.process_name, "server");
        assert_eq!(n.process_instance, "1");
        assert_eq!(n.entity_name, "data");
        assert_eq!(n.to_string(), "server|1|data");
        assert_eq!(
            "echo".parse::<ApplicationName>().unwrap().to_string(),
            "echo"
        );
        assert_eq!("".parse::<ApplicationName>(), Err(NameError::Empty));
        assert_eq!(
            "a|b|c|d|e".parse::<ApplicationName>(),
            Err(NameError::TooManyParts)
        );
        assert_eq!(
            "a\n".parse::<ApplicationName>(),
            Err(NameError::ControlCharacter)
        );
    }
}
