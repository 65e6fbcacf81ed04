//! The faults a driver test bench asks for (`--control`, `--faults`, [`super::ModemHandle`]):
//! what each is, how a control line names it, and the modem's status as one JSON line.

use std::fmt;
use std::time::Duration;

use wsat_at::{LinkStatus, PortState};

/// One fault, or a change to one; each is a method of [`super::ModemHandle`] too.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// `drop <link>`: the link's TCP connection is lost (`+WS_DISCONNECTED`, then the usual
    /// reconnect).
    Drop {
        /// The link id.
        link: usize,
    },
    /// `wifi off` / `wifi on`: the access point goes away (`WIFI DISCONNECT`, every link
    /// disconnected, reconnects fail) or comes back (`WIFI CONNECTED`, `WIFI GOT IP`, the
    /// links reconnect).
    Wifi {
        /// Whether Wi-Fi is up afterwards.
        up: bool,
    },
    /// `reset [noise]`: a brown-out. Links dropped without URCs, all state lost, then
    /// `ready` (after boot-ROM garbage with `noise`).
    Reset {
        /// Garbage before the banner.
        noise: bool,
    },
    /// `busy <ms>`: for that long every command line gets `busy p...`; 0 ends it.
    Busy {
        /// How long.
        duration: Duration,
    },
    /// `latency <ms>`: every response and URC leaves that much later, order kept.
    Latency {
        /// The added delay; 0 ends it.
        delay: Duration,
    },
    /// `noise <rate> <seed>`: each byte to the host is dropped or has a bit flipped with
    /// probability `rate`, reproducibly for `seed`; `noise 0` ends it.
    Noise {
        /// Probability per byte, 0 to 1.
        rate: f64,
        /// The generator's seed.
        seed: u64,
    },
    /// `fail <AT-command> <count>`: its next `count` runs answer `ERROR`; 0 cancels.
    Fail {
        /// As written: `AT+WSOPEN`, `+WSSEND`, `ATE0`.
        command: String,
        /// How many runs.
        count: u32,
    },
}

/// A control line: a fault, or `status`.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Apply a fault.
    Fault(Fault),
    /// Report the modem's [`Status`].
    Status,
}

/// Why a control line or a fault was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultError(pub String);

impl fmt::Display for FaultError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FaultError {}

/// Reads one control line (`drop 0`, `wifi off`, `status`, …).
pub fn parse(line: &str) -> Result<Request, FaultError> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let bad = |why: &str| Err(FaultError(why.to_owned()));
    let ms = |word: &str| {
        word.parse::<u64>()
            .map(Duration::from_millis)
            .map_err(|_| FaultError(format!("not a number of milliseconds: {word}")))
    };
    let fault = match words.as_slice() {
        ["status"] => return Ok(Request::Status),
        ["drop", link] => Fault::Drop {
            link: link.parse().map_err(|_| FaultError(format!("not a link id: {link}")))?,
        },
        ["wifi", "off"] => Fault::Wifi { up: false },
        ["wifi", "on"] => Fault::Wifi { up: true },
        ["reset"] => Fault::Reset { noise: false },
        ["reset", "noise"] => Fault::Reset { noise: true },
        ["busy", d] => Fault::Busy { duration: ms(d)? },
        ["latency", d] => Fault::Latency { delay: ms(d)? },
        ["noise", "0"] => Fault::Noise { rate: 0.0, seed: 0 },
        ["noise", rate, seed] => {
            let rate: f64 = rate
                .parse()
                .ok()
                .filter(|r: &f64| (0.0..=1.0).contains(r))
                .ok_or_else(|| FaultError(format!("not a rate between 0 and 1: {rate}")))?;
            let seed = seed
                .parse()
                .map_err(|_| FaultError(format!("not a seed (an unsigned integer): {seed}")))?;
            Fault::Noise { rate, seed }
        }
        ["fail", command, count] => Fault::Fail {
            command: (*command).to_owned(),
            count: count.parse().map_err(|_| FaultError(format!("not a count: {count}")))?,
        },
        [] => return bad("empty command"),
        [word, ..] => {
            return Err(FaultError(format!(
                "unknown or malformed command: {word} (drop <link>, wifi off|on, reset [noise], busy <ms>, \
                 latency <ms>, noise <rate> <seed>, fail <AT-command> <count>, status)"
            )))
        }
    };
    Ok(Request::Fault(fault))
}

/// One link slot in a [`Status`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSlot {
    /// The link id.
    pub id: usize,
    /// Its state as `AT+WSOPEN?` shows it; `None` if not open.
    pub state: Option<LinkStatus>,
}

