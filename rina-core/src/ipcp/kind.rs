//! The kinds of flow: reliable (a byte stream's, in order and complete) and
//! unreliable (datagrams), and the set of kinds a registered name accepts.

/// The kind of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FlowKind {
    /// In order and complete: retransmitted, flow-controlled (a byte stream's).
    Reliable,
    /// What arrives, without duplicates: no retransmission (datagrams).
    Unreliable,
}

impl FlowKind {
    /// True for [`FlowKind::Reliable`].
    pub fn is_reliable(self) -> bool {
        self == Self::Reliable
    }
}

/// The kinds of flow a registered application accepts: reliable (byte streams) and
/// unreliable (datagrams). A flow request of a kind the destination does not accept
/// is refused as if the name were not registered, the way a TCP port and a UDP port
/// of the same number are separate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowKinds {
    /// Reliable flows.
    pub reliable: bool,
    /// Unreliable flows.
    pub unreliable: bool,
}

impl FlowKinds {
    /// Both kinds.
    pub const ALL: Self = Self {
        reliable: true,
        unreliable: true,
    };
    /// Reliable flows only.
    pub const RELIABLE: Self = Self {
        reliable: true,
        unreliable: false,
    };
    /// Unreliable flows only.
    pub const UNRELIABLE: Self = Self {
        reliable: false,
        unreliable: true,
    };

    /// The one kind a flow with this QoS is.
    pub fn of(kind: FlowKind) -> Self {
        if kind.is_reliable() {
            Self::RELIABLE
        } else {
            Self::UNRELIABLE
        }
    }

    /// True if a flow of this QoS is accepted.
    pub fn accepts(self, kind: FlowKind) -> bool {
        if kind.is_reliable() {
            self.reliable
        } else {
            self.unreliable
        }
    }

    /// Both sets together.
    pub fn union(self, other: Self) -> Self {
        Self {
            reliable: self.reliable || other.reliable,
            unreliable: self.unreliable || other.unreliable,
        }
    }

    /// What is in `self` and not in `other`.
    pub fn minus(self, other: Self) -> Self {
        Self {
            reliable: self.reliable && !other.reliable,
            unreliable: self.unreliable && !other.unreliable,
        }
    }

    /// True if no kind is in the set.
    pub fn is_empty(self) -> bool {
        !self.reliable && !self.unreliable
    }
}
