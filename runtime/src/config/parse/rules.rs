//! Validation of the rules: `[[connect]]`, `[[listen]]` and `[[name]]` entries (the
//! address patterns, the DIF each names, application-name templates) and
//! `[default]`.

use toml::Spanned;

use super::raw::{RawConnect, RawDefault, RawListen, RawName};
use super::{list_or_none, one_line, Validator, R};
use crate::config::names::{self, NameRule};
use crate::config::rules::{AddrPattern, Proto, RuleTarget};
use crate::config::{AppTemplate, DefaultPolicy, DifConfig, DifIndex, DifKind, Rule};

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
            let app = self.template(&r.app)?;
            let local_app = r.local_app.as_ref().map(|l| self.name(l)).transpose()?;
            connect.push(Rule {
                pattern,
                proto: self.proto(r.proto.as_ref())?,
                target: RuleTarget {
                    dif,
                    app,
                    local_app,
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
            let app = self.template(&r.app)?;
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
                    app,
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
            let app = AppTemplate::for_host(r.app.get_ref())
                .and_then(|t| names::check_template(&pattern, &t).map(|()| t))
                .and_then(|t| names::check_shortest_fill(&t).map(|()| t))
                .map_err(|e| {
                    self.error(
                        r.app.span(),
                        format!("invalid application-name template: {e}"),
                    )
                })?;
            let local_app = r.local_app.as_ref().map(|l| self.name(l)).transpose()?;
            names.push(NameRule {
                pattern,
                rule: Rule {
                    pattern: AddrPattern::parse("*:*").expect("the any-address pattern"),
                    proto: self.proto(r.proto.as_ref())?,
                    target: RuleTarget {
                        dif,
                        app,
                        local_app,
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
    pub(super) fn normal_dif(&self, dif: &Spanned<String>, difs: &[DifConfig]) -> R<DifIndex> {
        let at = difs.iter().position(|d| d.name == *dif.get_ref());
        match at.map(|i| (i, &difs[i])) {
            Some((
                i,
                DifConfig {
                    kind: DifKind::Normal(_) | DifKind::Host,
                    ..
                },
            )) => Ok(DifIndex(i)),
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

    pub(super) fn proto(&self, s: Option<&Spanned<String>>) -> R<Option<Proto>> {
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

    /// An application-name template, checked by filling it with the longest text
    /// any address and port give: if that is a valid name, every call's is (names only
    /// fail on length, `|` or control characters).
    fn template(&self, s: &Spanned<String>) -> R<AppTemplate> {
        let t = s.get_ref();
        let template = AppTemplate::for_address(t).map_err(|_| {
            self.error(
                s.span(),
                format!("{t:?}: only {{port}} and {{addr}} can be filled in"),
            )
        })?;
        for sample in [
            "255.255.255.255:65535",
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
        ] {
            template
                .fill(sample.parse().expect("sample address"))
                .map_err(|e| {
                    self.error(s.span(), format!("invalid application name {t:?}: {e}"))
                })?;
        }
        Ok(template)
    }
}
