//! The faults a driver test bench injects into the engine (`wsat modem --control`): the
//! chip's unhappy paths on demand. Only their AT side lives here; the glue owns the clock
//! (how long `busy` lasts) and the network (which links drop, whether connects fail).

use std::collections::BTreeMap;
use std::fmt;

/// Faults active in the engine.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    /// Every command line is answered `busy p...` instead of being run.
    pub busy: bool,
    /// Command name (as in the table, `+WSOPEN`) → how many of its next runs answer ERROR.
    pub failures: BTreeMap<&'static str, u32>,
}

impl Faults {
    /// Takes one forced failure of `name`, if any is left.
    pub fn take_failure(&mut self, name: &str) -> bool {
        let Some(left) = self.failures.get_mut(name) else {
            return false;
        };
        *left -= 1;
        if *left == 0 {
            self.failures.remove(name);
        }
        true
    }
}

/// A fault named a command this firmware does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownCommand(pub String);

impl fmt::Display for UnknownCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no such AT command: {}", self.0)
    }
}

impl std::error::Error for UnknownCommand {}

/// The table name of a command as a person writes it: `AT+WSOPEN`, `+wsopen`, `WSOPEN`,
/// `ATE0`, `AT` (bare AT is the empty name).
pub(crate) fn table_name(written: &str) -> String {
    let upper = written.trim().to_ascii_uppercase();
    let rest = upper.strip_prefix("AT").unwrap_or(&upper);
    if rest.is_empty() || rest.starts_with('+') || rest == "E0" || rest == "E1" {
        rest.to_owned()
    } else {
        format!("+{rest}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_read_as_people_write_them() {
        assert_eq!(table_name("AT+WSOPEN"), "+WSOPEN");
        assert_eq!(table_name("+wsopen"), "+WSOPEN");
        assert_eq!(table_name("wssend"), "+WSSEND");
        assert_eq!(table_name("AT"), "");
        assert_eq!(table_name("ATE0"), "E0");
    }

    #[test]
    fn failures_count_down_and_vanish() {
        let mut faults = Faults::default();
        faults.failures.insert("+WSOPEN", 2);
        assert!(faults.take_failure("+WSOPEN"));
        assert!(faults.take_failure("+WSOPEN"));
        assert!(!faults.take_failure("+WSOPEN"));
        assert!(faults.failures.is_empty());
        assert!(!faults.take_failure("+WSSEND"));
    }
}
