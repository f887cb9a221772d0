//! Rings of real `hab sup run` processes on loopback addresses: forming, failure detection,
//! graceful leave, restarts, ring keys and their rotation, hostile input, a corrupt rumor store.
//! Each test owns one 127.0.X.0/24 block (X below), so the tests run in parallel.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use habitat_e2e::*;

/// Deadline for anything that takes a couple of seconds on an idle machine.
const SOON: Duration = Duration::from_secs(30);

// Blocks (127.0.X.0/24), one per test. The malformed-input test flips single bits of real
// datagrams that carry 127.0.250.n addresses, so no other test uses a block one bit away from
// 250 (122, 186, 218, 234, 242, 248, 251, 254).
const BLOCK_FIVE: u8 = 11;
const BLOCK_KILL: u8 = 12;
const BLOCK_RESTART: u8 = 13;
const BLOCK_TERM: u8 = 14;
const BLOCK_WRONG_KEY: u8 = 15;
const BLOCK_ROTATION: u8 = 16;
const BLOCK_STAGGERED_ROTATION: u8 = 17;
const BLOCK_CORRUPT_STORE: u8 = 18;
const BLOCK_STRICT_ROTATION: u8 = 20;
const BLOCK_FRESH_KEY_ROTATION: u8 = 21;
const BLOCK_PERSIST_ON_EXIT: u8 = 22;
const BLOCK_NO_NODE_NAMES: u8 = 61;
const BLOCK_FRESH_ROOT: u8 = 62;
const BLOCK_SHARED_NAME: u8 = 63;
const BLOCK_MALFORMED: u8 = 250;

const ALIVE_SERIES: &str = "hab_gossip_members{health=\"alive\"}";
const NAME_CONFLICTS_SERIES: &str = "hab_gossip_node_name_conflicts";
const UNKNOWN_KEY_SERIES: &str = "hab_gossip_dropped_total{reason=\"unknown_key\"}";

fn health_of(sup: &Supervisor, id: &str) -> Result<String, String> {
    sup.health()?
        .get(id)
        .cloned()
        .ok_or_else(|| format!("{} does not list {id}", sup.name()))
}

fn all_see(members: &[&Supervisor], id: &str, health: &str) -> Result<(), String> {
    for sup in members {
        let seen = health_of(sup, id)?;
        if seen != health {
            return Err(format!(
                "{} sees {id} {seen}, expected {health}",
                sup.name()
            ));
        }
    }
    Ok(())
}

#[test]
fn five_supervisors_on_distinct_addresses_form_a_ring() {
    let ring = start_ring(BLOCK_FIVE, 5, |_, b| b);
    wait_for(
        SOON,
        "every member sees 5 Alive members and 5 hello.default members alive in its census",
        || ring_is_whole(&ring, Some(HELLO_GROUP)),
    );
    for sup in &ring {
        let doc = sup.butterfly().unwrap();
        for other in &ring {
            let member = &doc["member"]["members"][other.member_id()];
            assert_eq!(
                member["address"].as_str(),
                Some(other.ip().to_string().as_str()),
                "{} lists {} at {member}",
                sup.name(),
                other.name()
            );
        }
        assert_eq!(sup.metric(ALIVE_SERIES).unwrap(), 5.0, "{}", sup.name());
    }
}

#[test]
fn a_sigkilled_member_is_declared_dead_by_every_survivor() {
    let mut ring = start_ring(BLOCK_KILL, 4, |_, b| b);
    wait_for(SOON, "the ring of 4 is whole", || {
        ring_is_whole(&ring, Some(HELLO_GROUP))
    });
    let mut victim = ring.pop().unwrap();
    let victim_id = victim.member_id();
    victim.kill();
    let survivors: Vec<&Supervisor> = ring.iter().collect();
    wait_for(
        SOON,
        "every survivor sees the killed member Confirmed",
        || all_see(&survivors, &victim_id, "Confirmed"),
    );
    let ids = member_ids(&ring);
    for sup in &ring {
        sees_exactly_alive(sup, &ids).unwrap();
        let population = sup.population(HELLO_GROUP).unwrap();
        assert_eq!(
            population.get(&victim_id).map(String::as_str),
            Some("confirmed"),
            "{} census: {population:?}",
            sup.name()
        );
    }
}

