//! Any messages into the channels of a secured N-1 flow: a responder waiting for an
//! initiation, an initiator waiting for a response, and a pair with a session (the
//! bytes are also tried as a sealed message's body). Never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rina_core::secure::{Channel, Counters, Credentials, Ctx, Limits, SecureRng, Security};
use rina_core::Instant;

fn security(me: u8, peer: u8) -> Security {
    Security {
        creds: Credentials::new(&[me; 32], None),
        trusted: [Credentials::new(&[peer; 32], None).public()].into(),
        limits: Limits::default(),
        access: Default::default(),
    }
}

fuzz_target!(|data: &[u8]| {
    let (sa, sb) = (security(1, 2), security(2, 1));
    let (mut ra, mut rb) = (SecureRng::from_seed([1; 32]), SecureRng::from_seed([2; 32]));
    let (mut ca, mut cb) = (Counters::default(), Counters::default());
    let now = Instant::ZERO;
    let mut a = Channel::initiator(&mut Ctx { sec: &sa, rng: &mut ra, counters: &mut ca, now });
    let mut b = Channel::responder(now);
    for chunk in data.split(|&x| x == 0xfe) {
        for ch in [&mut a, &mut b] {
            let mut m = chunk.to_vec();
            let (sec, rng, counters) = if ch.is_initiator() {
                (&sa, &mut ra, &mut ca)
            } else {
                (&sb, &mut rb, &mut cb)
            };
            let _ = ch.handle(&mut Ctx { sec, rng, counters, now }, &mut m);
            while ch.poll_transmit().is_some() {}
            while ch.poll_event().is_some() {}
        }
    }
});
