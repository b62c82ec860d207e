//! The management socket (DESIGN.md D8): the runtime answers every connection with
//! its [`Report`] as JSON, then closes it. See `report.rs`. Only processes of this
//! process's user, or root, are answered (the peer's credentials, `SO_PEERCRED`); any
//! other gets one line saying so ([`REFUSED`]) and nothing of the stack.

use std::os::fd::OwnedFd;

use rustix::net::{self, AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

use super::Driver;
use crate::report::{
    mgmt_address, CountersReport, DifReport, DirectoryReport, FlowReport, NeighborReport, Report,
    RouteReport, SecurityReport, ShimReport, REFUSED,
};
use rina_core::efcp::ConnectionStats;
use rina_core::node::{Dif, DifId, Layer, LinkId, Node};

/// A nonblocking listener at this process's management address.
pub(super) fn listener(pid: u32) -> rustix::io::Result<OwnedFd> {
    let sock = net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )?;
    net::bind(
        &sock,
        &SocketAddrUnix::new_abstract_name(mgmt_address(pid).as_bytes())?,
    )?;
    net::listen(&sock, 16)?;
    Ok(shims::high_fd::move_high(sock))
}

/// True if the process at the other end of `c` may read this stack: it runs as this
/// process's effective user, or as root; otherwise why not.
fn may_read(c: &OwnedFd) -> Result<(), String> {
    let me = rustix::process::geteuid();
    match net::sockopt::socket_peercred(c) {
        Ok(cred) if cred.uid == me || cred.uid.is_root() => Ok(()),
        Ok(cred) => Err(format!(
            "refused to process {} of user {}: this stack answers only its own user ({}) and root",
            cred.pid.as_raw_nonzero(),
            cred.uid.as_raw(),
            me.as_raw()
        )),
        Err(e) => Err(format!(
            "refused: the peer's credentials cannot be read ({e})"
        )),
    }
}

impl Driver {
    /// Answers every waiting connection.
    pub(super) fn serve_mgmt(&mut self) {
        let Some(l) = &self.mgmt else { return };
        while let Ok(c) = net::accept_with(l, SocketFlags::NONBLOCK | SocketFlags::CLOEXEC) {
            let text = match may_read(&c) {
                Ok(()) => serde_json::to_vec(&self.report()).unwrap_or_default(),
                Err(why) => {
                    tracing::info!("management socket: {why}");
                    format!("{REFUSED}{why}\n").into_bytes()
                }
            };
            // A report is a few kilobytes: it fits the socket's buffer (raised first);
            // a client too slow to take it gets what fit.
            let _ = net::sockopt::set_socket_send_buffer_size(&c, text.len() + 4096);
            let mut sent = 0;
            while sent < text.len() {
                match rustix::io::write(&c, &text[sent..]) {
                    Ok(n) if n > 0 => sent += n,
                    Err(rustix::io::Errno::INTR) => {}
                    _ => break,
                }
            }
        }
    }

    /// The state of this stack.
    pub(super) fn report(&self) -> Report {
        let node = &self.stack.node;
        let shims = (0..node.link_count())
            .map(|i| {
                let link = LinkId(i);
                ShimReport {
                    name: node.link_name(link).to_owned(),
                    link: node.link_place(link).to_owned(),
                    max_sdu: node.link_max_sdu(link),
                    dropped: self.stack.dropped[i] + node.link_dropped(link),
                    releases_ignored: node.link_releases_ignored(link),
                }
            })
            .collect();
        let difs = node.difs().map(|(id, d)| dif_report(node, id, d)).collect();
        Report {
            pid: std::process::id(),
            program: self.program.clone(),
            keeper: self.keeper.is_some(),
            shims,
            difs,
            app_flows: self.flows.len() + self.datagrams.len(),
            inline_sends: self.inline_sends,
            inline_timer_wakes: self.inline_timer_wakes,
            inline_receives: self.inline_receives,
            flow_pumps: self.flow_pumps,
            programs: self.host.as_ref().map(|h| h.report()).unwrap_or_default(),
            tunnel: self.tunnel_report(),
        }
    }
}

