//! Habitat's butterfly scenarios, ported to the simulator and asserted in simulated time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use habitat_sidecar::gossip::sim::{Sim, SimConfig};

const SECOND: Duration = Duration::from_secs(1);

fn ring(n: usize, seed: u64) -> Sim {
    let mut sim = Sim::new(SimConfig::new(n, seed));
    sim.start_all();
    let all: Vec<usize> = (0..n).collect();
    assert!(
        sim.run_until(Duration::from_secs(30), SECOND / 10, |s| s
            .all_see_alive(&all)),
        "seed {seed}: ring of {n} did not converge"
    );
    sim
}

#[test]
fn a_ring_of_five_converges() {
    let sim = ring(5, 1);
    for i in 0..5 {
        assert_eq!(sim.node(i).unwrap().members().len(), 5);
    }
}
