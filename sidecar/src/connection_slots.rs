//! Open-connection accounting shared by the listeners (HTTP gateway, gossip TCP): a cap on all
//! connections, and, once half of them are taken, a fair share per source, so one client
//! holding hundreds of idle connections cannot lock out a kubelet's probe or a peer's sync.
//! IPv6 sources count by their /64 (one host commonly holds a whole /64).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// How many connections a listener keeps open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotLimits {
    /// Open connections at most.
    pub max: usize,
    /// With half of `max` open, a source holding this many gets no more.
    pub per_source: usize,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_source: HashMap<IpAddr, usize>,
}

/// The slots of one listener.
#[derive(Clone, Debug)]
pub struct ConnectionSlots {
    limits: SlotLimits,
    open: Arc<Mutex<Open>>,
}

/// One open connection's slot, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    source: IpAddr,
    open: Arc<Mutex<Open>>,
}

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// `max` connections are open.
    Full,
    /// Half are open and this source holds its share.
    SourceShare,
}

impl ConnectionSlots {
    pub fn new(limits: SlotLimits) -> ConnectionSlots {
        ConnectionSlots {
            limits,
            open: Arc::default(),
        }
    }

    /// A slot for a connection from `source`, or why not.
    pub fn take(&self, source: IpAddr) -> Result<Slot, Refused> {
        let source = source_key(source);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.total >= self.limits.max {
            return Err(Refused::Full);
        }
        let held = open.by_source.get(&source).copied().unwrap_or(0);
        if open.total >= self.limits.max / 2 && held >= self.limits.per_source {
            return Err(Refused::SourceShare);
        }
        open.total += 1;
        *open.by_source.entry(source).or_insert(0) += 1;
        Ok(Slot {
            source,
            open: Arc::clone(&self.open),
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.total = open.total.saturating_sub(1);
        if let Some(held) = open.by_source.get_mut(&self.source) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                open.by_source.remove(&self.source);
            }
        }
    }
}

/// IPv4 (also when mapped into IPv6) counts by address, IPv6 by its /64.
fn source_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const LIMITS: SlotLimits = SlotLimits {
        max: 8,
        per_source: 2,
    };

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_source_takes_half_then_only_its_share_and_others_still_get_in() {
        let slots = ConnectionSlots::new(LIMITS);
        let attacker: Vec<Slot> = (0..4)
            .map(|_| slots.take(ip("10.0.0.9")).unwrap())
            .collect();
        assert_eq!(
            slots.take(ip("10.0.0.9")).unwrap_err(),
            Refused::SourceShare
        );
        let probe = slots.take(ip("10.0.0.1")).unwrap();
        let others: Vec<Slot> = ["10.0.0.2", "10.0.0.3", "10.0.0.4"]
            .iter()
            .map(|s| slots.take(ip(s)).unwrap())
            .collect();
        assert_eq!(slots.take(ip("10.0.0.5")).unwrap_err(), Refused::Full);
        drop((probe, others));
        drop(attacker);
        assert_eq!(slots.open(), 0);
        assert!(
            slots.open.lock().unwrap().by_source.is_empty(),
            "sources left behind"
        );
    }

    #[test]
    fn ipv6_sources_count_by_their_64_and_mapped_ipv4_as_ipv4() {
        let slots = ConnectionSlots::new(LIMITS);
        let _held: Vec<Slot> = (1..=4)
            .map(|i| slots.take(ip(&format!("2001:db8:1:2::{i}"))).unwrap())
            .collect();
        assert_eq!(
            slots.take(ip("2001:db8:1:2:ffff::1")).unwrap_err(),
            Refused::SourceShare
        );
        assert!(slots.take(ip("2001:db8:1:3::1")).is_ok());
        assert_eq!(source_key(ip("::ffff:10.0.0.9")), ip("10.0.0.9"));
    }
}
