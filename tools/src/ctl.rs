//! `rina ctl`: the stacks running on this host (in this network namespace), and what
//! one of them knows, read from each process's management socket
//! (`runtime::report`).

use std::fmt::Write as _;
use std::process::ExitCode;

use runtime::report::{self, Report};

/// `rina ctl [PID] [--json]`.
pub fn ctl(pid: Option<u32>, json: bool) -> ExitCode {
    match pid {
        Some(pid) => match report::fetch(pid) {
            Ok(r) if json => {
                println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
                ExitCode::SUCCESS
            }
            Ok(r) => {
                print!("{}", show(&r));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("rina ctl: {}", why_no_report(pid, e));
                ExitCode::from(1)
            }
        },
        None => {
            let (mut reports, mut refused) = (Vec::new(), 0);
            for p in report::list_processes() {
                match report::fetch(p) {
                    Ok(r) => reports.push(r),
                    Err(e) if e.contains("refused") => refused += 1,
                    Err(_) => {}
                }
            }
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&reports).unwrap_or_default()
                );
            } else if reports.is_empty() && refused == 0 {
                println!("no process runs a RINA stack here");
            } else {
                for r in &reports {
                    println!("{}", summary(r));
                }
            }
            if refused > 0 && !json {
                println!(
                    "{refused} more stack(s) here belong to other users (a stack answers only its own user and root)"
                );
            }
            ExitCode::SUCCESS
        }
    }
}

/// Why process `pid` gave no report: it does not exist, it runs no stack (here), or
/// what fetching said.
fn why_no_report(pid: u32, fetch_error: String) -> String {
    let proc_dir = std::path::PathBuf::from(format!("/proc/{pid}"));
    if pid == 0 || !proc_dir.exists() {
        return format!("no such process {pid}");
    }
    if report::list_processes().contains(&pid) {
        return fetch_error;
    }
    let name = std::fs::read_to_string(proc_dir.join("comm"))
        .map(|c| format!(" ({})", c.trim_end()))
        .unwrap_or_default();
    let ns = |p: &std::path::Path| std::fs::read_link(p.join("ns/net")).ok();
    let elsewhere = match (ns(&proc_dir), ns(std::path::Path::new("/proc/self"))) {
        (Some(a), Some(b)) if a != b => {
            "; it is in another network namespace, whose stacks `rina ctl` sees from inside \
             it (e.g. `ip netns exec NAME rina ctl`)"
        }
        _ => "",
    };
    format!("no RINA stack in process {pid}{name}{elsewhere}")
}

/// One line per process.
fn summary(r: &Report) -> String {
    let mut s = format!(
        "{:>7}  {}{}",
        r.pid,
        r.program,
        if r.keeper { " (keeper)" } else { "" }
    );
    for d in &r.difs {
        let at = d
            .address
            .map_or_else(|| "not enrolled".to_owned(), |a| format!("address {a}"));
        let _ = write!(
            s,
            "  {}: {at}, {} neighbours, {} members",
            d.name,
            d.neighbors.len(),
            d.members.len()
        );
    }
    let _ = write!(s, ", {} application flows", r.app_flows);
    if r.inline_sends > 0 {
        let _ = write!(s, " ({} writes sent inline)", r.inline_sends);
    }
    if r.inline_receives > 0 {
        let _ = write!(s, " ({} receiving turns run inline)", r.inline_receives);
    }
    if !r.programs.is_empty() {
        let _ = write!(s, ", serves {} programs", r.programs.len());
    }
    if let Some(t) = &r.tunnel {
        let _ = write!(
            s,
            ", tunnel {}: {} packets from the device, {} to it",
            t.device, t.from_device, t.to_device
        );
    }
    s
}