#[test]
fn a_restart_with_the_same_root_rejoins_with_a_higher_incarnation_and_no_ghost() {
    let mut ring = start_ring(BLOCK_RESTART, 4, |_, b| b);
    wait_for(SOON, "the ring of 4 is whole", || {
        ring_is_whole(&ring, Some(HELLO_GROUP))
    });
    let ids_before: BTreeSet<String> = member_ids(&ring).into_iter().collect();
    let victim_id = ring[3].member_id();
    let incarnation_before = ring[0].incarnation_of(&victim_id).unwrap();

    ring[3].kill();
    {
        let survivors: Vec<&Supervisor> = ring[..3].iter().collect();
        wait_for(
            SOON,
            "every survivor sees the killed member Confirmed",
            || all_see(&survivors, &victim_id, "Confirmed"),
        );
    }
    ring[3].restart();
    assert_eq!(ring[3].member_id(), victim_id, "the member id persists");

    wait_for(
        SOON,
        "every member sees the restarted member Alive with a higher incarnation, census whole",
        || {
            ring_is_whole(&ring, Some(HELLO_GROUP))?;
            for sup in &ring {
                let incarnation = sup.incarnation_of(&victim_id)?;
                if incarnation <= incarnation_before {
                    return Err(format!(
                        "{} sees incarnation {incarnation}, not above {incarnation_before}",
                        sup.name()
                    ));
                }
            }
            Ok(())
        },
    );
    for sup in &ring {
        let listed: BTreeSet<String> = sup.health().unwrap().into_keys().collect();
        assert_eq!(
            listed,
            ids_before,
            "{} /butterfly lists a ghost",
            sup.name()
        );
        let population: BTreeSet<String> =
            sup.population(HELLO_GROUP).unwrap().into_keys().collect();
        assert_eq!(
            population,
            ids_before,
            "{} census lists a ghost",
            sup.name()
        );
    }
}

#[test]
fn a_sigtermed_member_is_confirmed_by_the_others_well_before_the_suspicion_timeout() {
    // Suspicion lasts 150 * 0.2 s = 30 s: only a graceful leave can be seen within 10 s.
    let suspicion = Duration::from_secs(30);
    let mut ring = start_ring(BLOCK_TERM, 4, |_, b| b.args(["--suspicion-mult", "150"]));
    wait_for(SOON, "the ring of 4 is whole", || {
        ring_is_whole(&ring, Some(HELLO_GROUP))
    });
    let mut leaver = ring.pop().unwrap();
    let leaver_id = leaver.member_id();
    let sent = Instant::now();
    let status = leaver.terminate();
    assert!(status.success(), "SIGTERM exit: {status}");
    let others: Vec<&Supervisor> = ring.iter().collect();
    wait_for(
        suspicion / 3,
        "every other member sees the leaver Confirmed",
        || all_see(&others, &leaver_id, "Confirmed"),
    );
    eprintln!("graceful leave seen by all after {:?}", sent.elapsed());
    assert!(leaver.log().contains("leaving the ring"));
}

#[test]
fn a_member_with_the_wrong_ring_key_is_isolated() {
    let scratch = tempfile::tempdir().unwrap();
    let key_a = fs::read_to_string(generate_ring_key(&scratch.path().join("a"), "prod")).unwrap();
    let key_b = fs::read_to_string(generate_ring_key(&scratch.path().join("b"), "prod")).unwrap();
    assert_ne!(key_a, key_b);
    let ring = start_ring(BLOCK_WRONG_KEY, 4, |host, b| {
        b.env("HAB_RING_KEY", if host == 4 { &key_b } else { &key_a })
    });
    let (three, outsider) = ring.split_at(3);
    let outsider = &outsider[0];
    let outsider_id = outsider.member_id();
    let isolated = || -> Result<(), String> {
        for sup in three {
            if sup.health()?.contains_key(&outsider_id) {
                panic!("{} lists the member with the wrong key", sup.name());
            }
        }
        let seen: Vec<String> = outsider.health()?.into_keys().collect();
        if seen != [outsider_id.clone()] {
            panic!("the member with the wrong key lists {seen:?}");
        }
        Ok(())
    };
    wait_for(SOON, "the three with key A form a ring", || {
        isolated()?;
        ring_is_whole(three, Some(HELLO_GROUP))
    });
    wait_for(
        SOON,
        "every member has dropped another's envelopes as unknown_key",
        || {
            isolated()?;
            for sup in &ring {
                if sup.metric(UNKNOWN_KEY_SERIES)? == 0.0 {
                    return Err(format!("{} has no unknown_key drops yet", sup.name()));
                }
            }
            Ok(())
        },
    );
    // Several heal rounds (1 s) of the outsider knocking: still nobody lets it in.
    holds_throughout(
        Duration::from_secs(3),
        "isolation of the member with the wrong key",
        isolated,
    );
}

