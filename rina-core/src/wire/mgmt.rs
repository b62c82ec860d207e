//! Management messages: enrollment, directory, routing, liveness and flow allocation.
//!
//! Encoding (version 3, network byte order): `version: u8`, `tag: u8`, then the body of
//! that message as written by [`MgmtMessage::encode`]. Names are four `str8` parts.
//! Lists carry a `u16` count checked against the bytes left, so hostile counts cannot
//! make the decoder allocate. Trailing bytes are an error.
//!
//! Neighbour-scope messages (enrollment, directory, link state, keepalive, goodbye)
//! travel as SDUs of the reliable per-neighbour management connection (CEP-id 0,
//! address 0), so EFCP gives them order, retransmission and fragmentation: none is
//! limited by the N-1 MTU. Routed messages (flow allocation) travel as single
//! [`PduType::Management`](super::PduType::Management) PDUs between addresses and must
//! fit one PDU; their names are bounded to keep them small.

use super::codec::{Reader, Writer};
use super::Error;
use crate::name::ApplicationName;

/// The management encoding version (3: directory entries say whether the name is
/// served by a pool; flow requests carry the requester's allocation info; 4:
/// advertisements carry the origin's block of leaf addresses and may be withdrawals; 5:
/// and host routes; 6: flow requests carry the requester's first data).
pub const MGMT_VERSION: u8 = 6;

/// The most bytes of allocation info a flow request carries (see
/// [`MgmtMessage::FlowRequest`]).
pub const MAX_FLOW_INFO: usize = 64;

/// The most bytes of first data a flow request carries (see
/// [`MgmtMessage::FlowRequest`]); the path's MTU may allow fewer.
pub const MAX_FIRST_DATA: usize = 8 * 1024;

/// One directory entry: `app` is registered at the member `address`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// The application name.
    pub app: ApplicationName,
    /// The member where it is registered.
    pub address: u32,
    /// Version of this (app, address) pair; the higher wins.
    pub seq: u64,
    /// False for a removal (tombstone).
    pub present: bool,
    /// The registrant serves the name as one of a pool: other members may register
    /// it too (if they say so as well), and flows are spread over them.
    pub pool: bool,
}

/// A link-state advertisement: the adjacencies of `origin`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lsa {
    /// The member that advertises.
    pub origin: u32,
    /// Version; the higher wins.
    pub seq: u64,
    /// The largest PDU every N-1 port of the origin carries (0: not known). The DIF's
    /// PDUs are no larger than the smallest of these, so that any path carries them.
    pub max_pdu: u32,
    /// The block of leaf addresses the origin owns (see `ipcp::leaves`; 0: none).
    pub block: u16,
    /// A withdrawal: the origin left the DIF. It beats every older advertisement of
    /// the origin, carries no neighbours, and is forgotten after a while.
    pub withdrawn: bool,
    /// Addresses of the origin's enrolled neighbours.
    pub neighbors: Vec<u32>,
    /// Leaves of other members' blocks that enrolled here when their enroller went
    /// (host routes: they beat the block's route).
    pub hosts: Vec<u32>,
}

/// Result codes of enrollment and flow allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResultCode {
    /// Success.
    Ok,
    /// No application registered under the name.
    NoSuchName,
    /// Access denied.
    Denied,
    /// No resources.
    NoResources,
    /// Wrong DIF (enrollment).
    WrongDif,
}

impl ResultCode {
    fn code(self) -> u8 {
        match self {
            Self::Ok => 0,
            Self::NoSuchName => 1,
            Self::Denied => 2,
            Self::NoResources => 3,
            Self::WrongDif => 4,
        }
    }
    fn from_code(c: u8) -> Result<Self, Error> {
        Ok(match c {
            0 => Self::Ok,
            1 => Self::NoSuchName,
            2 => Self::Denied,
            3 => Self::NoResources,
            4 => Self::WrongDif,
            _ => return Err(Error::Malformed),
        })
    }
}

