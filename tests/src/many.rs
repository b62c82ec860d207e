//! DIFs of many members, for the scale test and benchmark: `rina node` members over
//! UDP on loopback in a random tree, and an echo server for short-lived clients.

/// An echo server (Python, threaded; its port is its argument): each connection gets
/// back what it sent, once it half-closes.
pub const ECHO_SERVER: &str = r#"
import socket, sys, threading
l = socket.socket(); l.bind(("127.0.0.1", int(sys.argv[1]))); l.listen(64)
def serve(c):
    got = b""
    while True:
        b = c.recv(65536)
        if not b: break
        got += b
    c.sendall(got); c.close()
while True:
    c, _ = l.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// A member's rules: a UDP shim at `udp` (0: any port), then DIF `net`, bootstrapped or
/// enrolled through the member at UDP port `via`, with `extra` after.
pub fn udp_member(udp: u16, via: Option<u16>, extra: &str) -> String {
    let join = match via {
        None => "bootstrap = true".to_owned(),
        Some(p) => format!("enroll-via = {{ neighbor = \"127.0.0.1:{p}\" }}"),
    };
    format!(
        "[[dif]]\nname = \"udp\"\ntype = \"udp\"\nbind = \"127.0.0.1:{udp}\"\n\n[[dif]]\nname = \"net\"\ntype = \"normal\"\nover = [\"udp\"]\n{join}\n{extra}\n"
    )
}

/// A random tree of `n` members, degree at most 4 (member i enrolls through an
/// earlier one with room, chosen by a fixed LCG): each member's parent and depth.
pub fn random_tree(n: usize) -> (Vec<Option<usize>>, Vec<usize>) {
    let (mut parent, mut depth, mut degree) = (vec![None], vec![0], vec![0usize; n]);
    let mut x: u64 = 12;
    for i in 1..n {
        let room: Vec<usize> = (0..i).filter(|&j| degree[j] < 4).collect();
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let p = room[(x >> 33) as usize % room.len()];
        degree[p] += 1;
        degree[i] += 1;
        parent.push(Some(p));
        depth.push(depth[p] + 1);
    }
    (parent, depth)
}
