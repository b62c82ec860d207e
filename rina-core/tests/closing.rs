//! How flows end, in the simulator: nothing a peer wrote before it closed, left or
//! reset the flow is lost. Every failure message carries the seed; `RINA_SIM_SEED=n`
//! replays one seed.

use std::time::Duration;

use rina_core::ipcp::{Event, FlowKind, ReadResult};
use rina_core::sim::Sim;

mod common;
use common::{connected_flow, connected_flow_of, joined_pair, read_all, run_for, seeds};

/// A peer that finished sending and then left (goodbye right after its last ack): the
/// receiver still reads every byte and the end of stream; nothing is reset.
#[test]
fn goodbye_after_end_of_stream_loses_nothing() {
    let (mut sim, a, b) = joined_pair(5);
    let (port, ap) = connected_flow(&mut sim, b, a, "sink");
    let data = vec![9u8; 50_000];
    let now = sim.now();
    sim.node(b).ipcp.write(now, port, &data).unwrap();
    sim.node(b).ipcp.close_write(now, port);
    // a's application does not read yet; b waits for its acks, then leaves.
    let until = sim.now() + Duration::from_secs(10);
    sim.run_until(until, u64::MAX, |s| s.node(b).ipcp.is_send_done(port))
        .unwrap();
    let now = sim.now();
    sim.node(b).ipcp.leave(now);
    run_for(&mut sim, Duration::from_secs(1));
    assert!(
        !sim.node(a)
            .events
            .iter()
            .any(|e| matches!(e, Event::FlowClosed { reset: true, .. })),
        "reset"
    );
    let (got, end) = read_all(&mut sim, a, ap);
    assert_eq!(end, ReadResult::Eof, "after {} bytes", got.len());
    assert_eq!(got, data);
    // Its own sending side counts as done: an exit drain does not wait for a peer
    // that left.
    let now = sim.now();
    sim.node(a).ipcp.close_write(now, ap);
    assert!(sim.node(a).ipcp.is_send_done(ap));
    assert!(sim.node(a).ipcp.is_finished(ap));
}

/// A datagram answer, the flow's end and the server's goodbye arrive together (the
/// server wrote its answer, deallocated and left at once; the client had not read
/// yet): the client still reads the answer, then the flow is closed. The goodbye
/// dropped the reset flow, and the answer with it, before. Many seeds.
#[test]
fn an_unreliable_answer_survives_the_flow_s_end() {
    for seed in seeds(20) {
        let (mut sim, server, client) = joined_pair(seed);
        let (cp, sp) = connected_flow_of(&mut sim, client, server, "dgram", FlowKind::Unreliable);
        let now = sim.now();
        sim.node(server).ipcp.write(now, sp, b"the answer").unwrap();
        run_for(&mut sim, Duration::from_micros(1));
        let now = sim.now();
        sim.node(server).ipcp.deallocate(now, sp);
        run_for(&mut sim, Duration::from_micros(1));
        let now = sim.now();
        sim.node(server).ipcp.leave(now);
        run_for(&mut sim, Duration::from_secs(1));
        let closed = sim
            .node(client)
            .events
            .iter()
            .any(|e| matches!(e, Event::FlowClosed { port, .. } if *port == cp));
        assert!(closed, "seed {seed}: the client was not told of the end");
        let now = sim.now();
        assert_eq!(
            sim.node(client).ipcp.read(now, cp),
            ReadResult::Sdu(b"the answer".to_vec()),
            "seed {seed}"
        );
        assert_eq!(
            sim.node(client).ipcp.read(now, cp),
            ReadResult::Closed,
            "seed {seed}"
        );
    }
}

/// The ordering that lost answers (a server writes its answer and closes without
/// reading while the client's request is on its way): the server's side learns that
/// nobody will read, waits until its answer and end of stream are acknowledged, and
/// resets the flow (the client has not finished). The client, whose application has
/// not read yet, still reads the whole answer and the end of stream after the reset;
/// only then does the flow say it is closed. Many seeds, so the reset meets the
/// client's acknowledgements and data in every order.
#[test]
fn a_reset_after_the_answer_was_acknowledged_loses_nothing() {
    for seed in seeds(20) {
        let (mut sim, server, client) = joined_pair(seed);
        check_answer_survives_reset(&mut sim, server, client)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
}

fn check_answer_survives_reset(sim: &mut Sim, server: usize, client: usize) -> Result<(), String> {
    let (cp, sp) = connected_flow(sim, client, server, "answers");
    let answer: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let now = sim.now();
    // The client's request goes out as the server writes and closes.
    sim.node(client).ipcp.write(now, cp, b"request!!!").unwrap();
    for chunk in answer.chunks(60_000) {
        sim.node(server).ipcp.write(now, sp, chunk).unwrap();
    }
    sim.node(server).ipcp.close_write(now, sp);
    let until = sim.now() + Duration::from_secs(20);
    sim.run_until(until, u64::MAX, |s| s.node(server).ipcp.is_send_done(sp))
        .map_err(|_| "the answer was never acknowledged".to_owned())?;
    // The server's application is gone: it never reads the request. Reset.
    let now = sim.now();
    sim.node(server).ipcp.deallocate(now, sp);
    run_for(sim, Duration::from_secs(1));
    let reset = sim
        .node(client)
        .events
        .iter()
        .any(|e| matches!(e, Event::FlowClosed { port, reset: true } if *port == cp));
    if !reset {
        return Err("the client was not told of the reset".into());
    }
    let (got, end) = read_all(sim, client, cp);
    if got != answer {
        return Err(format!(
            "{} of {} bytes of the answer",
            got.len(),
            answer.len()
        ));
    }
    if end != ReadResult::Eof {
        return Err(format!("{end:?} instead of the end of stream"));
    }
    // Then the flow is over: nothing more, and writing fails.
    let now = sim.now();
    if sim.node(client).ipcp.read(now, cp) != ReadResult::Closed {
        return Err("more than the answer and its end".into());
    }
    if sim.node(client).ipcp.write(now, cp, b"late").is_ok() {
        return Err("a write after the reset was taken".into());
    }
    sim.node(client).ipcp.deallocate(now, cp);
    if !sim.node(client).ipcp.flows().is_empty() {
        return Err("the reset flow stayed after deallocation".into());
    }
    Ok(())
}