/// The last key list a member logged (`name-rev:state`).
fn keys_last_loaded(sup: &Supervisor) -> Vec<String> {
    ring_key_loads(&sup.log()).pop().unwrap_or_default()
}

/// Whether `unknown_key` drops fail the test at once or are only reported.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Drops {
    Forbidden,
    Reported,
}

fn check_unknown_key_drops(ring: &[Supervisor], drops: Drops) -> Result<(), String> {
    if drops == Drops::Reported {
        return Ok(());
    }
    for sup in ring {
        let dropped = sup.metric(UNKNOWN_KEY_SERIES)?;
        if dropped > 0.0 {
            panic!(
                "{} dropped {dropped} envelopes as unknown_key during the rotation",
                sup.name()
            );
        }
    }
    Ok(())
}

/// Waits for every member to receive `n` more datagrams, so sealed traffic did flow.
fn wait_for_traffic(ring: &[Supervisor], n: f64) {
    let series = "hab_gossip_packets_total{kind=\"datagram\",direction=\"in\"}";
    let before: Vec<f64> = ring.iter().map(|s| s.metric(series).unwrap()).collect();
    wait_for(SOON, "every member receives more datagrams", || {
        for (sup, before) in ring.iter().zip(&before) {
            if sup.metric(series)? < before + n {
                return Err(format!(
                    "{} has not received {n} more datagrams",
                    sup.name()
                ));
            }
        }
        Ok(())
    });
}

/// A second `prod` key with a later revision (revisions are whole seconds).
fn newer_key(scratch: &Path, than: &str) -> PathBuf {
    let mut attempt = 0;
    wait_for(SOON, "a key with a later revision is generated", || {
        attempt += 1;
        let path = generate_ring_key(&scratch.join(format!("k2-{attempt}")), "prod");
        if key_name_with_rev(&path).as_str() > than {
            Ok(path)
        } else {
            Err(format!("{} is not newer than {than}", path.display()))
        }
    })
}

/// A ring member holding ring key `prod` revision k1, installed `k1_age` ago.
fn keyed_member(
    k1: &Path,
    k1_age: Duration,
    activation: &'static str,
) -> impl Fn(u8, SupervisorBuilder) -> SupervisorBuilder {
    let relative = Path::new("cache/keys").join(k1.file_name().unwrap());
    let contents = fs::read(k1).unwrap();
    move |_, b| {
        b.file_modified_ago(relative.clone(), contents.clone(), k1_age)
            .args(["--ring", "prod", "--ring-key-activation", activation])
    }
}

/// Total `unknown_key` drops of the ring.
fn unknown_key_drops(ring: &[Supervisor]) -> f64 {
    ring.iter()
        .map(|s| s.metric(UNKNOWN_KEY_SERIES).unwrap())
        .sum()
}

