//! Workloads of `wsat-bench`: connections × payload × pipelining window.

use std::fmt;
use std::str::FromStr;

/// One load shape: `connections` connections, each keeping `window` messages of
/// `payload` bytes in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Workload {
    /// Concurrent connections.
    pub connections: usize,
    /// Message size in bytes.
    pub payload: usize,
    /// Messages in flight per connection.
    pub window: usize,
}

/// The workloads of the issue, smallest first.
pub const DEFAULT_WORKLOADS: &str = "1x20Bx1,1x1KiBx1,16x1KiBx16,4x16KiBx4,1x16MiBx1";

impl Workload {
    /// Parses a comma-separated list such as [`DEFAULT_WORKLOADS`].
    pub fn parse_list(list: &str) -> Result<Vec<Workload>, String> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::parse)
            .collect()
    }
}

/// `20B`, `1KiB`, `16MiB`, `1024` (bytes), `4K`, `2M`.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: usize = digits.parse().map_err(|_| format!("bad size {s:?}"))?;
    let scale = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" | "k" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        other => return Err(format!("bad size unit {other:?} in {s:?} (use B, KiB or MiB)")),
    };
    n.checked_mul(scale).ok_or_else(|| format!("size {s:?} too large"))
}

/// The shortest exact spelling of a size: `20B`, `1KiB`, `16MiB`.
pub fn format_size(n: usize) -> String {
    if n >= 1 << 20 && n % (1 << 20) == 0 {
        format!("{}MiB", n >> 20)
    } else if n >= 1 << 10 && n % (1 << 10) == 0 {
        format!("{}KiB", n >> 10)
    } else {
        format!("{n}B")
    }
}

impl FromStr for Workload {
    type Err = String;

    /// `CONNSxSIZExWINDOW`, e.g. `16x1KiBx16` (`×` works too).
    fn from_str(s: &str) -> Result<Self, String> {
        let normal = s.replace('×', "x");
        let parts: Vec<&str> = normal.split('x').collect();
        let [conns, size, window] = parts[..] else {
            return Err(format!("workload {s:?} is not CONNSxSIZExWINDOW (e.g. 16x1KiBx16)"));
        };
        let connections: usize = conns
            .trim()
            .parse()
            .map_err(|_| format!("bad connection count in {s:?}"))?;
        let window: usize = window.trim().parse().map_err(|_| format!("bad window in {s:?}"))?;
        let payload = parse_size(size)?;
        if connections == 0 || window == 0 || payload == 0 {
            return Err(format!(
                "workload {s:?}: connections, payload and window must be at least 1"
            ));
        }
        Ok(Workload {
            connections,
            payload,
            window,
        })
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}x{}", self.connections, format_size(self.payload), self.window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_list_parses_and_round_trips() {
        let list = Workload::parse_list(DEFAULT_WORKLOADS).expect("valid");
        assert_eq!(list.len(), 5);
        assert_eq!(
            list[2],
            Workload {
                connections: 16,
                payload: 1024,
                window: 16
            }
        );
        assert_eq!(list[4].payload, 16 << 20);
        let again: Vec<String> = list.iter().map(ToString::to_string).collect();
        assert_eq!(again.join(","), DEFAULT_WORKLOADS);
    }

    #[test]
    fn sizes_and_separators() {
        assert_eq!(parse_size("20").unwrap(), 20);
        assert_eq!(parse_size("4K").unwrap(), 4096);
        assert_eq!(parse_size("2M").unwrap(), 2 << 20);
        assert_eq!("1×1000×2".parse::<Workload>().unwrap().payload, 1000);
        assert_eq!(format_size(1000), "1000B");
        assert_eq!(format_size(3 << 10), "3KiB");
    }

    #[test]
    fn bad_workloads_say_why() {
        for bad in ["", "1x20B", "0x20Bx1", "1x0x1", "1x20GiBx1", "ax1x1", "1x20Bx1x2"] {
            assert!(bad.parse::<Workload>().is_err(), "{bad:?} parsed");
        }
    }
}
