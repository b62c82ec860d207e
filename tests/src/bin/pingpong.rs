//! A 64-byte request/response timer used by the benchmark.
//!
//! `pingpong server ADDR` echoes every 64-byte message on each connection;
//! `pingpong client ADDR COUNT` sends COUNT messages one at a time (after 200 warm-up
//! round trips) and prints the median and p99 round trip in microseconds.

#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match (args.get(1).map(String::as_str), args.get(2)) {
        (Some("server"), Some(addr)) => server(addr),
        (Some("client"), Some(addr)) => {
            let count = args.get(3).and_then(|c| c.parse().ok()).unwrap_or(10_000);
            client(addr, count);
        }
        _ => {
            eprintln!("usage: pingpong server ADDR | pingpong client ADDR [COUNT]");
            std::process::exit(2);
        }
    }
}

fn server(addr: &str) {
    let l = TcpListener::bind(addr).expect("bind");
    for s in l.incoming() {
        let Ok(mut s) = s else { continue };
        let _ = s.set_nodelay(true);
        std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while s.read_exact(&mut buf).is_ok() {
                if s.write_all(&buf).is_err() {
                    break;
                }
            }
        });
    }
}

fn client(addr: &str, count: usize) {
    let mut s = TcpStream::connect(addr).expect("connect");
    let _ = s.set_nodelay(true);
    let mut buf = [7u8; 64];
    let mut rtts = Vec::with_capacity(count);
    for i in 0..count + 200 {
        let t = Instant::now();
        s.write_all(&buf).expect("write");
        s.read_exact(&mut buf).expect("read");
        if i >= 200 {
            rtts.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    rtts.sort_by(f64::total_cmp);
    let median = rtts[rtts.len() / 2];
    let p99 = rtts[rtts.len() * 99 / 100];
    println!("median_us={median:.1} p99_us={p99:.1}");
}
