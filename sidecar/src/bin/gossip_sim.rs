//! `gossip-sim`: runs the real gossip code for N members over the simulated network and prints,
//! as its last line, one JSON object of figures (dissemination, sends, idle traffic, false
//! deaths, failure detection, wall time, peak RSS). Same seed, same figures.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use habitat_sidecar::gossip::crypto::{Keyring, RingKey};
use habitat_sidecar::gossip::member::{Health, MemberId};
use habitat_sidecar::gossip::node::NodeEvent;
use habitat_sidecar::gossip::rumor::{
    Rumor, RumorKey, ServiceConfigRumor, ServiceGroup, ServiceRumor, SysInfo,
};
use habitat_sidecar::gossip::sim::{Sim, SimConfig};

#[derive(Parser, Debug)]
#[command(about = "Measure the gossip ring in simulation")]
struct Args {
    #[arg(long, default_value_t = 1000)]
    members: usize,
    /// UDP loss probability, 0.0..1.0.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Simulated minutes of steady state over which false deaths are counted.
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Run with a cleartext ring instead of a ring key.
    #[arg(long)]
    cleartext: bool,
    /// Form the ring by joining through member 0 instead of starting from a formed ring.
    #[arg(long)]
    cold_start: bool,
    /// Inject the ~512 B rumor as a service rumor (spread by the epidemic alone) instead of a
    /// config rumor, which its origin tells every member at once as `hab config apply` does.
    #[arg(long)]
    relayed: bool,
}

#[derive(Default)]
struct Observed {
    /// When each member first stored the injected rumor.
    rumor_at: HashMap<usize, u64>,
    watch_key: Option<RumorKey>,
    /// When each member declared the crashed member down.
    detected_at: HashMap<usize, u64>,
    crashed: Option<MemberId>,
    counting_false_deaths: bool,
    /// Live members (by id and incarnation) that some member declared down.
    false_deaths: HashSet<(MemberId, u64)>,
    /// Declarations of those deaths, summed over observers.
    false_death_observations: u64,
}

fn percentile_ms(mut samples: Vec<u64>, p: f64) -> Option<u64> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let rank = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
    Some(samples[rank - 1])
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn total_bytes_sent(sim: &Sim) -> u64 {
    (0..sim.len())
        .filter_map(|i| sim.node(i))
        .map(|n| n.stats().bytes_sent)
        .sum()
}

fn total_rumor_sends(sim: &Sim) -> u64 {
    (0..sim.len())
        .filter_map(|i| sim.node(i))
        .map(|n| n.stats().rumors_sent)
        .sum()
}