/// What DIF `d` of `node` reports.
fn dif_report(node: &Node, id: DifId, d: &Dif) -> DifReport {
    let ipcp = d.ipcp();
    let leaves = ipcp.leaves();
    let neighbors = neighbor_reports(node, ipcp);
    let routes = ipcp
        .forwarding_table()
        .iter()
        .map(|(dst, port)| RouteReport {
            destination: dst.0,
            next_hop: neighbors
                .iter()
                .find(|n| n.port == port.0)
                .map(|n| n.address),
            port: port.0,
        })
        .collect();
    let mut directory: Vec<DirectoryReport> = Vec::new();
    for (app, a) in ipcp.directory().live() {
        let app = app.to_string();
        match directory.last_mut() {
            Some(e) if e.app == app => e.members.push(a.0),
            _ => directory.push(DirectoryReport {
                app,
                members: vec![a.0],
            }),
        }
    }
    let flows = flow_reports(ipcp);
    let c = ipcp.counters();
    DifReport {
        name: d.name().to_owned(),
        member: ipcp.config().name.to_string(),
        address: ipcp.address().map(|a| a.0),
        enrolled: ipcp.is_enrolled(),
        last_failure: d.last_failure().map(str::to_owned),
        over: d
            .over()
            .iter()
            .map(|l| match *l {
                Layer::Link(s) => node.link_name(s).to_owned(),
                Layer::Dif(l) => node.dif(l).name().to_owned(),
            })
            .collect(),
        neighbors,
        members: ipcp.members().into_iter().map(|a| a.0).collect(),
        routes,
        directory,
        registered: ipcp
            .registrations()
            .iter()
            .map(ToString::to_string)
            .collect(),
        flows,
        counters: CountersReport {
            pdus_in: c.pdus_in,
            pdus_out: c.pdus_out,
            pdus_relayed: c.pdus_relayed,
            pdus_malformed: c.pdus_malformed,
            pdus_dropped: c.pdus_dropped,
            pdus_to_members: c.pdus_to_members,
            control_to_members: c.control_to_members,
            route_computations: c.route_computations,
            flows_with_first_data: c.flows_with_first_data,
            first_data_received: c.first_data_received,
        },
        security: node.security_counters(id).map(|s| SecurityReport {
            handshakes: s.handshakes,
            handshakes_refused: s.handshakes_refused,
            opens_failed: s.opens_failed,
            replays: s.replays,
            refused_claims: c.refused_claims,
            handshakes_limited: s.handshakes_limited,
        }),
        leaf: ipcp.is_leaf(),
        lsdb_size: ipcp.lsdb_len(),
        directory_size: ipcp.directory().len(),
        leaves: leaves.iter().map(|(a, _)| a.0).collect(),
    }
}

/// The neighbours of an IPC process: port, name, address, key, whether a leaf.
fn neighbor_reports(node: &Node, ipcp: &rina_core::ipcp::IpcProcess) -> Vec<NeighborReport> {
    let leaves = ipcp.leaves();
    ipcp.neighbors()
        .into_iter()
        .map(|(port, name, a)| NeighborReport {
            port: port.0,
            name: name.to_string(),
            address: a.0,
            key: node
                .neighbor_key(port)
                .map(|k| rina_core::secure::fingerprint(&k)),
            leaf: leaves.contains(&(a, port)),
        })
        .collect()
}

/// The flows of an IPC process, with their EFCP figures.
fn flow_reports(ipcp: &rina_core::ipcp::IpcProcess) -> Vec<FlowReport> {
    ipcp.flows()
        .into_iter()
        .map(|f| {
            let stats = ipcp.flow_stats(f.port);
            let of = |k: fn(&ConnectionStats) -> u64| stats.as_ref().map_or(0, k);
            FlowReport {
                port: f.port.0,
                local_app: f.local_app.to_string(),
                remote_app: f.remote_app.to_string(),
                remote_address: f.remote_addr.map(|a| a.0),
                state: f.state.to_owned(),
                pdus_sent: of(|s| s.pdus_sent),
                pdus_retransmitted: of(|s| s.pdus_retransmitted),
                pdus_received: of(|s| s.pdus_received),
                cwnd: of(|s| s.cwnd),
                loss_events: of(|s| s.loss_events),
                timeouts: of(|s| s.timeouts),
                spurious_retransmissions: of(|s| s.spurious_retransmissions),
                rto_us: of(|s| s.rto.as_micros() as u64),
                in_flight: of(|s| s.in_flight),
                bytes_acked: of(|s| s.bytes_acked),
                bytes_received: of(|s| s.bytes_received),
                duplicates: of(|s| s.duplicates),
                malformed: of(|s| s.malformed),
                tail_probes: of(|s| s.tail_probes),
                srtt_us: stats.and_then(|s| s.srtt).map(|t| t.as_micros() as u64),
            }
        })
        .collect()
}