/// Rotates from k1 to k2 as an operator would: copy k2 to every member, wait until every member
/// logs it active, delete k1. The ring is whole after every step; `unknown_key` drops fail the
/// test at once where the policy of that phase forbids them.
fn rotate(ring: &[Supervisor], k1: &Path, scratch: &Path, activating: Drops, deleting: Drops) {
    wait_for(SOON, "the ring with k1 is whole", || {
        check_unknown_key_drops(ring, activating)?;
        ring_is_whole(ring, Some(HELLO_GROUP))
    });
    let k1_name = key_name_with_rev(k1);
    let k2 = newer_key(scratch, &k1_name);
    let k2_active = format!("{}:active", key_name_with_rev(&k2));
    let k2_bytes = fs::read(&k2).unwrap();
    for sup in ring {
        write_atomically(&sup.keys_dir().join(k2.file_name().unwrap()), &k2_bytes);
    }
    wait_for(SOON, "every member logs k2 as active", || {
        check_unknown_key_drops(ring, activating)?;
        for sup in ring {
            let keys = keys_last_loaded(sup);
            if !keys.contains(&k2_active) {
                return Err(format!("{} holds {keys:?}", sup.name()));
            }
        }
        Ok(())
    });
    wait_for(SOON, "the ring is whole with k2 active", || {
        check_unknown_key_drops(ring, activating)?;
        ring_is_whole(ring, Some(HELLO_GROUP))
    });
    let activation_drops = unknown_key_drops(ring);

    for sup in ring {
        fs::remove_file(sup.keys_dir().join(k1.file_name().unwrap())).unwrap();
    }
    wait_for(SOON, "every member logs k2 as its only key", || {
        check_unknown_key_drops(ring, deleting)?;
        for sup in ring {
            let keys = keys_last_loaded(sup);
            if keys != [k2_active.clone()] {
                return Err(format!("{} holds {keys:?}", sup.name()));
            }
        }
        Ok(())
    });
    wait_for_traffic(ring, 20.0);
    wait_for(SOON, "the ring is whole with k2 alone", || {
        check_unknown_key_drops(ring, deleting)?;
        ring_is_whole(ring, Some(HELLO_GROUP))
    });
    check_unknown_key_drops(ring, deleting).unwrap();
    eprintln!(
        "unknown_key drops: {activation_drops} while k2 activated, {} after k1 was deleted",
        unknown_key_drops(ring) - activation_drops
    );
}

const KEY_INSTALLED_LONG_AGO: Duration = Duration::from_secs(3600);

/// Members are started `apart` from one another, so they re-read their keys at different moments.
fn start_keyed_ring(
    block: u8,
    configure: impl Fn(u8, SupervisorBuilder) -> SupervisorBuilder,
    apart: Duration,
) -> Vec<Supervisor> {
    if apart.is_zero() {
        return start_ring(block, 3, configure);
    }
    let mut ring: Vec<Supervisor> = Vec::new();
    for host in 1..=3u8 {
        if let Some(previous) = ring.last() {
            let started = previous.started();
            wait_until(SOON, "the stagger between starts passes", || {
                started.elapsed() >= apart
            });
        }
        let peers = (1..host).map(|h| ip(block, h));
        ring.push(configure(host, Supervisor::at(block, host).peers(peers)).start());
    }
    ring
}

#[test]
fn a_two_key_rotation_keeps_the_ring_whole() {
    let scratch = tempfile::tempdir().unwrap();
    let k1 = generate_ring_key(&scratch.path().join("k1"), "prod");
    let configure = keyed_member(&k1, KEY_INSTALLED_LONG_AGO, "1");
    let ring = start_keyed_ring(BLOCK_ROTATION, configure, Duration::ZERO);
    // The strict version (no unknown_key drop at all) is the next test.
    rotate(&ring, &k1, scratch.path(), Drops::Reported, Drops::Reported);
}

#[test]
fn a_two_key_rotation_drops_nothing_as_unknown_key() {
    let scratch = tempfile::tempdir().unwrap();
    let k1 = generate_ring_key(&scratch.path().join("k1"), "prod");
    let configure = keyed_member(&k1, KEY_INSTALLED_LONG_AGO, "1");
    let ring = start_keyed_ring(BLOCK_STRICT_ROTATION, configure, Duration::ZERO);
    rotate(
        &ring,
        &k1,
        scratch.path(),
        Drops::Forbidden,
        Drops::Forbidden,
    );
}

#[test]
fn a_new_key_activates_without_drops_when_activation_outlasts_key_reloads() {
    // Activation 7 s is longer than the 5 s between two readings of the keys dir, so every
    // member holds k2 before any seals with it, whatever moment each re-reads its keys.
    // Deleting k1 afterwards is only checked to keep the ring whole: the node seals to a peer
    // with the key that peer last used, so a pair can still be talking k1 when it goes away.
    let scratch = tempfile::tempdir().unwrap();
    let k1 = generate_ring_key(&scratch.path().join("k1"), "prod");
    let configure = keyed_member(&k1, KEY_INSTALLED_LONG_AGO, "7");
    let ring = start_keyed_ring(BLOCK_STAGGERED_ROTATION, configure, Duration::from_secs(2));
    rotate(
        &ring,
        &k1,
        scratch.path(),
        Drops::Forbidden,
        Drops::Reported,
    );
}