/// What the modem is doing and which faults are active (`status`). No URI or header
/// appears: they may carry credentials.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// A host is attached to the AT port.
    pub host_attached: bool,
    /// Where the port's input goes.
    pub port: PortState,
    /// Wi-Fi is up.
    pub wifi_up: bool,
    /// Every link slot.
    pub links: Vec<LinkSlot>,
    /// How long command lines still get `busy p...`.
    pub busy_left: Option<Duration>,
    /// Added output latency.
    pub latency: Duration,
    /// Output noise rate and seed.
    pub noise: Option<(f64, u64)>,
    /// Forced failures still to come (`AT+WSOPEN`, count).
    pub failures: Vec<(String, u32)>,
    /// The pacing baud rate, if paced.
    pub pace_baud: Option<u32>,
}

impl Status {
    /// One line of JSON (no newline).
    pub fn to_json(&self) -> String {
        let port = match self.port {
            PortState::Idle { buffered } => serde_json::json!({"state": "idle", "buffered": buffered}),
            PortState::Busy => serde_json::json!({"state": "busy"}),
            PortState::Data { remaining } => serde_json::json!({"state": "data", "remaining": remaining}),
        };
        let links: Vec<_> = self
            .links
            .iter()
            .map(|l| serde_json::json!({"id": l.id, "state": l.state.map_or(0, |s| s.code())}))
            .collect();
        let failures: serde_json::Map<String, serde_json::Value> = self
            .failures
            .iter()
            .map(|(name, count)| (name.clone(), serde_json::json!(count)))
            .collect();
        serde_json::json!({
            "host_attached": self.host_attached,
            "port": port,
            "wifi": if self.wifi_up { "on" } else { "off" },
            "links": links,
            "faults": {
                "busy_ms": self.busy_left.map(|d| d.as_millis()),
                "latency_ms": self.latency.as_millis(),
                "noise": self.noise.map(|(rate, seed)| serde_json::json!({"rate": rate, "seed": seed})),
                "fail": failures,
            },
            "pace_baud": self.pace_baud,
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_parses() {
        let f = |line| match parse(line) {
            Ok(Request::Fault(f)) => f,
            other => panic!("{line}: {other:?}"),
        };
        assert_eq!(f("drop 2"), Fault::Drop { link: 2 });
        assert_eq!(f("  wifi   off "), Fault::Wifi { up: false });
        assert_eq!(f("wifi on"), Fault::Wifi { up: true });
        assert_eq!(f("reset"), Fault::Reset { noise: false });
        assert_eq!(f("reset noise"), Fault::Reset { noise: true });
        assert_eq!(
            f("busy 1500"),
            Fault::Busy {
                duration: Duration::from_millis(1500)
            }
        );
        assert_eq!(f("latency 0"), Fault::Latency { delay: Duration::ZERO });
        assert_eq!(f("noise 0.01 42"), Fault::Noise { rate: 0.01, seed: 42 });
        assert_eq!(f("noise 0"), Fault::Noise { rate: 0.0, seed: 0 });
        assert_eq!(
            f("fail AT+WSOPEN 2"),
            Fault::Fail {
                command: "AT+WSOPEN".into(),
                count: 2
            }
        );
        assert_eq!(parse("status"), Ok(Request::Status));
    }

    #[test]
    fn bad_lines_say_why() {
        for (line, why) in [
            ("", "empty"),
            ("drop x", "not a link id"),
            ("wifi maybe", "unknown or malformed"),
            ("busy -1", "milliseconds"),
            ("noise 2 1", "between 0 and 1"),
            ("noise 0.5", "unknown or malformed"),
            ("fail AT+WSOPEN many", "not a count"),
            ("explode", "unknown or malformed"),
        ] {
            let err = parse(line).expect_err(line);
            assert!(err.0.contains(why), "{line}: {err}");
        }
    }

    #[test]
    fn status_is_one_line_of_json() {
        let status = Status {
            host_attached: true,
            port: PortState::Idle { buffered: 0 },
            wifi_up: false,
            links: vec![
                LinkSlot {
                    id: 0,
                    state: Some(LinkStatus::WaitingToReconnect),
                },
                LinkSlot { id: 1, state: None },
            ],
            busy_left: None,
            latency: Duration::from_millis(20),
            noise: None,
            failures: vec![("AT+WSOPEN".into(), 1)],
            pace_baud: Some(115_200),
        };
        let json = status.to_json();
        assert!(!json.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        assert_eq!(v["wifi"], "off");
        assert_eq!(v["links"][0]["state"], 3);
        assert_eq!(v["links"][1]["state"], 0);
        assert_eq!(v["faults"]["fail"]["AT+WSOPEN"], 1);
        assert_eq!(v["faults"]["latency_ms"], 20);
        assert_eq!(v["port"]["state"], "idle");
    }
}
