//! The runtime end to end, without the interposer: two runtimes (a bootstrap member
//! and a member that enrolls through it over the UDP shim on loopback) carry a flow
//! between a socket pair and an abstract AF_UNIX listener, both directions, with
//! half-close; and the errors a refused or unreachable allocation gives.

use std::io::{Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::OwnedFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rina_core::ApplicationName;
use runtime::config::{
    Config, DefaultPolicy, DifConfig, DifIndex, DifKind, Join, Neighbor, NormalDifConfig, Settings,
    UdpShimConfig,
};

/// The normal DIF of these tests' rules (the second, over the UDP shim).
const NET: DifIndex = DifIndex(1);
use runtime::synthetic::{self, PeerRange};
use runtime::view::{FlowView, ListenView};
use runtime::{AppEnd, ConnectRequest, FlowError, Handle, ListenRequest, ListenTarget};

fn free_udp() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn config(bind: SocketAddr, join: Join) -> Arc<Config> {
    Arc::new(Config {
        path: PathBuf::from("test.toml"),
        difs: vec![
            DifConfig {
                name: "udp".into(),
                kind: DifKind::Udp(UdpShimConfig {
                    bind,
                    peers: vec![],
                    mtu: 65000,
                }),
            },
            DifConfig {
                name: "net".into(),
                kind: DifKind::Normal(Box::new(NormalDifConfig {
                    over: vec![DifIndex(0)],
                    ipcp_name: None,
                    join,
                    neighbors: vec![],
                    enrollment_timeout: Duration::from_secs(3),
                    keepalive_interval: Duration::from_secs(1),
                    keepalive_misses: 3,
                    security: None,
                    role: Default::default(),
                })),
            },
        ],
        connect: vec![],
        listen: vec![],
        names: vec![],
        default: DefaultPolicy::Pass,
        settings: Settings {
            connect_timeout: Duration::from_secs(5),
            linger: Duration::from_secs(5),
            ..Settings::default()
        },
        host: None,
        ingress: Vec::new(),
        egress: Vec::new(),
        tun: None,
    })
}

fn listener(name: &str) -> UnixListener {
    UnixListener::bind_addr(&UnixAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap()
}

/// What the test's client shows: its own address (as servers show it by default)
/// and port, and the address it connected to.
fn client_view() -> FlowView {
    FlowView {
        local: SocketAddr::new(
            synthetic::own_ip(&ApplicationName::new("client"), false),
            41000,
        ),
        peer: "127.0.0.1:5000".parse().unwrap(),
    }
}

fn connect(
    h: &Handle,
    app: &str,
    timeout: Duration,
) -> (Result<runtime::FlowInfo, FlowError>, UnixStream) {
    let (app_end, rt) = UnixStream::pair().unwrap();
    let r = h.connect(ConnectRequest {
        dif: NET,
        local_app: ApplicationName::new("client"),
        remote_app: ApplicationName::new(app),
        end: AppEnd::Stream(OwnedFd::from(rt)),
        view: Some(client_view()),
        recv_buffer: None,
        timeout,
    });
    (r, app_end)
}

/// A bootstrap member that registered "echo" behind an abstract listener (its name
/// made of `tag`), and a member enrolled through it: (server, client, listener).
fn echo_pair(tag: &str) -> (Handle, Handle, UnixListener) {
    let server_addr = free_udp();
    let server = Handle::start(
        config(server_addr, Join::Bootstrap { address: 1 }),
        "server",
    )
    .unwrap();
    let lname = format!(
        "rina-test-{tag}/{}/{}",
        std::process::id(),
        server_addr.port()
    );
    let l = listener(&lname);
    server
        .listen(ListenRequest {
            dif: NET,
            app: ApplicationName::new("echo"),
            target: ListenTarget::Stream(
                lname.into_bytes(),
                ListenView {
                    local: "0.0.0.0:5000".parse().unwrap(),
                    peers: PeerRange::DEFAULT,
                    v6_only: false,
                    recv_buffer: None,
                },
            ),
            pool: false,
            timeout: Duration::from_secs(5),
        })
        .unwrap();
    let client = Handle::start(
        config(
            free_udp(),
            Join::Enroll {
                via: DifIndex(0),
                neighbor: Neighbor::Endpoint(server_addr),
            },
        ),
        "client",
    )
    .unwrap();
    (server, client, l)
}

#[test]
fn flow_through_two_runtimes() {
    let (_server, client, l) = echo_pair("listen");
    let (r, app) = connect(&client, "echo", Duration::from_secs(5));
    r.unwrap();
    let (mut srv, peer) = l.accept().unwrap();
    let name = peer
        .as_abstract_name()
        .expect("the runtime connects from an abstract name");
    // The accepted end shows what the client shows, the other way round.
    let shown = runtime::view::parse_flow_name(name)
        .expect("a flow's name")
        .view;
    assert_eq!(shown.peer, client_view().local);
    assert_eq!(shown.local, client_view().peer);
    assert!(!shown.peer.ip().is_loopback());

    // 4 MiB each way at once, then half-closes.
    let up: Vec<u8> = (0..4u32 << 20).map(|i| (i * 7) as u8).collect();
    let down: Vec<u8> = (0..4u32 << 20).map(|i| (i * 13) as u8).collect();
    let mut app_w = app.try_clone().unwrap();
    let mut srv_w = srv.try_clone().unwrap();
    let (up2, down2) = (up.clone(), down.clone());
    let w1 = std::thread::spawn(move || {
        app_w.write_all(&up2).unwrap();
        app_w.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let w2 = std::thread::spawn(move || {
        srv_w.write_all(&down2).unwrap();
        srv_w.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut app_r = app;
    let r1 = std::thread::spawn(move || {
        let mut v = Vec::new();
        app_r.read_to_end(&mut v).unwrap();
        v
    });
    let mut got_up = Vec::new();
    srv.read_to_end(&mut got_up).unwrap();
    let got_down = r1.join().unwrap();
    w1.join().unwrap();
    w2.join().unwrap();
    assert!(got_up == up, "server got {} bytes", got_up.len());
    assert!(got_down == down, "client got {} bytes", got_down.len());
}

#[test]
fn refusal_and_unreachable_errors() {
    let server_addr = free_udp();
    let _server = Handle::start(
        config(server_addr, Join::Bootstrap { address: 1 }),
        "server",
    )
    .unwrap();
    let client = Handle::start(
        config(
            free_udp(),
            Join::Enroll {
                via: DifIndex(0),
                neighbor: Neighbor::Endpoint(server_addr),
            },
        ),
        "client",
    )
    .unwrap();
    assert_eq!(
        connect(&client, "nobody", Duration::from_secs(8)).0,
        Err(FlowError::NoSuchApplication)
    );

    // Nobody at the neighbour's address.
    let lonely = Handle::start(
        config(
            free_udp(),
            Join::Enroll {
                via: DifIndex(0),
                neighbor: Neighbor::Endpoint(free_udp()),
            },
        ),
        "lonely",
    )
    .unwrap();
    let start = std::time::Instant::now();
    let err = connect(&lonely, "nobody", Duration::from_secs(8))
        .0
        .unwrap_err();
    assert!(matches!(err, FlowError::Unreachable(_)), "{err:?}");
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "took {:?}",
        start.elapsed()
    );
}

/// A datagram flow: the server registers its UDP socket, the client's UDP socket
/// talks to the proxy it was given; boundaries are kept, the server sees the client at
/// its synthetic address, and a stream flow to the datagram-only name is refused.
#[test]
fn datagram_flow_through_two_runtimes() {
    use std::net::UdpSocket;
    let server_addr = free_udp();
    let server = Handle::start(
        config(server_addr, Join::Bootstrap { address: 1 }),
        "server",
    )
    .unwrap();
    let srv = UdpSocket::bind("127.0.0.1:0").unwrap();
    srv.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    server
        .listen(ListenRequest {
            dif: NET,
            app: ApplicationName::new("dgram"),
            target: ListenTarget::Datagram(srv.local_addr().unwrap()),
            pool: false,
            timeout: Duration::from_secs(5),
        })
        .unwrap();
    let client = Handle::start(
        config(
            free_udp(),
            Join::Enroll {
                via: DifIndex(0),
                neighbor: Neighbor::Endpoint(server_addr),
            },
        ),
        "client",
    )
    .unwrap();
    let app = UdpSocket::bind("127.0.0.1:0").unwrap();
    app.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let info = client
        .connect(ConnectRequest {
            dif: NET,
            local_app: ApplicationName::new("client"),
            remote_app: ApplicationName::new("dgram"),
            end: AppEnd::Datagram(app.local_addr().unwrap()),
            view: None,
            recv_buffer: None,
            timeout: Duration::from_secs(5),
        })
        .unwrap();
    let proxy = info.proxy.expect("a datagram flow has a proxy");
    let proxy_ip = synthetic::proxy_ip(&ApplicationName::new("client"));
    let mut buf = [0u8; 70_000];
    for size in [1usize, 1400, 9000, 60_000] {
        let msg: Vec<u8> = (0..size).map(|i| (i * 31 + size) as u8).collect();
        app.send_to(&msg, proxy).unwrap();
        let (n, from) = srv.recv_from(&mut buf).expect("the datagram arrives");
        assert_eq!(&buf[..n], &msg[..], "{size} bytes, one datagram");
        assert_eq!(from.ip(), std::net::IpAddr::V4(proxy_ip));
        srv.send_to(&buf[..n], from).unwrap();
        let (n, from) = app.recv_from(&mut buf).expect("the reply arrives");
        assert_eq!(from, proxy);
        assert_eq!(&buf[..n], &msg[..]);
    }
    let (r, _app_end) = connect(&client, "dgram", Duration::from_secs(5));
    assert_eq!(r, Err(FlowError::NoSuchApplication));
}

/// Accepts on `l` within five seconds.
fn accept_within(l: &UnixListener) -> UnixStream {
    l.set_nonblocking(true).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match l.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).unwrap();
                return s;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(std::time::Instant::now() < deadline, "nothing to accept");
                std::thread::yield_now();
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

/// Starts an early connect to `app` whose program wrote `first` already: its
/// application end, and where its result goes.
fn connect_early(
    h: &Handle,
    app: &str,
    first: &[u8],
) -> (
    UnixStream,
    std::sync::mpsc::Receiver<Result<runtime::FlowInfo, FlowError>>,
) {
    use std::os::fd::AsFd;
    let (mut app_end, rt) = UnixStream::pair().unwrap();
    app_end.write_all(first).unwrap();
    let end = runtime::pending::early_end(app_end.as_fd(), OwnedFd::from(rt)).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    h.connect_then(
        ConnectRequest {
            dif: NET,
            local_app: ApplicationName::new("client"),
            remote_app: ApplicationName::new(app),
            end,
            view: Some(client_view()),
            recv_buffer: None,
            timeout: Duration::from_secs(8),
        },
        move |r| drop(tx.send(r)),
    );
    (app_end, rx)
}

/// A destination reached once may be connected to early: what the program wrote before
/// the flow was up rides on the request and the stream is byte-exact both ways. If the
/// destination refuses after all, the program's end reads ECONNRESET, the result says
/// why, and the destination is no longer connected to early.
#[test]
fn early_connect_carries_the_first_bytes_and_resets_when_refused() {
    let (_server, client, l) = echo_pair("early");
    let echo = ApplicationName::new("echo");
    assert!(!client.may_connect_early(NET, &echo), "never reached yet");
    let (r, first) = connect(&client, "echo", Duration::from_secs(5));
    r.unwrap();
    drop((first, accept_within(&l)));
    assert!(client.may_connect_early(NET, &echo), "reached once");

    // Early: a request written before the flow is up, then more, then a half-close.
    let request = b"GET /early HTTP/1.1\r\n\r\n";
    let more: Vec<u8> = (0..200_000u32).map(|i| (i * 11) as u8).collect();
    let (mut app, result) = connect_early(&client, "echo", request);
    let mut srv = accept_within(&l);
    let mut app_w = app.try_clone().unwrap();
    let more2 = more.clone();
    let writer = std::thread::spawn(move || {
        app_w.write_all(&more2).unwrap();
        app_w.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut got = Vec::new();
    srv.read_to_end(&mut got).unwrap();
    writer.join().unwrap();
    assert!(
        got.starts_with(request) && got[request.len()..] == more[..],
        "the server got {} bytes, or not in order",
        got.len()
    );
    result
        .recv_timeout(Duration::from_secs(5))
        .unwrap()
        .unwrap();
    srv.write_all(b"answer").unwrap();
    drop(srv);
    let mut answer = Vec::new();
    app.read_to_end(&mut answer).unwrap();
    assert_eq!(answer, b"answer");

    // The listener is gone without a word: the destination refuses the next flow.
    drop(l);
    assert!(
        client.may_connect_early(NET, &echo),
        "still in the directory"
    );
    let (mut app, result) = connect_early(&client, "echo", b"GET /gone\r\n\r\n");
    assert_eq!(
        result.recv_timeout(Duration::from_secs(10)).unwrap(),
        Err(FlowError::NoSuchApplication)
    );
    let mut b = [0u8; 16];
    let err = app.read(&mut b).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    assert!(!client.may_connect_early(NET, &echo), "refused: forgotten");
}
