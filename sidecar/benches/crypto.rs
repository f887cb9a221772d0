//! Envelope cost per gossip datagram: seal, open, and both, for a 1,400-byte body (about the
//! largest datagram that fits a 1,500-byte MTU) under a real ring key; and the replay check
//! every opened envelope goes through.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use habitat_sidecar::gossip::crypto::{
    Keyring, ReplayGuard, RingKey, DEFAULT_REPLAY_WINDOW, ENVELOPE_OVERHEAD,
};

const BODY_LEN: usize = 1_400;
const NOW_MS: u64 = 1_700_000_000_000;

fn ring() -> Keyring {
    Keyring::new(vec![RingKey::new("bench", "20260101000000", [0x42; 32])])
}

fn bench(c: &mut Criterion) {
    let ring = ring();
    let body = vec![0x5a; BODY_LEN];
    let sealed = ring.seal(&body, NOW_MS, [7; 16]);
    let mut out = Vec::with_capacity(BODY_LEN + ENVELOPE_OVERHEAD);

    let mut group = c.benchmark_group("envelope");
    group.throughput(Throughput::Bytes(BODY_LEN as u64));
    group.bench_function("seal_1400", |b| {
        b.iter(|| {
            out.clear();
            ring.seal_into(black_box(&body), NOW_MS, [7; 16], &mut out);
            black_box(out.len())
        })
    });
    group.bench_function("open_1400", |b| b.iter(|| ring.open(black_box(&sealed))));
    group.bench_function("seal_open_1400", |b| {
        b.iter(|| {
            let packet = ring.seal(black_box(&body), NOW_MS, [7; 16]);
            ring.open(&packet)
        })
    });
    group.finish();

    // Steady state of one member receiving 20 messages a second: the guard holds a full window.
    c.bench_function("replay_check", |b| {
        let mut guard = ReplayGuard::new(DEFAULT_REPLAY_WINDOW);
        let mut i: u64 = 0;
        b.iter(|| {
            i += 1;
            let now = NOW_MS + i * 50;
            let mut nonce = [0u8; 24];
            nonce[..8].copy_from_slice(&now.to_be_bytes());
            nonce[8..16].copy_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
            guard.check(now, now, black_box(&nonce))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
