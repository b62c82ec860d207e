//! Application-name templates, split once when the rules load: literal text and the
//! fields a call fills in (`{port}`, `{addr}`; in a `[[name]]` rule also `{name}` and
//! the pattern's captures). Matching a call fills the pieces; a template with no
//! field is an application name parsed once, handed out as it is.

use std::fmt;
use std::net::SocketAddr;

use regex::Captures;
use rina_core::name::NameError;
use rina_core::ApplicationName;

/// One piece of a template.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    /// The call's port.
    Port,
    /// The call's IP address (an IPv4-mapped IPv6 address as plain IPv4).
    Addr,
    /// The host name looked up (`[[name]]` rules).
    Host,
    /// A capture of the host-name pattern, by number or name (`[[name]]` rules).
    Capture(String),
}

impl Piece {
    /// The text this piece gives: `port` and `addr` from a call, `host` and `caps`
    /// from a lookup.
    fn text<'a>(
        &'a self,
        port: &'a str,
        addr: &'a str,
        host: &'a str,
        caps: Option<&Captures<'a>>,
    ) -> &'a str {
        match self {
            Self::Text(t) => t,
            Self::Port => port,
            Self::Addr => addr,
            Self::Host => host,
            Self::Capture(c) => {
                let m = match (caps, c.parse::<usize>()) {
                    (Some(caps), Ok(n)) => caps.get(n),
                    (Some(caps), Err(_)) => caps.name(c),
                    (None, _) => None,
                };
                m.map_or("", |m| m.as_str())
            }
        }
    }
}

/// An application-name template (`app = "svc-{port}"`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppTemplate {
    /// As written, for messages and `rina check`.
    text: String,
    pieces: Vec<Piece>,
    /// The name, when the template has no field.
    fixed: Option<ApplicationName>,
}

impl AppTemplate {
    /// A connect or listen rule's template: only `{port}` and `{addr}` are filled in.
    ///
    /// # Errors
    /// A brace that opens or closes no known field.
    pub fn for_address(text: &str) -> Result<Self, String> {
        let t = Self::split(text)?;
        if let Some(f) = t.pieces.iter().find_map(|p| match p {
            Piece::Host => Some("name"),
            Piece::Capture(c) => Some(c.as_str()),
            _ => None,
        }) {
            return Err(format!(
                "{text:?}: only {{port}} and {{addr}} can be filled in, not {{{f}}}"
            ));
        }
        Ok(t)
    }

    /// A `[[name]]` rule's template: `{name}`, `{port}` and captures by number or name
    /// (which captures exist the caller checks against its pattern).
    ///
    /// # Errors
    /// A brace that opens or closes no field.
    pub fn for_host(text: &str) -> Result<Self, String> {
        let t = Self::split(text)?;
        if t.pieces.contains(&Piece::Addr) {
            return Err(format!(
                "{text:?}: {{addr}} is not filled in by a name rule"
            ));
        }
        Ok(t)
    }

