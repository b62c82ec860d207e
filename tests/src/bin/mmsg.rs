//! `mmsg ADDR`: sends three datagrams to ADDR with one `sendmmsg` on an unconnected UDP
//! socket, receives three answers with one `recvmmsg` (waiting up to 10 s), and prints
//! each answer's length and source address. Used by the datagram tests: the
//! interposer must translate every message's address both ways.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

fn main() {
    let dst: SocketAddr = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| {
            eprintln!("usage: mmsg ADDR");
            std::process::exit(2)
        });
    let SocketAddr::V4(dst) = dst else {
        eprintln!("mmsg: IPv4 only");
        std::process::exit(2)
    };
    let sock = UdpSocket::bind("0.0.0.0:0").expect("bind");
    let fd = sock.as_raw_fd();
    // SAFETY: plain C structures built and read here, all alive across the calls.
    unsafe {
        let mut name: libc::sockaddr_in = std::mem::zeroed();
        name.sin_family = libc::AF_INET as libc::sa_family_t;
        name.sin_port = dst.port().to_be();
        name.sin_addr.s_addr = u32::from(*dst.ip()).to_be();
        let payloads: Vec<Vec<u8>> = [10usize, 200, 3000].iter().map(|&n| vec![7u8; n]).collect();
        let mut iovs: Vec<libc::iovec> = payloads
            .iter()
            .map(|p| libc::iovec {
                iov_base: p.as_ptr() as *mut libc::c_void,
                iov_len: p.len(),
            })
            .collect();
        let mut msgs: Vec<libc::mmsghdr> = iovs
            .iter_mut()
            .map(|iov| {
                let mut m: libc::mmsghdr = std::mem::zeroed();
                m.msg_hdr.msg_name = (&raw mut name).cast();
                m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as u32;
                m.msg_hdr.msg_iov = iov;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        let sent = libc::sendmmsg(fd, msgs.as_mut_ptr(), 3, 0);
        assert_eq!(sent, 3, "sendmmsg: {}", std::io::Error::last_os_error());
        for m in &msgs {
            print!("sent {} ", m.msg_len);
        }
        println!();
        let mut bufs = vec![vec![0u8; 65536]; 3];
        let mut from: Vec<libc::sockaddr_in> = vec![std::mem::zeroed(); 3];
        let mut riovs: Vec<libc::iovec> = bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            })
            .collect();
        let mut rmsgs: Vec<libc::mmsghdr> = riovs
            .iter_mut()
            .zip(from.iter_mut())
            .map(|(iov, f)| {
                let mut m: libc::mmsghdr = std::mem::zeroed();
                m.msg_hdr.msg_name = (f as *mut libc::sockaddr_in).cast();
                m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as u32;
                m.msg_hdr.msg_iov = iov;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        let mut got = 0;
        while got < 3 {
            sock.set_read_timeout(Some(std::time::Duration::from_secs(10)))
                .expect("timeout");
            let n = libc::recvmmsg(
                fd,
                rmsgs.as_mut_ptr().add(got),
                (3 - got) as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            );
            assert!(n > 0, "recvmmsg: {}", std::io::Error::last_os_error());
            got += n as usize;
        }
        for (m, f) in rmsgs.iter().zip(&from) {
            let ip = std::net::Ipv4Addr::from(u32::from_be(f.sin_addr.s_addr));
            println!("got {} from {ip}:{}", m.msg_len, u16::from_be(f.sin_port));
        }
    }
}
