//! `.hart` packages at a realistic size: a 50 MiB package (200 files of 256 KiB, half
//! incompressible like binaries and compressed assets, half text-like), built once with xz's
//! default preset as Habitat builds. Measured: verify (signature and hash, no unpacking),
//! install into a fresh root (verify, unpack, rename into place), and the refusal of the same
//! file with one payload byte changed (before anything is unpacked).
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use habitat_sidecar::pkg::{hart, keys};

const FILES: usize = 200;
const FILE_LEN: usize = 256 * 1024;

/// xorshift64*: deterministic filler without a dependency.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

const WORDS: [&str; 16] = [
    "service", "config", "port", "leader", "member", "health", "ring", "gossip", "update",
    "channel", "release", "origin", "package", "hook", "template", "census",
];

fn make_package(dir: &Path) {
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    fs::create_dir_all(dir.join("hooks")).unwrap();
    fs::write(dir.join("IDENT"), "bench/big/1.0.0/20260101000000\n").unwrap();
    fs::write(dir.join("hooks/run"), "#!/bin/sh\nexec sleep 1000\n").unwrap();
    for i in 0..FILES {
        let sub = dir.join(format!("lib/d{:02}", i % 20));
        fs::create_dir_all(&sub).unwrap();
        let mut data = Vec::with_capacity(FILE_LEN);
        if i % 2 == 0 {
            while data.len() < FILE_LEN {
                data.extend_from_slice(&noise.next().to_le_bytes());
            }
        } else {
            while data.len() < FILE_LEN {
                let r = noise.next();
                let line = format!(
                    "{} {} = {}\n",
                    WORDS[(r & 15) as usize],
                    WORDS[((r >> 4) & 15) as usize],
                    (r >> 8) % 100_000
                );
                data.extend_from_slice(line.as_bytes());
            }
        }
        data.truncate(FILE_LEN);
        fs::write(sub.join(format!("f{i:03}.bin")), data).unwrap();
    }
}

fn bench(c: &mut Criterion) {
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("keys");
    let pair = keys::generate_origin_key_pair(
        &cache,
        "bench",
        UNIX_EPOCH + Duration::from_secs(1_767_225_600),
        [5; 32],
    )
    .unwrap();
    let pkg = work.path().join("pkg");
    make_package(&pkg);
    let started = Instant::now();
    let good = hart::build_hart(&pkg, &pair.secret, &work.path().join("out")).unwrap();
    let built_in = started.elapsed();
    let size = fs::metadata(&good).unwrap().len();
    eprintln!(
        "package: {} MiB in {FILES} files; .hart {:.1} MiB, built (xz preset 6) in {:.1} s",
        (FILES * FILE_LEN) >> 20,
        size as f64 / (1 << 20) as f64,
        built_in.as_secs_f64()
    );

    let tampered = work.path().join("tampered.hart");
    let mut bytes = fs::read(&good).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    fs::write(&tampered, bytes).unwrap();

    let mut group = c.benchmark_group("hart_50MiB");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Bytes((FILES * FILE_LEN) as u64));
    group.bench_function("verify", |b| {
        b.iter(|| hart::verify(&good, &cache).unwrap())
    });
    group.bench_function("install", |b| {
        b.iter_batched(
            || tempfile::tempdir_in(work.path()).unwrap(),
            |root| {
                hart::install(&good, root.path(), &cache).unwrap();
                // Dropped (deleted) outside the measurement.
                root
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("install_tampered_refused", |b| {
        b.iter_batched(
            || tempfile::tempdir_in(work.path()).unwrap(),
            |root| {
                let err = hart::install(&tampered, root.path(), &cache).unwrap_err();
                assert!(err.to_string().contains("BLAKE2b hash is"), "{err}");
                assert!(
                    !root.path().join("pkgs").exists(),
                    "unpacked before refusing"
                );
                root
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
