//! Host-name rules (issue 3): names matching a rule's regular expression resolve,
//! without DNS, to a synthetic address that connects to the named application.

use std::process::Stdio;
use std::time::Duration;

use rina_e2e::*;

/// The client's rules: enroll through the server's member; `echo.rina`-style names go
/// to the application named by the first label.
fn client_rules(server_udp: u16) -> String {
    format!(
        r#"
[[dif]]
name = "udp"
type = "udp"
bind = "127.0.0.1:0"

[[dif]]
name = "net"
type = "normal"
over = ["udp"]
enroll-via = {{ dif = "udp", neighbor = "127.0.0.1:{server_udp}" }}

[[name]]
match = '^(?P<app>[a-z0-9-]+)\.rina$'
dif = "net"
app = "{{app}}"
"#
    )
}

/// Every lookup function a program may call, from Python (ctypes reaches the C
/// functions the way any program does): getaddrinfo for each family, gethostbyname,
/// gethostbyname2, gethostbyname_r (gethostbyname_ex), gethostbyname2_r; results of
/// getaddrinfo freed by the real freeaddrinfo many times over; names no rule matches
/// still go to libc.
const LOOKUPS: &str = r#"
import ctypes, socket, sys
name = sys.argv[1]
v4 = socket.gethostbyname(name)
a, b, c, d = map(int, v4.split("."))
assert a == 127 and 64 <= b < 128, v4
assert socket.gethostbyname_ex(name)[2] == [v4]
for fam, want in ((socket.AF_INET, v4), (socket.AF_INET6, "::ffff:" + v4), (socket.AF_UNSPEC, v4)):
    got = {ai[4][0] for ai in socket.getaddrinfo(name, 80, fam, socket.SOCK_STREAM)}
    assert got == {want}, (fam, got)
for _ in range(2000):
    socket.getaddrinfo(name, "http")
libc = ctypes.CDLL(None)
class Hostent(ctypes.Structure):
    _fields_ = [("h_name", ctypes.c_char_p), ("h_aliases", ctypes.c_void_p),
                ("h_addrtype", ctypes.c_int), ("h_length", ctypes.c_int),
                ("h_addr_list", ctypes.POINTER(ctypes.POINTER(ctypes.c_ubyte)))]
def addr(h):
    h = h.contents
    return bytes(h.h_addr_list[0][:h.h_length])
libc.gethostbyname.restype = ctypes.POINTER(Hostent)
libc.gethostbyname2.restype = ctypes.POINTER(Hostent)
assert addr(libc.gethostbyname(name.encode())) == socket.inet_aton(v4)
assert addr(libc.gethostbyname2(name.encode(), socket.AF_INET6)) == socket.inet_pton(socket.AF_INET6, "::ffff:" + v4)
ret, res, err = Hostent(), ctypes.POINTER(Hostent)(), ctypes.c_int()
buf = ctypes.create_string_buffer(1024)
rc = libc.gethostbyname2_r(name.encode(), socket.AF_INET, ctypes.byref(ret), buf, 1024, ctypes.byref(res), ctypes.byref(err))
assert rc == 0 and addr(res) == socket.inet_aton(v4), rc
assert socket.gethostbyname("localhost") == "127.0.0.1", "other names go to libc"
print(v4)
"#;

/// curl, Python's urllib and nc reach a server registered as `echo` through the host
/// name `echo.rina`; every lookup function resolves it (without DNS) to the same
/// synthetic address.
#[test]
fn host_names_resolve_to_applications() {
    assert!(have("curl") && have("python3") && have("nc"));
    let dir = temp_dir();
    let (su, port) = (free_udp_port(), free_tcp_port());
    let (server_rules, _) = pair_rules(su, 0, port, "echo");
    let server_rules = rules(dir.path(), "server.toml", &server_rules);
    let client = rules(dir.path(), "client.toml", &client_rules(su));
    let site = dir.path().join("site");
    std::fs::create_dir(&site).unwrap();
    std::fs::write(site.join("index.html"), "reached by name\n").unwrap();
    let p = port.to_string();
    let mut server = spawn_server(
        &server_rules,
        &[
            "python3",
            "-m",
            "http.server",
            &p,
            "--bind",
            "127.0.0.1",
            "--directory",
            site.to_str().unwrap(),
        ],
        Stdio::null(),
        Stdio::null(),
    );
    let out = run_within(
        &client,
        &["python3", "-c", LOOKUPS, "echo.rina"],
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "lookups: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v4 = String::from_utf8_lossy(&out.stdout).trim().to_owned();

    let url = format!("http://echo.rina:{p}/");
    let curl = run_within(
        &client,
        &["curl", "-sS", "-v", "--max-time", "10", &url],
        Duration::from_secs(30),
    );
    let err = String::from_utf8_lossy(&curl.stderr);
    assert!(curl.status.success(), "curl: {err}");
    assert_eq!(String::from_utf8_lossy(&curl.stdout), "reached by name\n");
    assert!(
        err.contains(&format!("Connected to echo.rina ({v4})")),
        "{err}"
    );

    let urllib = format!(
        "import urllib.request; print(urllib.request.urlopen('{url}', timeout=10).read().decode(), end='')"
    );
    let py = run_within(
        &client,
        &["python3", "-c", &urllib],
        Duration::from_secs(60),
    );
    assert_eq!(
        String::from_utf8_lossy(&py.stdout),
        "reached by name\n",
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );

    // A name whose application nobody registered: refused, never sent over IP.
    let refused = run_within(
        &client,
        &[
            "curl",
            "-v",
            "-sS",
            "--max-time",
            "10",
            &format!("http://nobody.rina:{p}/"),
        ],
        Duration::from_secs(30),
    );
    assert_eq!(
        refused.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("Connection refused"));

    let log = server.kill_and_stderr();
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("\"GET / HTTP/1.1\" 200"))
            .count(),
        2,
        "{log}"
    );
    assert!(!tcp_port_in_use(port));
}