/// Everything about one process.
fn show(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "process {} ({}){}",
        r.pid,
        r.program,
        if r.keeper { ", a keeper" } else { "" }
    );
    for sh in &r.shims {
        let _ = writeln!(
            s,
            "shim DIF {}: {}, largest SDU {} bytes, {} dropped, {} unauthenticated releases ignored",
            sh.name, sh.link, sh.max_sdu, sh.dropped, sh.releases_ignored
        );
    }
    for d in &r.difs {
        let state = match (d.enrolled, d.address) {
            (true, Some(a)) => format!("address {a}"),
            _ => format!(
                "not enrolled{}",
                d.last_failure
                    .as_ref()
                    .map_or(String::new(), |f| format!(" ({f})"))
            ),
        };
        let _ = writeln!(
            s,
            "DIF {}: member {}, {state}, over {}",
            d.name,
            d.member,
            d.over.join(", ")
        );
        match &d.security {
            Some(c) => {
                let _ = writeln!(
                    s,
                    "  secured: {} handshakes, {} refused, {} limited under load, {} sealed PDUs \
                     that did not open, {} replays dropped, {} claims refused (names, addresses)",
                    c.handshakes,
                    c.handshakes_refused,
                    c.handshakes_limited,
                    c.opens_failed,
                    c.replays,
                    c.refused_claims
                );
            }
            None => {
                let _ = writeln!(s, "  open: not secured");
            }
        }
        let _ = writeln!(s, "  neighbours:");
        for n in &d.neighbors {
            let protection = n.key.as_ref().map_or_else(
                || "not protected".to_owned(),
                |k| format!("key {k}, protected"),
            );
            let leaf = if n.leaf { ", a leaf" } else { "" };
            let _ = writeln!(
                s,
                "    {} (address {}) on port {}: {protection}{leaf}",
                n.name, n.address, n.port
            );
        }
        let members: Vec<String> = d.members.iter().map(u32::to_string).collect();
        let _ = writeln!(s, "  members: {}", members.join(" "));
        if d.leaf {
            let _ = writeln!(
                s,
                "  a leaf: its enroller routes for it; no link-state database"
            );
        } else {
            let leaves: Vec<String> = d.leaves.iter().map(u32::to_string).collect();
            let _ = writeln!(
                s,
                "  link-state database: {} entries; {} route computations",
                d.lsdb_size, d.counters.route_computations
            );
            let _ = writeln!(
                s,
                "  leaves: {}",
                if leaves.is_empty() {
                    "none".to_owned()
                } else {
                    leaves.join(" ")
                }
            );
        }
        let _ = writeln!(s, "  directory: {} entries", d.directory_size);
        let _ = writeln!(s, "  routes:");
        for rt in &d.routes {
            let hop = rt
                .next_hop
                .map_or_else(|| "?".to_owned(), |h| h.to_string());
            let _ = writeln!(s, "    {} via {hop} (port {})", rt.destination, rt.port);
        }
        for e in &d.directory {
            let at: Vec<String> = e.members.iter().map(u32::to_string).collect();
            let _ = writeln!(s, "    {} at {}", e.app, at.join(", "));
        }
        if !d.registered.is_empty() {
            let _ = writeln!(s, "  registered here: {}", d.registered.join(", "));
        }
        let _ = writeln!(s, "  flows:");
        for f in &d.flows {
            let at = f
                .remote_address
                .map_or_else(String::new, |a| format!(" at {a}"));
            let rtt = f.srtt_us.map_or_else(String::new, |t| {
                format!(", srtt {t} us, timeout {} us", f.rto_us)
            });
            let loss = if f.pdus_retransmitted > 0 || f.timeouts > 0 {
                format!(
                    ", {} loss events, {} timeouts, {} tail probes, {} needless retransmissions, {} in flight",
                    f.loss_events, f.timeouts, f.tail_probes, f.spurious_retransmissions, f.in_flight
                )
            } else {
                String::new()
            };
            let _ = writeln!(
                s,
                "    port {}: {} -> {}{at}, {}, {} PDUs sent ({} retransmitted), {} received{rtt}, window {} PDUs{loss}",
                f.port,
                f.local_app,
                f.remote_app,
                f.state,
                f.pdus_sent,
                f.pdus_retransmitted,
                f.pdus_received,
                f.cwnd
            );
        }
        let c = d.counters;
        let _ = writeln!(
            s,
            "  counters: {} PDUs in, {} out ({} to full members), {} relayed, {} malformed, {} dropped",
            c.pdus_in,
            c.pdus_out,
            c.pdus_to_members,
            c.pdus_relayed,
            c.pdus_malformed,
            c.pdus_dropped
        );
        let _ = writeln!(
            s,
            "  first data: {} flows went up with it on their request, {} bytes came with requests",
            c.flows_with_first_data, c.first_data_received
        );
    }
    if !r.programs.is_empty() {
        let _ = writeln!(s, "programs served ({}):", r.programs.len());
        for p in &r.programs {
            let names = if p.names.is_empty() {
                "no names".to_owned()
            } else {
                p.names.join(", ")
            };
            let _ = writeln!(
                s,
                "  pid {} (user {}, uid {}): {names}; {} flows asked for",
                p.pid, p.user, p.uid, p.flows
            );
        }
    }
    if let Some(t) = &r.tunnel {
        s.push_str(&tunnel(t));
    }
    s
}

/// What a tunnel (`rina tun`) carried, where each packet went.
fn tunnel(t: &report::TunnelReport) -> String {
    format!(
        "tunnel {}: {} packets from the device: {} to flows, {} to no peer, {} without a \
         flow; {} waited for room in their flow\n  {} SDUs sent ({} dropped with their \
         flow), {} received\n  {} packets to the device, {} SDUs not admitted, {} \
         refused by the device\n",
        t.device,
        t.from_device,
        t.to_flows,
        t.no_peer,
        t.no_flow,
        t.waited_for_room,
        t.sdus_sent,
        t.sdus_dropped,
        t.sdus_received,
        t.to_device,
        t.not_admitted,
        t.device_refused
    )
}