    fn split(text: &str) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(i) = rest.find(['{', '}']) {
            if rest.as_bytes()[i] == b'}' {
                return Err(format!("{text:?}: '}}' without '{{'"));
            }
            if i > 0 {
                pieces.push(Piece::Text(rest[..i].to_owned()));
            }
            let after = &rest[i + 1..];
            let end = after
                .find('}')
                .ok_or_else(|| format!("{text:?}: '{{' without '}}'"))?;
            pieces.push(match &after[..end] {
                "port" => Piece::Port,
                "addr" => Piece::Addr,
                "name" => Piece::Host,
                f if f.contains('{') => return Err(format!("{text:?}: '{{' inside '{{...}}'")),
                f => Piece::Capture(f.to_owned()),
            });
            rest = &after[end + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        let mut t = Self {
            text: text.to_owned(),
            pieces,
            fixed: None,
        };
        t.fix();
        Ok(t)
    }

    /// A template with no field left is its name, parsed once.
    fn fix(&mut self) {
        if self.pieces.iter().all(|p| matches!(p, Piece::Text(_))) {
            self.fixed = self.text_of_pieces().parse().ok();
        }
    }

    fn text_of_pieces(&self) -> String {
        let mut s = String::new();
        for p in &self.pieces {
            if let Piece::Text(t) = p {
                s.push_str(t);
            }
        }
        s
    }

    /// The captures and named fields a `[[name]]` template uses (to check against the
    /// pattern's groups).
    pub(crate) fn fields(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Capture(c) => Some(c.as_str()),
            _ => None,
        })
    }

    /// The text each field gives: `port` and `addr` from the call, `host` and
    /// captures from a lookup.
    fn render(&self, port: &str, addr: &str, host: &str, caps: Option<&Captures<'_>>) -> String {
        let mut out = String::with_capacity(self.text.len() + 16);
        for p in &self.pieces {
            out.push_str(p.text(port, addr, host, caps));
        }
        out
    }

    /// The application name for a call to `addr`.
    ///
    /// # Errors
    /// If the filled-in text is not a valid name. For a template from a loaded rules
    /// file this cannot happen: templates are checked at load time with the longest
    /// addresses and ports there are.
    pub fn fill(&self, addr: SocketAddr) -> Result<ApplicationName, NameError> {
        if let Some(n) = &self.fixed {
            return Ok(n.clone());
        }
        let ip = addr.ip().to_canonical().to_string();
        self.render(&addr.port().to_string(), &ip, "", None).parse()
    }

    /// A `[[name]]` template with the host name and its captures filled in: what is
    /// left is `{port}`, filled at connect.
    pub(crate) fn for_lookup(&self, host: &str, caps: &Captures<'_>) -> Self {
        let mut pieces = Vec::new();
        let mut text = String::new();
        for p in &self.pieces {
            match p {
                Piece::Port => {
                    if !text.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut text)));
                    }
                    pieces.push(Piece::Port);
                }
                Piece::Addr => {}
                other => text.push_str(other.text("", "", host, Some(caps))),
            }
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        let mut t = Self {
            text: String::new(),
            pieces,
            fixed: None,
        };
        t.text = t.render("{port}", "", "", None);
        t.fix();
        t
    }

    /// The template with every field filled by the shortest text it can take
    /// (`{port}` one digit, `{name}` one character, a capture nothing).
    pub(crate) fn shortest(&self) -> String {
        self.render("1", "", "x", None)
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for AppTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(t: &str, a: &str) -> String {
        AppTemplate::for_address(t)
            .unwrap()
            .fill(a.parse().unwrap())
            .unwrap()
            .to_string()
    }

    #[test]
    fn fields_fill_and_fixed_names_are_parsed_once() {
        assert_eq!(fill("svc-{port}", "1.2.3.4:80"), "svc-80");
        assert_eq!(fill("h{addr}", "1.2.3.4:80"), "h1.2.3.4");
        assert_eq!(
            fill("h{addr}", "[::ffff:1.2.3.4]:80"),
            "h1.2.3.4",
            "mapped as IPv4"
        );
        assert_eq!(fill("h{addr}", "[fd00::1]:80"), "hfd00::1");
        let t = AppTemplate::for_address("echo").unwrap();
        assert_eq!(t.fixed, Some(ApplicationName::new("echo")));
        assert_eq!(fill("echo", "1.2.3.4:80"), "echo");
    }

    #[test]
    fn unknown_fields_and_stray_braces_are_refused() {
        for (t, why) in [
            ("a{b}", "only {port} and {addr}"),
            ("a{name}", "only {port} and {addr}"),
            ("a}", "'}' without '{'"),
            ("a{port", "'{' without '}'"),
        ] {
            let e = AppTemplate::for_address(t).unwrap_err();
            assert!(e.contains(why), "{t}: {e}");
        }
        assert!(AppTemplate::for_host("x{addr}").is_err());
    }

    #[test]
    fn a_lookup_fills_captures_and_keeps_the_port() {
        let re = regex::Regex::new(r"^(?:(?P<app>[a-z{}]+)\.rina)$").unwrap();
        let t = AppTemplate::for_host("{app}-{port}@{name}").unwrap();
        // A host name with braces in it is text, never a field.
        let host = "a{port}b.rina";
        let caps = re.captures(host).unwrap();
        let r = t.for_lookup(host, &caps);
        assert_eq!(r.as_str(), "a{port}b-{port}@a{port}b.rina");
        let name = r.fill("127.64.0.1:7".parse().unwrap()).unwrap().to_string();
        assert_eq!(name, "a{port}b-7@a{port}b.rina");
    }
}
