//! Scripted applications for the simulator: a bulk transfer over one flow.

use std::time::Duration;

use crate::ipcp::{Event, FlowKind, ReadResult};
use crate::time::Instant;
use crate::ApplicationName;

use super::Sim;

/// The outcome of [`transfer`].
#[derive(Clone, Debug)]
pub struct TransferReport {
    /// Virtual time from the flow request to the last byte and end of stream.
    pub elapsed: Duration,
    /// PDUs the sender retransmitted.
    pub retransmissions: u64,
}

/// Registers `app` at `server`, allocates a reliable flow to it from `client`, sends
/// `data`, half-closes, and checks that the server reads exactly `data` then end of
/// stream. Waits for both members to be enrolled first.
///
/// # Errors
/// A message with the seed and trace tail if anything fails or stalls.
pub fn transfer(
    sim: &mut Sim,
    client: usize,
    server: usize,
    app: &str,
    data: &[u8],
    limit: Duration,
) -> Result<TransferReport, String> {
    let seed = sim.seed();
    let fail = |what: &str, s: &Sim, trace: Vec<String>| {
        format!("seed {seed}: {what} at {}\n{}", s.now(), trace.join("\n"))
    };
    let deadline = sim.now() + limit;
    let app = ApplicationName::new(app);
    sim.run_until(deadline, u64::MAX, |s| {
        s.nodes[client].ipcp.is_enrolled() && s.nodes[server].ipcp.is_enrolled()
    })
    .map_err(|e| fail("enrollment did not finish", sim, e.trace))?;
    let now = sim.now();
    sim.node(server)
        .ipcp
        .register(now, app.clone())
        .map_err(|e| e.to_string())?;
    sim.run_until(deadline, u64::MAX, |s| {
        !s.nodes[client].ipcp.directory().lookup(&app).is_empty()
    })
    .map_err(|e| fail("the registration did not reach the client", sim, e.trace))?;
    let start = sim.now();
    let port = sim.node(client).ipcp.allocate_flow(
        start,
        ApplicationName::new("client"),
        app,
        FlowKind::Reliable,
        start + Duration::from_secs(30),
    );
    let mut up = false;
    let mut server_port = None;
    let mut sent = 0usize;
    let mut closed = false;
    let mut received = Vec::with_capacity(data.len());
    let mut eof = false;
    let mut error = None;
    let result = sim.run_until(deadline, u64::MAX, |s| {
        let now: Instant = s.now();
        while let Some(ev) = s.node(client).events.pop_front() {
            match ev {
                Event::FlowAllocated { port: p } if p == port => up = true,
                Event::FlowAllocationFailed { error: e, .. } => {
                    error = Some(format!("allocation failed: {e}"))
                }
                Event::FlowClosed {
                    port: p,
                    reset: true,
                } if p == port => error = Some("flow reset".into()),
                _ => {}
            }
        }
        while let Some(ev) = s.node(server).events.pop_front() {
            if let Event::IncomingFlow { port: p, .. } = ev {
                server_port = Some(p);
            }
        }
        if up {
            let c = &mut s.node(client).ipcp;
            while sent < data.len() && c.can_write(port) {
                let end = (sent + 16 * 1024).min(data.len());
                if c.write(now, port, &data[sent..end]).is_err() {
                    break;
                }
                sent = end;
            }
            if sent == data.len() && !closed {
                c.close_write(now, port);
                closed = true;
            }
        }
        if let Some(sp) = server_port {
            loop {
                match s.node(server).ipcp.read(now, sp) {
                    ReadResult::Sdu(v) => received.extend_from_slice(&v),
                    ReadResult::Eof => {
                        eof = true;
                        break;
                    }
                    ReadResult::WouldBlock => break,
                    ReadResult::Closed => {
                        error = Some("server flow closed".into());
                        break;
                    }
                }
            }
        }
        error.is_some() || eof
    });
    if let Some(e) = error {
        return Err(fail(&e, sim, Vec::new()));
    }
    result.map_err(|e| {
        fail(
            &format!("stalled after {} of {} bytes", received.len(), data.len()),
            sim,
            e.trace,
        )
    })?;
    if received != data {
        let first = received.iter().zip(data).position(|(a, b)| a != b);
        return Err(format!(
            "seed {seed}: delivered bytes differ (len {} vs {}, first difference at {first:?})",
            received.len(),
            data.len()
        ));
    }
    let retransmissions = sim.nodes[client]
        .ipcp
        .flow_stats(port)
        .map_or(0, |s| s.pdus_retransmitted);
    Ok(TransferReport {
        elapsed: sim.now() - start,
        retransmissions,
    })
}
