//! A request/response load generator used by the benchmark: fixed-size 64-byte
//! requests and responses over persistent connections, plain or pipelined.
//!
//! - `reqresp server ADDR`: a thread per connection reads 64-byte requests and answers
//!   each with a 64-byte response (the request with its first byte changed to `R`),
//!   until the connection ends. Whatever requests arrived together are answered with
//!   one write.
//! - `reqresp client ADDR SECONDS CONNS DEPTH [IDLE]`: CONNS persistent connections, a
//!   thread each, each keeping DEPTH requests outstanding (1: one request, its
//!   response, the next; more: pipelined, a new request for every response read);
//!   IDLE more connections (0 by default) are opened first and stay quiet, as a
//!   server's idle keep-alive clients. Every response is checked against its
//!   request. After a warm-up it prints `measuring`, counts for SECONDS, and prints
//!   `rps=... cpu_us_per_req=... cpu_us=... requests=...`, the CPU being this
//!   process's (getrusage, user + system) over the counted seconds.
//!
//! An ordinary socket program (TCP_NODELAY), run unmodified under the interposer.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The size of a request and of a response.
const SIZE: usize = 64;

/// How long the client runs before it counts.
const WARM_UP: Duration = Duration::from_millis(500);

/// How long a connection may wait for a response before the client fails.
const STALL: Duration = Duration::from_secs(10);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).map(String::as_str);
    let num = |i: usize, d: u64| arg(i).and_then(|v| v.parse().ok()).unwrap_or(d);
    match (arg(1), arg(2)) {
        (Some("server"), Some(addr)) => server(addr),
        (Some("client"), Some(addr)) => client(
            addr,
            num(3, 3),
            num(4, 1).max(1) as usize,
            num(5, 1).max(1) as usize,
            num(6, 0) as usize,
        ),
        _ => {
            eprintln!("usage: reqresp server ADDR | client ADDR SECONDS CONNS DEPTH [IDLE]");
            std::process::exit(2);
        }
    }
}

fn server(addr: &str) {
    let l = TcpListener::bind(addr).expect("bind");
    for s in l.incoming() {
        let Ok(s) = s else { continue };
        let _ = s.set_nodelay(true);
        std::thread::spawn(move || serve(s));
    }
}

/// Answers the requests of one connection until it ends.
fn serve(mut s: TcpStream) {
    let (mut buf, mut have) = (vec![0u8; 64 * SIZE], 0);
    loop {
        match s.read(&mut buf[have..]) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Ok(0) | Err(_) => return,
            Ok(n) => have += n,
        }
        let whole = have - have % SIZE;
        for req in buf[..whole].chunks_exact_mut(SIZE) {
            req[0] = b'R';
        }
        if s.write_all(&buf[..whole]).is_err() {
            return;
        }
        buf.copy_within(whole..have, 0);
        have -= whole;
    }
}

fn client(addr: &str, seconds: u64, conns: usize, depth: usize, idle: usize) {
    let quiet: Vec<TcpStream> = (0..idle)
        .map(|c| {
            TcpStream::connect(addr).unwrap_or_else(|e| {
                eprintln!("reqresp: idle connection {c}: {e}");
                std::process::exit(1);
            })
        })
        .collect();
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..conns)
        .map(|c| {
            let (addr, done, stop) = (addr.to_owned(), done.clone(), stop.clone());
            std::thread::spawn(move || {
                if let Err(e) = connection(&addr, c as u32, depth, &done, &stop) {
                    eprintln!("reqresp: connection {c}: {e}");
                    std::process::exit(1);
                }
            })
        })
        .collect();
    std::thread::sleep(WARM_UP);
    println!("measuring");
    let (n0, cpu0, t0) = (
        done.load(Ordering::Relaxed),
        rina_e2e::cpu_us(),
        Instant::now(),
    );
    std::thread::sleep(Duration::from_secs(seconds));
    let (n1, cpu1, secs) = (
        done.load(Ordering::Relaxed),
        rina_e2e::cpu_us(),
        t0.elapsed().as_secs_f64(),
    );
    let (n, cpu) = (n1 - n0, cpu1 - cpu0);
    println!(
        "rps={:.1} cpu_us_per_req={:.2} cpu_us={cpu:.0} requests={n} secs={secs:.3}",
        n as f64 / secs,
        cpu / n.max(1) as f64
    );
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    drop(quiet);
}

/// A request: `Q`, the connection, its number, and filler derived from both.
fn request(conn: u32, seq: u64, out: &mut [u8]) {
    out[0] = b'Q';
    out[1..5].copy_from_slice(&conn.to_le_bytes());
    out[5..13].copy_from_slice(&seq.to_le_bytes());
    for (i, b) in out[13..].iter_mut().enumerate() {
        *b = (seq as u8).wrapping_add(i as u8).wrapping_mul(31) ^ conn as u8;
    }
}

/// One connection: keeps `depth` requests outstanding, a new one for every response,
/// until `stop`; then reads the responses still due and closes.
fn connection(
    addr: &str,
    conn: u32,
    depth: usize,
    done: &AtomicU64,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(STALL))?;
    let (mut sent, mut got) = (0u64, 0u64);
    let mut out = vec![0u8; depth * SIZE];
    let (mut inb, mut have) = (vec![0u8; depth * SIZE], 0);
    let mut want = vec![0u8; SIZE];
    let mut issue = |s: &mut TcpStream, sent: &mut u64, k: usize| {
        for chunk in out[..k * SIZE].chunks_exact_mut(SIZE) {
            request(conn, *sent, chunk);
            *sent += 1;
        }
        s.write_all(&out[..k * SIZE])
    };
    issue(&mut s, &mut sent, depth)?;
    while got < sent {
        let n = match s.read(&mut inb[have..]) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => r?,
        };
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        have += n;
        let whole = have - have % SIZE;
        for resp in inb[..whole].chunks_exact(SIZE) {
            request(conn, got, &mut want);
            want[0] = b'R';
            if resp != want.as_slice() {
                return Err(std::io::Error::other(format!("bad response {got}")));
            }
            got += 1;
        }
        inb.copy_within(whole..have, 0);
        have -= whole;
        done.fetch_add((whole / SIZE) as u64, Ordering::Relaxed);
        if !stop.load(Ordering::Relaxed) {
            issue(&mut s, &mut sent, whole / SIZE)?;
        }
    }
    let _ = s.shutdown(Shutdown::Write);
    Ok(())
}
