//! Which flows need attention, so that the IPC process's work per event does not grow
//! with the number of flows (a busy server has thousands, most of them lingering after
//! a graceful close).
//!
//! - Deadlines: each flow's next timer, ordered, so the earliest is known at once and
//!   a timeout visits only the flows that are due.
//! - Ready: the flows that may have a PDU to send (something happened to them since
//!   they last had nothing); `poll_transmit` looks only at these, round-robin.
//!
//! The IPC process calls [`FlowSchedule::update`] after anything that changes a flow.

use std::collections::{BTreeMap, BTreeSet};

use crate::time::Instant;
use crate::PortId;

/// Deadlines and readiness of flows.
#[derive(Debug, Default)]
pub(super) struct FlowSchedule {
    by_time: BTreeSet<(Instant, PortId)>,
    deadline: BTreeMap<PortId, Instant>,
    ready: BTreeSet<PortId>,
}

impl FlowSchedule {
    /// Records `port`'s next deadline and marks it ready to send.
    pub(super) fn update(&mut self, port: PortId, deadline: Option<Instant>) {
        self.set_deadline(port, deadline);
        self.ready.insert(port);
    }

    /// Records `port`'s next deadline only.
    pub(super) fn set_deadline(&mut self, port: PortId, deadline: Option<Instant>) {
        if let Some(old) = self.deadline.remove(&port) {
            self.by_time.remove(&(old, port));
        }
        if let Some(t) = deadline {
            self.deadline.insert(port, t);
            self.by_time.insert((t, port));
        }
    }

    /// Forgets `port`.
    pub(super) fn remove(&mut self, port: PortId) {
        self.set_deadline(port, None);
        self.ready.remove(&port);
    }

    /// The earliest deadline of any flow.
    pub(super) fn next(&self) -> Option<Instant> {
        self.by_time.first().map(|&(t, _)| t)
    }

    /// The flows whose deadline is at or before `now`, earliest first.
    pub(super) fn due(&self, now: Instant) -> Vec<PortId> {
        self.by_time
            .iter()
            .take_while(|&&(t, _)| t <= now)
            .map(|&(_, p)| p)
            .collect()
    }

    /// The first ready flow at or after `from` (wrapping around).
    pub(super) fn next_ready(&self, from: PortId) -> Option<PortId> {
        self.ready
            .range(from..)
            .next()
            .or_else(|| self.ready.first())
            .copied()
    }

    /// `port` has nothing to send until something happens to it.
    pub(super) fn idle(&mut self, port: PortId) {
        self.ready.remove(&port);
    }

    /// How many flows are ready.
    pub(super) fn ready_len(&self) -> usize {
        self.ready.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Instant {
        Instant::from_micros(ms * 1000)
    }

    #[test]
    fn deadlines_and_readiness() {
        let mut s = FlowSchedule::default();
        s.update(PortId(1), Some(t(30)));
        s.update(PortId(2), Some(t(10)));
        s.update(PortId(3), None);
        assert_eq!(s.next(), Some(t(10)));
        assert_eq!(s.due(t(30)), [PortId(2), PortId(1)]);
        s.set_deadline(PortId(2), Some(t(50)));
        assert_eq!(s.next(), Some(t(30)));
        assert_eq!(s.due(t(20)), []);
        assert_eq!(s.next_ready(PortId(2)), Some(PortId(2)));
        s.idle(PortId(2));
        assert_eq!(s.next_ready(PortId(2)), Some(PortId(3)));
        assert_eq!(s.next_ready(PortId(4)), Some(PortId(1)), "wraps around");
        s.remove(PortId(1));
        s.remove(PortId(3));
        assert_eq!(s.next_ready(PortId(0)), None);
        assert_eq!(s.next(), Some(t(50)));
        assert_eq!(s.ready_len(), 0);
    }
}