/// A management message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MgmtMessage {
    /// Enrollee -> enroller: join `dif` as `ipcp`; `address` is the one held before
    /// (re-enrollment) or 0.
    EnrollRequest {
        /// The enrollee's IPC process name.
        ipcp: ApplicationName,
        /// The DIF it wants to join.
        dif: String,
        /// The address it held before, or 0.
        address: u32,
        /// True for a leaf member that needs no link-state database.
        leaf: bool,
    },
    /// Enroller -> enrollee: the outcome and the assigned address. On success the
    /// enroller then sends its state and [`MgmtMessage::EnrollDone`].
    EnrollResponse {
        /// Outcome.
        result: ResultCode,
        /// The enrollee's address.
        address: u32,
        /// The enroller's IPC process name.
        enroller: ApplicationName,
        /// The enroller's address.
        enroller_address: u32,
    },
    /// An already-enrolled member opens an adjacency with another member.
    Hello {
        /// Its IPC process name.
        ipcp: ApplicationName,
        /// Its DIF.
        dif: String,
        /// Its address.
        address: u32,
    },
    /// The enroller has sent all its state.
    EnrollDone,
    /// Directory entries (registration, removal, or a snapshot chunk).
    Directory(Vec<DirEntry>),
    /// Link-state advertisements.
    LinkState(Vec<Lsa>),
    /// Liveness probe; any traffic counts as a sign of life.
    Keepalive,
    /// The sender is leaving the DIF.
    Goodbye {
        /// Its address.
        address: u32,
    },
    /// Routed: allocate a flow from `src_app` at the source to `dst_app`.
    FlowRequest {
        /// Requesting application.
        src_app: ApplicationName,
        /// Destination application.
        dst_app: ApplicationName,
        /// The requester's CEP-id.
        src_cep: u32,
        /// Reliable (stream) or unreliable (datagram) flow.
        reliable: bool,
        /// What the requester tells the destination application about this flow,
        /// opaque to the DIF (at most [`MAX_FLOW_INFO`] bytes): a socket program's
        /// view of its own address, say.
        info: Vec<u8>,
        /// The first bytes of a reliable flow's stream (at most [`MAX_FIRST_DATA`]),
        /// delivered to the destination application when it takes the flow, ahead of
        /// anything the connection carries (as TCP Fast Open's data rides on its SYN).
        first_data: Vec<u8>,
    },
    /// Routed: the answer to a [`MgmtMessage::FlowRequest`].
    FlowResponse {
        /// Outcome.
        result: ResultCode,
        /// The requester's CEP-id (echoed).
        src_cep: u32,
        /// The responder's CEP-id.
        dst_cep: u32,
    },
    /// Routed: the flow whose connection ends at `dst_cep` is gone at the sender.
    FlowDeallocate {
        /// The receiver's CEP-id.
        dst_cep: u32,
    },
}

mod tag {
    pub(super) const ENROLL_REQUEST: u8 = 1;
    pub(super) const ENROLL_RESPONSE: u8 = 2;
    pub(super) const HELLO: u8 = 3;
    pub(super) const ENROLL_DONE: u8 = 4;
    pub(super) const DIRECTORY: u8 = 5;
    pub(super) const LINK_STATE: u8 = 6;
    pub(super) const KEEPALIVE: u8 = 7;
    pub(super) const GOODBYE: u8 = 8;
    pub(super) const FLOW_REQUEST: u8 = 16;
    pub(super) const FLOW_RESPONSE: u8 = 17;
    pub(super) const FLOW_DEALLOCATE: u8 = 18;
}

/// Writes an application name as four `str8` parts (shared by every format that
/// carries names).
pub(crate) fn put_name(w: &mut Writer, n: &ApplicationName) {
    for p in n.parts() {
        w.str8(p);
    }
}

/// Reads an application name written by [`put_name`], and validates it.
pub(crate) fn get_name(r: &mut Reader<'_>) -> Result<ApplicationName, Error> {
    let n = ApplicationName {
        process_name: r.str8()?.to_owned(),
        process_instance: r.str8()?.to_owned(),
        entity_name: r.str8()?.to_owned(),
        entity_instance: r.str8()?.to_owned(),
    };
    n.validate().map_err(|_| Error::Malformed)?;
    Ok(n)
}

