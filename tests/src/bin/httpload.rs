//! A small HTTP server and load generator used by the benchmark: one connection (over
//! RINA, one flow) per request, the way curl-style clients work.
//!
//! - `httpload server ADDR BODY_BYTES`: answers every `GET` with a body of
//!   BODY_BYTES and closes the connection (a thread per connection).
//! - `httpload client ADDR SECONDS THREADS`: THREADS threads each connect, send a GET,
//!   read the whole answer, check it, and close, for SECONDS; prints `rps=...` and
//!   `cpu_us_per_req=...` (this process's CPU, getrusage user + system, over the run,
//!   per request answered; `cpu_us=...` is the total).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).map(String::as_str);
    let num = |i: usize, d: u64| arg(i).and_then(|v| v.parse().ok()).unwrap_or(d);
    match (arg(1), arg(2)) {
        (Some("server"), Some(addr)) => server(addr, num(3, 1024) as usize),
        (Some("client"), Some(addr)) => client(addr, num(3, 3), num(4, 8) as usize),
        _ => {
            eprintln!("usage: httpload server ADDR [BODY] | client ADDR [SECONDS] [THREADS]");
            std::process::exit(2);
        }
    }
}

fn server(addr: &str, body: usize) {
    let l = TcpListener::bind(addr).expect("bind");
    let body: Arc<Vec<u8>> = Arc::new((0..body).map(|i| b'a' + (i % 26) as u8).collect());
    for s in l.incoming() {
        let Ok(mut s) = s else { continue };
        let body = body.clone();
        std::thread::spawn(move || {
            let mut req = Vec::with_capacity(512);
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => return, // a bare connect: nothing to answer
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&body);
        });
    }
}

fn request(addr: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_nodelay(true);
    if s.write_all(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = Vec::with_capacity(2048);
    if s.read_to_end(&mut answer).is_err() {
        return false;
    }
    answer.starts_with(b"HTTP/1.1 200 OK")
}

fn client(addr: &str, seconds: u64, threads: usize) {
    let cpu0 = rina_e2e::cpu_us();
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (addr, done, failed, stop) =
                (addr.to_owned(), done.clone(), failed.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if request(&addr) {
                        done.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    let (secs, cpu) = (start.elapsed().as_secs_f64(), rina_e2e::cpu_us() - cpu0);
    let (ok, bad) = (done.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!(
        "rps={:.1} ok={ok} failed={bad} cpu_us_per_req={:.2} cpu_us={cpu:.0}",
        ok as f64 / secs,
        cpu / ok.max(1) as f64
    );
}