#[test]
fn a_rotation_soon_after_the_first_key_was_installed_drops_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let k1 = generate_ring_key(&scratch.path().join("k1"), "prod");
    // k1 was installed just now, so it is still pending when k2 arrives.
    let configure = keyed_member(&k1, Duration::ZERO, "7");
    let ring = start_keyed_ring(BLOCK_FRESH_KEY_ROTATION, configure, Duration::from_secs(2));
    rotate(
        &ring,
        &k1,
        scratch.path(),
        Drops::Forbidden,
        Drops::Reported,
    );
}

/// A captured datagram with one bit flipped; bytes 0x7f (127, the first octet of every
/// loopback address in the body) are left alone so no flip sends the member to a public address.
fn flip_one_bit(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut out = seed.to_vec();
    let candidates: Vec<usize> = (0..out.len()).filter(|&i| out[i] != 0x7f).collect();
    if let Some(&i) = candidates.get(rng.below(candidates.len().max(1))) {
        out[i] ^= 1 << rng.below(8);
    }
    out
}

/// A fresh envelope header (cleartext, now, random nonce), so the replay guard lets it through.
fn fresh_header(rng: &mut Rng, datagram: &mut [u8]) {
    if datagram.len() < 29 {
        return;
    }
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    datagram[5..13].copy_from_slice(&now_ms.to_be_bytes());
    datagram[13..29].copy_from_slice(&rng.bytes(16));
}

fn garbage_datagram(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let seed = &seeds[rng.below(seeds.len())];
    match rng.below(10) {
        // Random bytes of any length, some above the 1400-byte limit.
        0..=3 => {
            let len = rng.below(1600);
            rng.bytes(len)
        }
        // A real datagram cut short, with a fresh nonce.
        4 | 5 => {
            let mut out = seed[..rng.below(seed.len())].to_vec();
            fresh_header(rng, &mut out);
            out
        }
        // A real datagram with one bit flipped, as sent (the first of each nonce is new).
        6 => flip_one_bit(rng, seed),
        // A real datagram with one bit flipped and a fresh nonce: reaches the body decoders.
        _ => {
            let mut out = flip_one_bit(rng, seed);
            fresh_header(rng, &mut out);
            out
        }
    }
}

fn send_frame(to: SocketAddr, bytes: &[u8]) {
    // The member may close the connection early; only the member's survival matters.
    if let Ok(mut stream) = TcpStream::connect_timeout(&to, Duration::from_secs(5)) {
        let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
        let _ = stream.write_all(bytes);
    }
}