impl MgmtMessage {
    /// Encodes the message.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(MGMT_VERSION);
        match self {
            Self::EnrollRequest {
                ipcp,
                dif,
                address,
                leaf,
            } => {
                w.u8(tag::ENROLL_REQUEST);
                put_name(&mut w, ipcp);
                w.str8(dif);
                w.u32(*address);
                w.bool(*leaf);
            }
            Self::EnrollResponse {
                result,
                address,
                enroller,
                enroller_address,
            } => {
                w.u8(tag::ENROLL_RESPONSE);
                w.u8(result.code());
                w.u32(*address);
                put_name(&mut w, enroller);
                w.u32(*enroller_address);
            }
            Self::Hello { ipcp, dif, address } => {
                w.u8(tag::HELLO);
                put_name(&mut w, ipcp);
                w.str8(dif);
                w.u32(*address);
            }
            Self::EnrollDone => w.u8(tag::ENROLL_DONE),
            Self::Directory(entries) => {
                w.u8(tag::DIRECTORY);
                put_directory(&mut w, entries);
            }
            Self::LinkState(lsas) => {
                w.u8(tag::LINK_STATE);
                put_link_state(&mut w, lsas);
            }
            Self::Keepalive => w.u8(tag::KEEPALIVE),
            Self::Goodbye { address } => {
                w.u8(tag::GOODBYE);
                w.u32(*address);
            }
            Self::FlowRequest {
                src_app,
                dst_app,
                src_cep,
                reliable,
                info,
                first_data,
            } => {
                w.u8(tag::FLOW_REQUEST);
                put_name(&mut w, src_app);
                put_name(&mut w, dst_app);
                w.u32(*src_cep);
                w.bool(*reliable);
                w.bytes16(&info[..info.len().min(MAX_FLOW_INFO)]);
                w.bytes16(&first_data[..first_data.len().min(MAX_FIRST_DATA)]);
            }
            Self::FlowResponse {
                result,
                src_cep,
                dst_cep,
            } => {
                w.u8(tag::FLOW_RESPONSE);
                w.u8(result.code());
                w.u32(*src_cep);
                w.u32(*dst_cep);
            }
            Self::FlowDeallocate { dst_cep } => {
                w.u8(tag::FLOW_DEALLOCATE);
                w.u32(*dst_cep);
            }
        }
        w.into_inner()
    }

    /// Decodes a message; never panics.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes);
        let v = r.u8()?;
        if v != MGMT_VERSION {
            return Err(Error::Version(v));
        }
        let t = r.u8()?;
        let msg = match t {
            tag::ENROLL_REQUEST => Self::EnrollRequest {
                ipcp: get_name(&mut r)?,
                dif: r.str8()?.to_owned(),
                address: r.u32()?,
                leaf: r.bool()?,
            },
            tag::ENROLL_RESPONSE => Self::EnrollResponse {
                result: ResultCode::from_code(r.u8()?)?,
                address: r.u32()?,
                enroller: get_name(&mut r)?,
                enroller_address: r.u32()?,
            },
            tag::HELLO => Self::Hello {
                ipcp: get_name(&mut r)?,
                dif: r.str8()?.to_owned(),
                address: r.u32()?,
            },
            tag::ENROLL_DONE => Self::EnrollDone,
            tag::DIRECTORY => Self::Directory(get_directory(&mut r)?),
            tag::LINK_STATE => Self::LinkState(get_link_state(&mut r)?),
            tag::KEEPALIVE => Self::Keepalive,
            tag::GOODBYE => Self::Goodbye { address: r.u32()? },
            tag::FLOW_REQUEST => Self::FlowRequest {
                src_app: get_name(&mut r)?,
                dst_app: get_name(&mut r)?,
                src_cep: r.u32()?,
                reliable: r.bool()?,
                info: {
                    let info = r.bytes16()?;
                    if info.len() > MAX_FLOW_INFO {
                        return Err(Error::Malformed);
                    }
                    info.to_vec()
                },
                first_data: {
                    let data = r.bytes16()?;
                    if data.len() > MAX_FIRST_DATA {
                        return Err(Error::Malformed);
                    }
                    data.to_vec()
                },
            },
            tag::FLOW_RESPONSE => Self::FlowResponse {
                result: ResultCode::from_code(r.u8()?)?,
                src_cep: r.u32()?,
                dst_cep: r.u32()?,
            },
            tag::FLOW_DEALLOCATE => Self::FlowDeallocate { dst_cep: r.u32()? },
            other => return Err(Error::UnknownType(other)),
        };
        r.finish()?;
        Ok(msg)
    }
}

