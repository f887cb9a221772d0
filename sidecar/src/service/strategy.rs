//! How a service follows new releases of its package, as Habitat names it: `none`, `at-once`
//! (every member updates as soon as it sees the release) and `rolling` (one member at a time,
//! picked by the update election).

use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UpdateStrategy {
    #[default]
    None,
    AtOnce,
    Rolling,
}

impl UpdateStrategy {
    /// Every strategy's name, as flags and spec files spell it.
    pub const NAMES: [&'static str; 3] = ["none", "at-once", "rolling"];

    pub const fn as_str(self) -> &'static str {
        match self {
            UpdateStrategy::None => "none",
            UpdateStrategy::AtOnce => "at-once",
            UpdateStrategy::Rolling => "rolling",
        }
    }
}

impl fmt::Display for UpdateStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for UpdateStrategy {
    type Err = String;

    fn from_str(text: &str) -> Result<UpdateStrategy, String> {
        match text {
            "none" => Ok(UpdateStrategy::None),
            "at-once" => Ok(UpdateStrategy::AtOnce),
            "rolling" => Ok(UpdateStrategy::Rolling),
            other => Err(format!(
                "unknown update strategy {other:?}: expected one of {}",
                UpdateStrategy::NAMES.join(", ")
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
        for name in UpdateStrategy::NAMES {
            assert_eq!(name.parse::<UpdateStrategy>().unwrap().as_str(), name);
        }
        let err = "at_once".parse::<UpdateStrategy>().unwrap_err();
        assert!(
            err.contains("\"at_once\"") && err.contains("at-once"),
            "{err}"
        );
    }
}
