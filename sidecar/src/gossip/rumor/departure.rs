//! Departure rumor: a member was told to leave the ring for good (`hab sup depart`). It is never
//! replaced; the departed member's datagrams are dropped and it is shown as `Departed`.

use serde::{Deserialize, Serialize};

use crate::gossip::member::MemberId;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepartureRumor {
    pub member_id: MemberId,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gossip::rumor::{Merge, Rumor};

    #[test]
    fn a_departure_is_permanent() {
        let d = Rumor::Departure(DepartureRumor {
            member_id: MemberId([7; 16]),
        });
        assert_eq!(d.merge(&d.clone()), Merge::Stale);
    }
}