#[test]
fn malformed_input_never_kills_a_running_member() {
    let mut rng = Rng::from_env_or_clock();
    // Members 2 and 3 also announce themselves to a "peer" that is this socket: real datagrams
    // to corrupt.
    let capture_addr = SocketAddr::from((ip(BLOCK_MALFORMED, 50), GOSSIP_PORT));
    let capture = UdpSocket::bind(capture_addr).unwrap();
    capture
        .set_read_timeout(Some(Duration::from_millis(250)))
        .unwrap();
    let mut ring = start_ring(BLOCK_MALFORMED, 3, |host, b| {
        if host == 1 {
            b
        } else {
            b.peer(ip(BLOCK_MALFORMED, 50))
        }
    });
    wait_for(SOON, "the ring of 3 is whole", || {
        ring_is_whole(&ring, Some(HELLO_GROUP))
    });
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    wait_for(SOON, "four real datagrams are captured", || {
        let mut buf = [0u8; 2048];
        if let Ok((len, _)) = capture.recv_from(&mut buf) {
            seeds.push(buf[..len].to_vec());
        }
        if seeds.len() >= 4 {
            Ok(())
        } else {
            Err(format!("{} captured", seeds.len()))
        }
    });

    let ids = member_ids(&ring);
    let dropped_before = metric_sum(&ring[0].metrics().unwrap(), "hab_gossip_dropped_total");
    let sender = UdpSocket::bind(SocketAddr::from((ip(BLOCK_MALFORMED, 60), 0))).unwrap();
    for i in 0..5_000 {
        let datagram = garbage_datagram(&mut rng, &seeds);
        let _ = sender.send_to(&datagram, ring[0].gossip_addr());
        if i % 250 == 249 {
            // Bursts, so the kernel's receive buffer is not simply overrun.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let to = ring[0].gossip_addr();
    send_frame(to, &u32::MAX.to_be_bytes());
    send_frame(
        to,
        &[&(4 * 1024 * 1024 + 1u32).to_be_bytes()[..], &rng.bytes(64)].concat(),
    );
    send_frame(to, &[&1000u32.to_be_bytes()[..], &rng.bytes(10)].concat());
    send_frame(to, &[&200u32.to_be_bytes()[..], &rng.bytes(200)].concat());
    for seed in seeds.iter().take(3) {
        let mut body = flip_one_bit(&mut rng, seed);
        fresh_header(&mut rng, &mut body);
        let len = u32::try_from(body.len()).unwrap();
        send_frame(to, &[&len.to_be_bytes()[..], &body].concat());
    }

    assert!(ring[0].healthz(), "the member stopped answering /healthz");
    wait_for(
        SOON,
        "every member is Alive again in the eyes of the target",
        || {
            if let Some(status) = ring[0].exit_status() {
                panic!("the target exited: {status}");
            }
            let health = ring[0].health()?;
            for id in &ids {
                if health.get(id).map(String::as_str) != Some("Alive") {
                    return Err(format!("target sees {health:?}"));
                }
            }
            Ok(())
        },
    );
    for sup in &ring[1..] {
        wait_for(SOON, "the peers still see the target Alive", || {
            (health_of(sup, &ids[0])? == "Alive")
                .then_some(())
                .ok_or_else(|| format!("{} does not see the target Alive", sup.name()))
        });
    }
    eprintln!("the target lists {:?}", ring[0].health().unwrap());
    let metrics = ring[0].metrics().unwrap();
    let dropped_after = metric_sum(&metrics, "hab_gossip_dropped_total");
    eprintln!(
        "dropped {} -> {dropped_after}: {:?}",
        dropped_before,
        dropped_by_reason(&metrics)
    );
    assert!(
        dropped_after > dropped_before,
        "hab_gossip_dropped_total did not grow: {dropped_after}"
    );
    assert!(ring[0].healthz(), "the member stopped answering /healthz");
}

#[test]
fn a_corrupt_rumor_store_is_moved_aside_and_the_member_still_starts_and_rejoins() {
    let mut ring = start_ring(BLOCK_CORRUPT_STORE, 3, |_, b| b);
    wait_for(SOON, "the ring of 3 is whole", || {
        ring_is_whole(&ring, Some(HELLO_GROUP))
    });
    let id = ring[2].member_id();
    let rumors = ring[2].rumor_file();
    wait_until(SOON, "the member has written its rumor store", || {
        rumors.is_file()
    });
    assert!(ring[2].terminate().success());
    fs::write(&rumors, b"\x00\xffthis is not a rumor store\x13\x37").unwrap();

    ring[2].restart();
    assert_eq!(ring[2].member_id(), id);
    assert!(
        ring[2].log().contains("rumor store is corrupt"),
        "no warning about the corrupt store"
    );
    let data_dir = rumors.parent().unwrap();
    let moved: Vec<String> = fs::read_dir(data_dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("rumors.corrupt-"))
        .collect();
    assert_eq!(moved.len(), 1, "{} holds {moved:?}", data_dir.display());
    wait_for(SOON, "the ring of 3 is whole again", || {
        ring_is_whole(&ring, Some(HELLO_GROUP))
    });
}

#[test]
fn a_sigtermed_member_writes_its_rumor_store_before_exiting() {
    let mut ring = start_ring(BLOCK_PERSIST_ON_EXIT, 2, |_, b| b);
    wait_for(SOON, "the ring of 2 is whole", || {
        ring_is_whole(&ring, Some(HELLO_GROUP))
    });
    // Right after start-up: the debounce window of the first write is still open.
    let mut leaver = ring.pop().unwrap();
    leaver.restart();
    assert!(leaver.terminate().success());
    let rumors = leaver.rumor_file();
    assert!(
        rumors.is_file(),
        "no rumor store at {} after a graceful exit",
        rumors.display()
    );
}

/// `/butterfly`'s `node_name_conflicts`: node name -> the ids of the up members sharing it.
fn name_conflicts(sup: &Supervisor) -> Result<BTreeMap<String, Vec<String>>, String> {
    let doc = sup.butterfly()?;
    serde_json::from_value(doc["node_name_conflicts"].clone())
        .map_err(|e| format!("{}: node_name_conflicts: {e}: {doc}", sup.name()))
}

/// `sup` shows exactly one node name (`name`, when the test knows it) shared by `ids` in
/// `/butterfly` and `/metrics`, and replaced nobody over it.
fn reports_one_shared_name(sup: &Supervisor, name: Option<&str>, ids: &[String]) {
    let conflicts = name_conflicts(sup).unwrap();
    let shared: Vec<(&str, &[String])> = conflicts
        .iter()
        .map(|(n, holders)| (n.as_str(), holders.as_slice()))
        .collect();
    assert!(
        shared.len() == 1 && shared[0].1 == ids && name.is_none_or(|n| n == shared[0].0),
        "{} should report {name:?} shared by {ids:?}: {conflicts:?}",
        sup.name()
    );
    assert_eq!(
        sup.metric(NAME_CONFLICTS_SERIES).unwrap(),
        1.0,
        "{}",
        sup.name()
    );
    assert!(
        !sup.log().contains("member replaced"),
        "{} replaced a member",
        sup.name()
    );
}

/// Every process here shares the host name: without `--node-name`, five supervisors share one
/// node name. A member is its id, so they form a ring and keep it, and report the conflict.
#[test]
fn five_supervisors_without_node_names_form_a_ring_and_keep_it() {
    let ring = start_ring(BLOCK_NO_NODE_NAMES, 5, |_, b| b.without_node_name());
    let started = Instant::now();
    wait_for(
        SOON,
        "every member sees 5 Alive members and 5 hello.default members alive in its census",
        || ring_is_whole(&ring, Some(HELLO_GROUP)),
    );
    eprintln!(
        "ring of 5 without node names whole after {:?}",
        started.elapsed()
    );
    // Members that evict each other by name would leave it whole for moments only.
    holds_throughout(
        Duration::from_secs(5),
        "every member sees exactly the 5 Alive",
        || ring_is_whole(&ring, None),
    );
    let mut ids = member_ids(&ring);
    ids.sort();
    for sup in &ring {
        reports_one_shared_name(sup, None, &ids);
    }
}

/// A pod killed and restarted without its data dir: a new member id under the same explicit
/// name and address. Its old id goes at once; with suspicion lasting 30 s, SWIM alone would
/// have kept it listed (Suspect, then Confirmed) for much longer.
#[test]
fn a_member_restarted_with_its_name_and_a_fresh_root_replaces_its_old_id_at_once() {
    let mut ring = start_ring(BLOCK_FRESH_ROOT, 4, |_, b| {
        b.args(["--suspicion-mult", "150"])
    });
    wait_for(SOON, "the ring of 4 is whole", || {
        ring_is_whole(&ring, Some(HELLO_GROUP))
    });
    let old_id = ring[3].member_id();
    ring[3].kill();
    ring[3].restart_with_fresh_root();
    let restarted = Instant::now();
    let new_id = ring[3].member_id();
    assert_ne!(new_id, old_id, "a fresh root makes a new member id");
    wait_for(
        Duration::from_secs(5),
        "every member sees the 4 current ids Alive and no longer lists the old id",
        || {
            ring_is_whole(&ring, Some(HELLO_GROUP))?;
            for sup in &ring {
                if sup.health()?.contains_key(&old_id) {
                    return Err(format!("{} still lists {old_id}", sup.name()));
                }
            }
            Ok(())
        },
    );
    eprintln!(
        "old id gone everywhere {:?} after the restart",
        restarted.elapsed()
    );
    for sup in &ring[..3] {
        assert!(
            sup.log().contains("member replaced"),
            "{} logged no replacement",
            sup.name()
        );
    }
}

/// Two supervisors given one --node-name by mistake both answer: both stay members, and the
/// conflict shows in /butterfly and /metrics.
#[test]
fn two_answering_members_with_one_explicit_name_are_both_kept_and_reported() {
    let ring = start_ring(BLOCK_SHARED_NAME, 3, |host, b| {
        if host <= 2 {
            b.node_name("shared")
        } else {
            b
        }
    });
    wait_for(SOON, "the ring of 3 is whole", || {
        ring_is_whole(&ring, Some(HELLO_GROUP))
    });
    holds_throughout(
        Duration::from_secs(3),
        "every member sees exactly the 3 Alive",
        || ring_is_whole(&ring, None),
    );
    let mut pair = member_ids(&ring[..2]);
    pair.sort();
    for sup in &ring {
        reports_one_shared_name(sup, Some("shared"), &pair);
    }
    assert!(
        ring[2].log().contains("share a node name"),
        "the third member logged no conflict warning"
    );
}
