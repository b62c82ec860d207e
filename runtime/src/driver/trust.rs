//! The trust directories of secured DIFs, read again every second while the stack
//! runs: a key added is accepted from its next handshake, and a key removed ends its
//! adjacencies at once and is refused from then on.

use std::time::Duration;

use rina_core::Instant;

use super::Driver;

/// How often the trust directories are read again.
pub(super) const TRUST_CHECK: Duration = Duration::from_secs(1);

impl Driver {
    /// When the trust directories are read next (`None`: no DIF has one).
    pub(super) fn trust_deadline(&self) -> Option<Instant> {
        (!self.stack.trust.is_empty()).then_some(self.next_trust_check)
    }

    /// Reads the trust directories if it is time; tells the node what changed.
    pub(super) fn check_trust(&mut self, now: Instant) {
        if self.stack.trust.is_empty() || now < self.next_trust_check {
            return;
        }
        self.next_trust_check = now + TRUST_CHECK;
        for t in &mut self.stack.trust {
            let keys = match t.config.trusted() {
                Ok(k) => k,
                Err(e) => {
                    // Fail closed: what cannot be read is trusted no more; listed keys stay.
                    tracing::warn!(
                        "DIF {}: trust directory: {e}; only the listed keys are trusted",
                        t.name
                    );
                    t.config.trust.iter().copied().collect()
                }
            };
            if keys == t.current {
                continue;
            }
            for gone in t.current.difference(&keys) {
                tracing::warn!(
                    "DIF {}: key {} is trusted no more",
                    t.name,
                    gone.fingerprint()
                );
            }
            for new in keys.difference(&t.current) {
                tracing::info!("DIF {}: key {} is trusted", t.name, new.fingerprint());
            }
            t.current = keys;
            let raw = t.current.iter().map(|k| *k.as_bytes()).collect();
            self.stack.node.set_trusted(now, t.dif, raw);
        }
    }
}
