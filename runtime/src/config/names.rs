//! Host-name rules (`[[name]]`): host names matching a regular expression resolve,
//! without DNS, to a synthetic address that connects to a RINA application.
//!
//! ```toml
//! [[name]]
//! match = '^(?P<app>[a-z0-9-]+)\.rina$'   # the whole (lower-cased) host name must match
//! dif = "net"
//! app = "{app}"                           # captures by name or number, {name}, {port}
//! ```
//!
//! The application name is filled when the name is resolved (`{name}` is the host
//! name, `{app}` or `{1}` a capture) and completed when the program connects
//! (`{port}`). The synthetic address is a function of the host name
//! ([`crate::synthetic::host_address`]), in `127.64.0.0/10`: it is only ever reached on loopback, and a
//! `connect` to it goes to RINA through the rule.

use regex::Regex;
use rina_core::name::NameError;
use rina_core::ApplicationName;

use super::{AppTemplate, Rule};

/// One `[[name]]` rule.
#[derive(Clone, Debug)]
pub struct NameRule {
    /// The host names it matches, anchored at both ends.
    pub pattern: Regex,
    /// Where a connect to a resolved name goes; `target.app` is the template.
    pub rule: Rule,
}

impl PartialEq for NameRule {
    fn eq(&self, other: &Self) -> bool {
        self.pattern.as_str() == other.pattern.as_str() && self.rule == other.rule
    }
}

/// Why a template cannot be filled from a pattern's captures.
pub(super) fn check_template(pattern: &Regex, template: &AppTemplate) -> Result<(), String> {
    for field in template.fields() {
        let known = pattern.capture_names().flatten().any(|n| n == field)
            || field
                .parse::<usize>()
                .is_ok_and(|i| i < pattern.captures_len());
        if !known {
            let groups: Vec<&str> = pattern.capture_names().flatten().collect();
            return Err(format!(
                "{{{field}}} is not filled in: use {{name}}, {{port}}, a group number below {}{}",
                pattern.captures_len(),
                if groups.is_empty() {
                    String::new()
                } else {
                    format!(" or a named group ({})", groups.join(", "))
                }
            ));
        }
    }
    Ok(())
}

/// Why a template gives no valid application name whatever host fills it: filled with
/// the shortest text each field can take (`{port}` one digit, `{name}` one character,
/// a capture nothing), it is still too long, has too many parts or a control
/// character. (A longer host name that overfills it fails its own lookup, as a name
/// that resolves to nothing.)
pub(super) fn check_shortest_fill(template: &AppTemplate) -> Result<(), String> {
    match template.shortest().parse::<ApplicationName>() {
        Ok(_) | Err(NameError::Empty) => Ok(()),
        Err(e) => Err(format!(
            "{template:?} gives no valid name even from the shortest host name: {e}",
            template = template.as_str()
        )),
    }
}

impl NameRule {
    /// The application-name template for `host` with everything but `{port}` filled
    /// in, if the rule matches the host name (compared lower-case).
    pub fn resolve(&self, host: &str) -> Option<AppTemplate> {
        let host = host.to_ascii_lowercase();
        let host = host.strip_suffix('.').unwrap_or(&host);
        let caps = self.pattern.captures(host)?;
        Some(self.rule.target.app.for_lookup(host, &caps))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AddrPattern, DifIndex, RuleTarget};

    fn rule(pattern: &str, app: &str) -> NameRule {
        NameRule {
            pattern: Regex::new(&format!("^(?:{pattern})$")).unwrap(),
            rule: Rule {
                pattern: AddrPattern::parse("*:*").unwrap(),
                proto: None,
                target: RuleTarget {
                    dif: DifIndex(0),
                    app: AppTemplate::for_host(app).unwrap(),
                    local_app: None,
                    pool: false,
                    peers: Default::default(),
                },
                line: 1,
            },
        }
    }

    #[test]
    fn names_fill_templates() {
        let resolved = |r: &NameRule, h: &str| r.resolve(h).map(|t| t.as_str().to_owned());
        let r = rule(r"(?P<app>[a-z0-9-]+)\.rina", "{app}");
        assert_eq!(resolved(&r, "echo.rina").as_deref(), Some("echo"));
        assert_eq!(
            resolved(&r, "Echo.RINA.").as_deref(),
            Some("echo"),
            "case, root dot"
        );
        assert_eq!(resolved(&r, "echo.rina.example"), None, "anchored");
        assert_eq!(resolved(&r, "x.echo.rina"), None);
        let r = rule(r"([a-z]+)\.([a-z]+)\.svc", "{2}-{1}:{port}@{name}");
        assert_eq!(
            resolved(&r, "web.prod.svc").as_deref(),
            Some("prod-web:{port}@web.prod.svc")
        );
    }

    #[test]
    fn templates_are_checked() {
        let re = Regex::new(r"^(?P<app>[a-z]+)\.rina$").unwrap();
        let check = |t: &str| AppTemplate::for_host(t).and_then(|t| check_template(&re, &t));
        assert!(check("{app}-{port}-{name}-{1}-{0}").is_ok());
        let e = check("{host}").unwrap_err();
        assert!(
            e.contains("{host}") && e.contains("named group (app)"),
            "{e}"
        );
        assert!(check("{2}").is_err());
        assert!(check("{app").is_err());
        assert!(check("app}").is_err());
    }
}