/// Of `total_rumor_sends`, those made by members at once on learning a rumor.
fn total_rumor_forwards(sim: &Sim) -> u64 {
    (0..sim.len())
        .filter_map(|i| sim.node(i))
        .map(|n| n.stats().rumors_forwarded)
        .sum()
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.members < 3 {
        bail!("--members must be at least 3, got {}", args.members);
    }
    if !(0.0..1.0).contains(&args.loss) {
        bail!("--loss must be in 0.0..1.0, got {}", args.loss);
    }
    let wall = Instant::now();
    let mut config = SimConfig::new(args.members, args.seed);
    config.loss = args.loss;
    let gossip_interval = config.gossip.swim.gossip_interval;
    let n = args.members;
    let mut sim = Sim::new(config);
    if !args.cleartext {
        let key = RingKey::new("sim", "20260101000000", [7u8; 32]);
        for i in 0..n {
            sim.set_keyring(i, Keyring::new(vec![key.clone()]));
        }
    }
    let observed = Rc::new(RefCell::new(Observed::default()));
    let obs = Rc::clone(&observed);
    sim.set_observer(Box::new(move |now, member, event| {
        let mut o = obs.borrow_mut();
        match event {
            NodeEvent::RumorChanged(key) if o.watch_key.as_ref() == Some(key) => {
                o.rumor_at.entry(member).or_insert(now);
            }
            NodeEvent::MemberDown(identity) => {
                if Some(identity.id) == o.crashed {
                    o.detected_at.entry(member).or_insert(now);
                } else if o.counting_false_deaths {
                    o.false_deaths.insert((identity.id, identity.incarnation));
                    o.false_death_observations += 1;
                }
            }
            _ => {}
        }
    }));

    // 1. Form the ring.
    if args.cold_start {
        sim.start_all();
    } else {
        sim.start_all_formed();
    }
    let formed = sim.run_until(Duration::from_secs(300), Duration::from_millis(100), |s| {
        (0..s.len()).all(|i| s.node(i).is_some_and(|node| node.up_count() == s.len() - 1))
    });
    if !formed {
        bail!("the ring of {n} did not converge within 300 simulated seconds");
    }
    let formed_s = sim.now_ms();
    // Let the join traffic drain before measuring idle traffic.
    sim.run_for(Duration::from_secs(30));
    observed.borrow_mut().counting_false_deaths = true;
    let steady_start = sim.now_ms();

    // 2. Traffic in the first minute after the ring formed, before anti-entropy and periodic
    //    announces have backed off (the settled idle figure is measured at the end).
    let early_window = Duration::from_secs(60);
    let before = total_bytes_sent(&sim);
    sim.run_for(early_window);
    let early_idle_bytes_per_member_per_s =
        (total_bytes_sent(&sim) - before) as f64 / n as f64 / early_window.as_secs_f64();

    // 3. Dissemination of a ~512 B config (or service) rumor injected at one member.
    let mut rng = StdRng::seed_from_u64(args.seed ^ 0x5eed);
    let origin = rng.random_range(0..n);
    let group = ServiceGroup::parse("app.default").map_err(anyhow::Error::msg)?;
    let body: Vec<u8> = format!("# injected\nvalue = \"{}\"\n", "x".repeat(480)).into_bytes();
    let rumor = if args.relayed {
        Rumor::Service(ServiceRumor {
            member_id: sim.identity(origin).id,
            service_group: group,
            incarnation: 1,
            package: "core/app/1.0.0/20260101000000".into(),
            initialized: true,
            sys: SysInfo::default(),
            cfg: body,
            tombstone: false,
        })
    } else {
        Rumor::ServiceConfig(ServiceConfigRumor {
            from_id: "gossip-sim".into(),
            service_group: group,
            incarnation: 1,
            encrypted: false,
            config: body,
        })
    };
    observed.borrow_mut().watch_key = Some(rumor.key());
    let sends_before = total_rumor_sends(&sim);
    let forwards_before = total_rumor_forwards(&sim);
    let injected_at = sim.now_ms();
    observed.borrow_mut().rumor_at.insert(origin, injected_at);
    sim.node_mut(origin)
        .context("origin member is not running")?
        .publish(injected_at, rumor)?;
    let obs = Rc::clone(&observed);
    let all_hold = sim.run_until(Duration::from_secs(120), gossip_interval, |_| {
        obs.borrow().rumor_at.len() >= n
    });
    // Count sends until the rumor's retransmit budget is spent everywhere.
    sim.run_for(Duration::from_secs(10));
    let sends_per_rumor_total = total_rumor_sends(&sim) - sends_before;
    let sends_on_receipt = total_rumor_forwards(&sim) - forwards_before;
    let delays: Vec<u64> = observed
        .borrow()
        .rumor_at
        .values()
        .map(|t| t - injected_at)
        .collect();
    let interval_ms = gossip_interval.as_millis() as f64;
    let in_intervals = |ms: Option<u64>| ms.map(|ms| ms as f64 / interval_ms);
    let p999 = in_intervals(
        percentile_ms(delays.clone(), 0.999).filter(|_| delays.len() as f64 >= 0.999 * n as f64),
    );
    let p100 = in_intervals(if all_hold {
        percentile_ms(delays, 1.0)
    } else {
        None
    });

    // 4. Failure detection of a crashed member.
    let victim = (origin + 1 + rng.random_range(0..n - 1)) % n;
    observed.borrow_mut().crashed = Some(sim.identity(victim).id);
    sim.crash(victim);
    let crashed_at = sim.now_ms();
    let obs = Rc::clone(&observed);
    let needed = ((n - 1) as f64 * 0.999).ceil() as usize;
    sim.run_until(Duration::from_secs(120), Duration::from_millis(100), |_| {
        obs.borrow().detected_at.len() >= needed
    });
    let detection: Vec<u64> = observed
        .borrow()
        .detected_at
        .values()
        .map(|t| t - crashed_at)
        .collect();
    let detection_p999_s = (detection.len() >= needed)
        .then(|| percentile_ms(detection, 0.999))
        .flatten()
        .map(|ms| ms as f64 / 1000.0);

    // 5. Steady state for the rest of the requested minutes, counting false deaths.
    //    Idle traffic is measured over the last 4 minutes (or the last third, if shorter),
    //    once nothing changes and the back-offs have settled.
    let steady = Duration::from_secs_f64(args.minutes * 60.0);
    let elapsed = Duration::from_millis(sim.now_ms() - steady_start);
    let rest = steady.saturating_sub(elapsed);
    let idle_window = Duration::from_secs(240).min(steady / 3).min(rest);
    sim.run_for(rest - idle_window);
    let before = total_bytes_sent(&sim);
    sim.run_for(idle_window);
    let idle_bytes_per_member_per_s = if idle_window.is_zero() {
        early_idle_bytes_per_member_per_s
    } else {
        (total_bytes_sent(&sim) - before) as f64 / n as f64 / idle_window.as_secs_f64()
    };
    let steady_minutes = (sim.now_ms() - steady_start) as f64 / 60_000.0;
    let false_deaths = observed.borrow().false_deaths.len() as u64;
    let false_death_observations = observed.borrow().false_death_observations;
    let survivors_alive = (0..n)
        .filter(|&i| i != victim)
        .filter(|&i| {
            sim.health(i, (victim + 1) % n) == Some(Health::Alive) || (victim + 1) % n == i
        })
        .count();

    let report = serde_json::json!({
        "members": n,
        "loss": args.loss,
        "seed": args.seed,
        "rumor": if args.relayed { "service" } else { "config" },
        "gossip_interval_ms": gossip_interval.as_millis() as u64,
        "dissemination_p999_intervals": p999,
        "dissemination_p100_intervals": p100,
        "sends_per_rumor_total": sends_per_rumor_total,
        "sends_per_rumor_on_receipt": sends_on_receipt,
        "idle_bytes_per_member_per_s": (idle_bytes_per_member_per_s * 10.0).round() / 10.0,
        "early_idle_bytes_per_member_per_s": (early_idle_bytes_per_member_per_s * 10.0).round() / 10.0,
        "false_deaths_per_member_per_min": false_deaths as f64 / n as f64 / steady_minutes,
        "false_deaths": false_deaths,
        "false_death_observations": false_death_observations,
        "detection_p999_s": detection_p999_s,
        "ring_formed_s": (formed_s - 1_000_000) as f64 / 1000.0,
        "steady_minutes": (steady_minutes * 100.0).round() / 100.0,
        "members_seeing_a_peer_alive_at_end": survivors_alive,
        "datagrams_lost": sim.lost,
        "wall_s": (wall.elapsed().as_secs_f64() * 100.0).round() / 100.0,
        "peak_rss_mb": (peak_rss_mb() * 10.0).round() / 10.0,
    });
    println!("{report}");
    Ok(())
}
