//! Validation of the rules: `[[connect]]`, `[[listen]]` and `[[name]]` entries (the
//! address patterns, the DIF each names, application-name templates) and
//! `[default]`.

use toml::Spanned;

use super::raw::{RawConnect, RawDefault, RawListen, RawName};
use super::{list_or_none, one_line, Validator, R};
use crate::config::names::{self, NameRule};
use crate::config::rules::{AddrPattern, Proto, RuleTarget};
use crate::config::{DefaultPolicy, DifConfig, DifKind, Rule};

impl Validator<'_> {
    pub(super) fn connect_rules(
        &self,
        raw: Vec<Spanned<RawConnect>>,
        difs: &[DifConfig],
    ) -> R<Vec<Rule>> {
        let mut connect = Vec::new();
        for r in raw {
            let line = self.line_of(&r.span());
            let r = r.into_inner();
            let pattern = self.pattern(&r.to)?;
            let dif = self.normal_dif(&r.dif, difs)?;
            self.template(&r.app)?;
            if let Some(l) = &r.local_app {
                self.name(l)?;
            }
            connect.push(Rule {
                pattern,
                proto: self.proto(r.proto.as_ref())?,
                target: RuleTarget {
                    dif,
                    app: r.app.into_inner(),
                    local_app: r.local_app.map(Spanned::into_inner),
                    pool: false,
                    peers: Default::default(),
                },
                line,
            });
        }
        Ok(connect)
    }

    pub(super) fn listen_rules(
        &self,
        raw: Vec<Spanned<RawListen>>,
        difs: &[DifConfig],
    ) -> R<Vec<Rule>> {
        let mut listen = Vec::new();
        for r in raw {
            let line = self.line_of(&r.span());
            let r = r.into_inner();
            let pattern = self.pattern(&r.on)?;
            let dif = self.normal_dif(&r.dif, difs)?;
            self.template(&r.app)?;
            let peers = match &r.peers {
                None => Default::default(),
                Some(p) => p.get_ref().parse().map_err(|e| {
                    self.error(
                        p.span(),
                        format!(
                            "invalid peers {:?}: {e} (an address, or ADDRESS/PREFIX)",
                            p.get_ref()
                        ),
                    )
                })?,
            };
            listen.push(Rule {
                pattern,
                proto: self.proto(r.proto.as_ref())?,
                target: RuleTarget {
                    dif,
                    app: r.app.into_inner(),
                    local_app: None,
                    pool: r.pool.unwrap_or(false),
                    peers,
                },
                line,
            });
        }
        Ok(listen)
    }

    pub(super) fn name_rules(
        &self,
        raw: Vec<Spanned<RawName>>,
        difs: &[DifConfig],
    ) -> R<Vec<NameRule>> {
        let mut names = Vec::new();
        for r in raw {
            let line = self.line_of(&r.span());
            let r = r.into_inner();
            let text = r.pattern.get_ref();
            let pattern = regex::Regex::new(&format!("^(?:{text})$")).map_err(|e| {
                self.error(
                    r.pattern.span(),
                    format!(
                        "invalid regular expression {text:?}: {}",
                        one_line(&e.to_string())
                    ),
                )
            })?;
            let dif = self.normal_dif(&r.dif, difs)?;
            names::check_template(&pattern, r.app.get_ref())
                .and_then(|()| names::check_shortest_fill(r.app.get_ref()))
                .map_err(|e| {
                    self.error(
                        r.app.span(),
                        format!("invalid application-name template: {e}"),
                    )
                })?;
            if let Some(l) = &r.local_app {
                self.name(l)?;
            }
            names.push(NameRule {
                pattern,
                rule: Rule {
                    pattern: AddrPattern::parse("*:*").expect("the any-address pattern"),
                    proto: self.proto(r.proto.as_ref())?,
                    target: RuleTarget {
                        dif,
                        app: r.app.into_inner(),
                        local_app: r.local_app.map(Spanned::into_inner),
                        pool: false,
                        peers: Default::default(),
                    },
                    line,
                },
            });
        }
        Ok(names)
    }

    pub(super) fn default_policy(&self, raw: Option<RawDefault>) -> R<DefaultPolicy> {
        let default = match raw.and_then(|d| d.action) {
            None => DefaultPolicy::Pass,
            Some(a) => match a.get_ref().as_str() {
                "pass" => DefaultPolicy::Pass,
                "deny" => DefaultPolicy::Deny,
                other => {
                    return Err(self.error(
                        a.span(),
                        format!("unknown action {other:?} (expected \"pass\" or \"deny\")"),
                    ))
                }
            },
        };
        Ok(default)
    }

    /// The normal DIF a rule names.
    fn normal_dif(&self, dif: &Spanned<String>, difs: &[DifConfig]) -> R<String> {
        match difs.iter().find(|d| d.name == *dif.get_ref()) {
            Some(DifConfig {
                kind: DifKind::Normal(_),
                ..
            }) => Ok(dif.get_ref().clone()),
            Some(_) => Err(self.error(
                dif.span(),
                format!(
                    "DIF {:?} is a shim DIF; rules must name a normal DIF",
                    dif.get_ref()
                ),
            )),
            None => Err(self.error(
                dif.span(),
                format!(
                    "unknown DIF {:?} (declared DIFs: {})",
                    dif.get_ref(),
                    list_or_none(difs.iter().map(|d| d.name.as_str()))
                ),
            )),
        }
    }

    fn proto(&self, s: Option<&Spanned<String>>) -> R<Option<Proto>> {
        let Some(s) = s else { return Ok(None) };
        match s.get_ref().as_str() {
            "tcp" => Ok(Some(Proto::Tcp)),
            "udp" => Ok(Some(Proto::Udp)),
            other => Err(self.error(
                s.span(),
                format!(
                    "unknown proto {other:?} (expected \"tcp\" or \"udp\"; leave it out for both)"
                ),
            )),
        }
    }

    fn pattern(&self, s: &Spanned<String>) -> R<AddrPattern> {
        AddrPattern::parse(s.get_ref())
            .map_err(|e| self.error(s.span(), format!("invalid address: {e}")))
    }

    /// Checks an application-name template by filling it with sample values.
    fn template(&self, s: &Spanned<String>) -> R<()> {
        let t = s.get_ref();
        let rest = t.replace("{port}", "").replace("{addr}", "");
        if rest.contains('{') || rest.contains('}') {
            return Err(self.error(
                s.span(),
                format!("{t:?}: only {{port}} and {{addr}} can be filled in"),
            ));
        }
        let target = RuleTarget {
            dif: String::new(),
            app: t.clone(),
            local_app: None,
            pool: false,
            peers: Default::default(),
        };
        // The longest text any address and port fill in: if these give a valid name,
        // every call does (names only fail on length, `|` or control characters).
        for sample in [
            "255.255.255.255:65535",
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
        ] {
            target
                .app_for(sample.parse().expect("sample address"))
                .map_err(|e| {
                    self.error(s.span(), format!("invalid application name {t:?}: {e}"))
                })?;
        }
        Ok(())
    }
}