/// Directory entries: a count (at most 65535 are sent), then each entry.
fn put_directory(w: &mut Writer, entries: &[DirEntry]) {
    w.u16(entries.len().min(usize::from(u16::MAX)) as u16);
    for e in entries.iter().take(usize::from(u16::MAX)) {
        put_name(w, &e.app);
        w.u32(e.address);
        w.u64(e.seq);
        w.bool(e.present);
        w.bool(e.pool);
    }
}

fn get_directory(r: &mut Reader<'_>) -> Result<Vec<DirEntry>, Error> {
    // name (4 length bytes + at least 1) + address + seq + present + pool
    let n = r.count(5 + 4 + 8 + 1 + 1)?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(DirEntry {
            app: get_name(r)?,
            address: r.u32()?,
            seq: r.u64()?,
            present: r.bool()?,
            pool: r.bool()?,
        });
    }
    Ok(v)
}

/// Link-state advertisements: a count (at most 65535), then each with its
/// neighbours.
fn put_link_state(w: &mut Writer, lsas: &[Lsa]) {
    w.u16(lsas.len().min(usize::from(u16::MAX)) as u16);
    for l in lsas.iter().take(usize::from(u16::MAX)) {
        w.u32(l.origin);
        w.u64(l.seq);
        w.u32(l.max_pdu);
        w.u16(l.block);
        w.bool(l.withdrawn);
        w.u16(l.neighbors.len().min(usize::from(u16::MAX)) as u16);
        for n in l.neighbors.iter().take(usize::from(u16::MAX)) {
            w.u32(*n);
        }
        w.u16(l.hosts.len().min(usize::from(u16::MAX)) as u16);
        for h in l.hosts.iter().take(usize::from(u16::MAX)) {
            w.u32(*h);
        }
    }
}

