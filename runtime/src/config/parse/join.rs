//! Validation of how a normal DIF's member joins: it bootstraps (with its address) or
//! enrolls through a neighbour, as a leaf or as a full member (`role`).

use std::ops::Range;

use toml::Spanned;

use super::raw::RawDif;
use super::{Validator, R};
use crate::config::{DifConfig, Join};
use rina_core::node::Role;

impl Validator<'_> {
    /// How a normal DIF's member joins: it bootstraps (with its address) or enrolls.
    pub(super) fn join(
        &self,
        d: &RawDif,
        span: &Range<usize>,
        names: &[String],
        earlier: &[DifConfig],
    ) -> R<Join> {
        Ok(match (&d.bootstrap, &d.enroll_via) {
            (Some(b), Some(_)) if *b.get_ref() => {
                return Err(self.error(
                    b.span(),
                    "a member either bootstraps the DIF or enrolls (`enroll-via`), not both",
                ))
            }
            (Some(b), _) if *b.get_ref() => {
                let address = match &d.address {
                    None => 1,
                    Some(a) => {
                        let v = *a.get_ref();
                        // Addresses from 2^31 up are leaves' (see `ipcp::leaves`).
                        if !(1..=0x7fff_ffff).contains(&v) {
                            return Err(self.error(a.span(), "address must be 1..=2147483647"));
                        }
                        v as u32
                    }
                };
                Join::Bootstrap { address }
            }
            (_, Some(e)) => {
                self.not_for(
                    d.address.as_ref().map(Spanned::span),
                    "address",
                    "enrolling (only a bootstrap member sets its address)",
                )?;
                let e_ref = e.get_ref();
                let (via, neighbor) =
                    self.adjacency(d, names, earlier, e_ref, e.span(), "enroll-via")?;
                Join::Enroll { via, neighbor }
            }
            _ => {
                return Err(self.error(
                    span.clone(),
                    format!(
                        "normal DIF {:?} needs `bootstrap = true` or `enroll-via = {{ ... }}`",
                        d.name.get_ref()
                    ),
                ))
            }
        })
    }

    /// `role = "leaf" | "member"`; a bootstrap member is a full one.
    pub(super) fn role(&self, d: &RawDif, join: &Join) -> R<Role> {
        let Some(r) = &d.role else {
            return Ok(Role::Auto);
        };
        let role = match r.get_ref().as_str() {
            "leaf" => Role::Leaf,
            "member" => Role::Full,
            other => {
                return Err(self.error(
                    r.span(),
                    format!("role must be \"leaf\" or \"member\", not {other:?}"),
                ))
            }
        };
        if role == Role::Leaf && matches!(join, Join::Bootstrap { .. }) {
            return Err(self.error(
                r.span(),
                "a member that bootstraps the DIF is a full member, not a leaf",
            ));
        }
        Ok(role)
    }
}
