//! How the members of a service group relate, as Habitat names it: `standalone` (each on its
//! own), `leader` (one elected leader, the rest followers) and `initializer` (a leader topology
//! whose followers start only once the leader's health check passed).

use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Topology {
    #[default]
    Standalone,
    Leader,
    Initializer,
}

impl Topology {
    /// Every topology's name, as flags and files spell it.
    pub const NAMES: [&'static str; 3] = ["standalone", "leader", "initializer"];

    pub const fn as_str(self) -> &'static str {
        match self {
            Topology::Standalone => "standalone",
            Topology::Leader => "leader",
            Topology::Initializer => "initializer",
        }
    }
}

impl fmt::Display for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Topology {
    type Err = String;

    fn from_str(text: &str) -> Result<Topology, String> {
        match text {
            "standalone" => Ok(Topology::Standalone),
            "leader" => Ok(Topology::Leader),
            "initializer" => Ok(Topology::Initializer),
            other => Err(format!(
                "unknown topology {other:?}: expected one of {}",
                Topology::NAMES.join(", ")
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_parse_back_and_others_are_named_in_the_error() {
        for name in Topology::NAMES {
            assert_eq!(name.parse::<Topology>().unwrap().as_str(), name);
        }
        let err = "leaders".parse::<Topology>().unwrap_err();
        assert!(
            err.contains("\"leaders\"") && err.contains("initializer"),
            "{err}"
        );
    }
}