fn get_link_state(r: &mut Reader<'_>) -> Result<Vec<Lsa>, Error> {
    let n = r.count(4 + 8 + 4 + 2 + 1 + 2 + 2)?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let origin = r.u32()?;
        let seq = r.u64()?;
        let max_pdu = r.u32()?;
        let block = r.u16()?;
        let withdrawn = r.bool()?;
        let k = r.count(4)?;
        let mut neighbors = Vec::with_capacity(k);
        for _ in 0..k {
            neighbors.push(r.u32()?);
        }
        let k = r.count(4)?;
        let mut hosts = Vec::with_capacity(k);
        for _ in 0..k {
            hosts.push(r.u32()?);
        }
        v.push(Lsa {
            origin,
            seq,
            max_pdu,
            block,
            withdrawn,
            neighbors,
            hosts,
        });
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<MgmtMessage> {
        let n = ApplicationName::with_instance("a", "1");
        vec![
            MgmtMessage::EnrollRequest {
                ipcp: n.clone(),
                dif: "net".into(),
                address: 0,
                leaf: true,
            },
            MgmtMessage::EnrollResponse {
                result: ResultCode::Ok,
                address: 7,
                enroller: n.clone(),
                enroller_address: 1,
            },
            MgmtMessage::Hello {
                ipcp: n.clone(),
                dif: "net".into(),
                address: 3,
            },
            MgmtMessage::EnrollDone,
            MgmtMessage::Directory(vec![DirEntry {
                app: n.clone(),
                address: 2,
                seq: 9,
                present: true,
                pool: true,
            }]),
            MgmtMessage::LinkState(vec![Lsa {
                origin: 1,
                seq: 2,
                max_pdu: 1486,
                block: 5,
                withdrawn: false,
                neighbors: vec![3, 4],
                hosts: vec![0x8005_0001],
            }]),
            MgmtMessage::Keepalive,
            MgmtMessage::Goodbye { address: 5 },
            MgmtMessage::FlowRequest {
                src_app: n.clone(),
                dst_app: n,
                src_cep: 11,
                reliable: true,
                info: vec![1, 2, 3],
                first_data: b"GET / HTTP/1.0\r\n\r\n".to_vec(),
            },
            MgmtMessage::FlowResponse {
                result: ResultCode::NoSuchName,
                src_cep: 11,
                dst_cep: 12,
            },
            MgmtMessage::FlowDeallocate { dst_cep: 12 },
        ]
    }

    #[test]
    fn hand_written_link_state() {
        #[rustfmt::skip]
        let bytes = [
            6, 6,                       // version 6, link state
            0, 1,                       // one advertisement
            0, 0, 0, 7,                 // origin 7
            0, 0, 0, 0, 0, 0, 0, 3,     // seq 3
            0, 0, 0x05, 0xce,           // largest PDU 1486
            0x01, 0x02,                 // leaf block 0x102
            0,                          // not a withdrawal
            0, 2,                       // two neighbours
            0, 0, 0, 1, 0, 0, 0, 9,     // 1 and 9
            0, 1,                       // one host route
            0x80, 0x01, 0, 2,           // a leaf of block 1
        ];
        let m = MgmtMessage::LinkState(vec![Lsa {
            origin: 7,
            seq: 3,
            max_pdu: 1486,
            block: 0x102,
            withdrawn: false,
            neighbors: vec![1, 9],
            hosts: vec![0x8001_0002],
        }]);
        assert_eq!(m.encode(), bytes);
        assert_eq!(MgmtMessage::decode(&bytes).unwrap(), m);
    }

    #[test]
    fn hand_written_flow_response() {
        let bytes = [6, 17, 1, 0, 0, 0, 11, 0, 0, 0, 12];
        let m = MgmtMessage::FlowResponse {
            result: ResultCode::NoSuchName,
            src_cep: 11,
            dst_cep: 12,
        };
        assert_eq!(m.encode(), bytes);
        assert_eq!(MgmtMessage::decode(&bytes).unwrap(), m);
    }

    #[test]
    fn round_trips_and_truncations() {
        for m in samples() {
            let b = m.encode();
            assert_eq!(MgmtMessage::decode(&b).unwrap(), m);
            for cut in 0..b.len() {
                assert!(
                    MgmtMessage::decode(&b[..cut]).is_err(),
                    "{m:?} cut at {cut}"
                );
            }
            let mut long = b.clone();
            long.push(0);
            assert_eq!(MgmtMessage::decode(&long), Err(Error::Trailing));
        }
        assert_eq!(MgmtMessage::decode(&[1, 1]), Err(Error::Version(1)));
        assert_eq!(MgmtMessage::decode(&[2, 1]), Err(Error::Version(2)));
        assert_eq!(MgmtMessage::decode(&[4, 1]), Err(Error::Version(4)));
        assert_eq!(MgmtMessage::decode(&[5, 1]), Err(Error::Version(5)));
        assert_eq!(MgmtMessage::decode(&[7, 1]), Err(Error::Version(7)));
        assert_eq!(MgmtMessage::decode(&[6, 99]), Err(Error::UnknownType(99)));
    }

    #[test]
    fn hand_written_flow_request_with_info() {
        let n = |s: &str| [&[s.len() as u8][..], s.as_bytes(), &[0, 0, 0]].concat();
        let bytes = [
            &[6, 16][..],               // version 6, flow request
            &n("c"),                    // source name
            &n("s"),                    // destination name
            &[0, 0, 0, 11],             // source CEP-id
            &[1],                       // reliable
            &[0, 2, 0xab, 0xcd],        // two bytes of info
            &[0, 3, b'h', b'i', b'\n'], // three bytes of first data
        ]
        .concat();
        let m = MgmtMessage::FlowRequest {
            src_app: ApplicationName::new("c"),
            dst_app: ApplicationName::new("s"),
            src_cep: 11,
            reliable: true,
            info: vec![0xab, 0xcd],
            first_data: b"hi\n".to_vec(),
        };
        assert_eq!(m.encode(), bytes);
        assert_eq!(MgmtMessage::decode(&bytes).unwrap(), m);
        // More info than a flow request may carry is refused.
        let mut long = bytes[..bytes.len() - 9].to_vec();
        long.extend_from_slice(&[0, (MAX_FLOW_INFO + 1) as u8]);
        long.extend(std::iter::repeat_n(0u8, MAX_FLOW_INFO + 1));
        long.extend_from_slice(&[0, 0]);
        assert_eq!(MgmtMessage::decode(&long), Err(Error::Malformed));
        // And more first data.
        let mut long = bytes[..bytes.len() - 5].to_vec();
        long.extend_from_slice(&((MAX_FIRST_DATA + 1) as u16).to_be_bytes());
        long.extend(std::iter::repeat_n(0u8, MAX_FIRST_DATA + 1));
        assert_eq!(MgmtMessage::decode(&long), Err(Error::Malformed));
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = MgmtMessage::decode(&bytes);
        }
    }
}
