//! Workloads of `wsat-bench`: connections × payload × pipelining window, and the messages
//! they send (a byte pattern, or JSON-like records for the compression rows).

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;

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
    /// What the messages hold.
    pub kind: PayloadKind,
}

/// What the messages of a workload hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PayloadKind {
    /// One message, sent again and again: the bytes `i % 251` (`SIZE` in a workload).
    #[default]
    Pattern,
    /// [`JSON_MESSAGES`]-many different JSON-like documents of exactly the size, from a
    /// seeded generator (`json-SIZE` in a workload): records with ids, timestamps, names,
    /// numbers and tags, so that permessage-deflate has realistic, not trivial, input.
    Json,
}

/// The workloads of the issue, smallest first, then the JSON ones of the compression rows.
pub const DEFAULT_WORKLOADS: &str = "1x20Bx1,1x1KiBx1,16x1KiBx16,4x16KiBx4,1x16MiBx1,1xjson-1KiBx1,16xjson-1KiBx16";

/// How many different JSON documents a connection cycles through (at 1 KiB, 1 MiB of them:
/// far more than the 32 KiB deflate window, so the compressor never sees a repeat).
pub const JSON_MESSAGES: usize = 1024;

/// The smallest `json-SIZE`: room for the envelope and a little text.
pub const JSON_MIN: usize = 64;

impl Workload {
    /// Parses a comma-separated list such as [`DEFAULT_WORKLOADS`].
    pub fn parse_list(list: &str) -> Result<Vec<Workload>, String> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::parse)
            .collect()
    }

    /// Whether the messages are JSON-like documents.
    pub fn is_json(&self) -> bool {
        self.kind == PayloadKind::Json
    }

    /// The messages a connection sends, in order, over and over: all of `payload` bytes.
    pub fn messages(&self) -> Vec<Bytes> {
        match self.kind {
            PayloadKind::Pattern => vec![Bytes::from(
                (0..self.payload).map(|i| (i % 251) as u8).collect::<Vec<u8>>(),
            )],
            PayloadKind::Json => {
                let count = ((4 << 20) / self.payload).clamp(1, JSON_MESSAGES);
                let mut rng = Rng(0x5EED_0000_0000_0001);
                (0..count)
                    .map(|seq| Bytes::from(json_document(&mut rng, seq, self.payload)))
                    .collect()
            }
        }
    }
}

/// splitmix64: a small seeded generator, the same documents on every run and machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len() as u64) as usize]
    }
}

const FIRST: [&str; 16] = [
    "ada", "alan", "grace", "linus", "margaret", "ken", "barbara", "edsger", "frances", "donald", "radia", "tim",
    "hedy", "john", "sophie", "niklaus",
];
const LAST: [&str; 16] = [
    "lovelace",
    "turing",
    "hopper",
    "torvalds",
    "hamilton",
    "thompson",
    "liskov",
    "dijkstra",
    "allen",
    "knuth",
    "perlman",
    "berners-lee",
    "lamarr",
    "mccarthy",
    "wilson",
    "wirth",
];
const SITES: [&str; 8] = ["lyon", "porto", "gdansk", "tartu", "bergen", "graz", "leuven", "turku"];
const STATUS: [&str; 4] = ["ok", "ok", "warn", "degraded"];
const TAGS: [&str; 10] = [
    "indoor",
    "outdoor",
    "floor-1",
    "floor-2",
    "roof",
    "basement",
    "battery",
    "mains",
    "calibrated",
    "beta",
];
const WORDS: [&str; 24] = [
    "sensor",
    "reading",
    "within",
    "range",
    "after",
    "restart",
    "firmware",
    "update",
    "link",
    "quality",
    "drop",
    "noted",
    "gateway",
    "retry",
    "queued",
    "sample",
    "window",
    "average",
    "spike",
    "cleared",
    "manual",
    "check",
    "scheduled",
    "nominal",
];

/// One event record: an id, a timestamp, a device, a user, numbers and tags.
fn json_record(rng: &mut Rng, out: &mut String) {
    use std::fmt::Write as _;
    let (first, last) = (rng.pick(&FIRST), rng.pick(&LAST));
    let _ = write!(
        out,
        r#"{{"id":{},"ts":"2026-12-{:02}T{:02}:{:02}:{:02}.{:03}Z","device":"sensor-{:04}","site":"{}-{}","#,
        100_000 + rng.below(900_000_000),
        1 + rng.below(28),
        rng.below(24),
        rng.below(60),
        rng.below(60),
        rng.below(1000),
        rng.below(10_000),
        rng.pick(&SITES),
        1 + rng.below(9),
    );
    let _ = write!(
        out,
        r#""user":{{"name":"{first} {last}","email":"{first}.{last}@example.com"}},"temp":{}.{:02},"humidity":{}.{},"battery":3.{:03},"status":"{}","tags":["{}","{}"],"readings":[{},{},{},{}]}}"#,
        rng.below(40),
        rng.below(100),
        20 + rng.below(70),
        rng.below(10),
        rng.below(1000),
        rng.pick(&STATUS),
        rng.pick(&TAGS),
        rng.pick(&TAGS),
        rng.below(100_000) as f64 / 100.0,
        rng.below(100_000) as f64 / 100.0,
        rng.below(100_000) as f64 / 100.0,
        rng.below(100_000) as f64 / 100.0,
    );
}

/// A JSON document of exactly `size` bytes (at least [`JSON_MIN`]):
/// `{"seq":N,"events":[records…],"note":"words…"}`, the note padding it to the size.
fn json_document(rng: &mut Rng, seq: usize, size: usize) -> Vec<u8> {
    let head = format!(r#"{{"seq":{seq},"events":["#);
    let mid = r#"],"note":""#;
    let tail = r#""}"#;
    let fixed = head.len() + mid.len() + tail.len();
    let mut events = String::new();
    loop {
        let mut record = String::new();
        json_record(rng, &mut record);
        let comma = usize::from(!events.is_empty());
        // Keep at least 16 bytes of note.
        if fixed + events.len() + comma + record.len() + 16 > size {
            break;
        }
        if comma == 1 {
            events.push(',');
        }
        events.push_str(&record);
    }
    let room = size.saturating_sub(fixed + events.len());
    let mut note = String::with_capacity(room + 16);
    while note.len() < room {
        if !note.is_empty() {
            note.push(' ');
        }
        note.push_str(rng.pick(&WORDS));
    }
    note.truncate(room);
    let doc = format!("{head}{events}{mid}{note}{tail}");
    doc.into_bytes()
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

    /// `CONNSxSIZExWINDOW`, e.g. `16x1KiBx16` (`×` works too); `json-SIZE` for JSON-like
    /// messages, e.g. `16xjson-1KiBx16`.
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
        let (kind, size) = match size.trim().strip_prefix("json-") {
            Some(size) => (PayloadKind::Json, size),
            None => (PayloadKind::Pattern, size),
        };
        let payload = parse_size(size)?;
        if connections == 0 || window == 0 || payload == 0 {
            return Err(format!(
                "workload {s:?}: connections, payload and window must be at least 1"
            ));
        }
        if kind == PayloadKind::Json && payload < JSON_MIN {
            return Err(format!(
                "workload {s:?}: a json payload needs at least {JSON_MIN} bytes"
            ));
        }
        Ok(Workload {
            connections,
            payload,
            window,
            kind,
        })
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let json = if self.is_json() { "json-" } else { "" };
        write!(
            f,
            "{}x{json}{}x{}",
            self.connections,
            format_size(self.payload),
            self.window
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_list_parses_and_round_trips() {
        let list = Workload::parse_list(DEFAULT_WORKLOADS).expect("valid");
        assert_eq!(list.len(), 7);
        assert_eq!(
            list[2],
            Workload {
                connections: 16,
                payload: 1024,
                window: 16,
                kind: PayloadKind::Pattern,
            }
        );
        assert_eq!(list[4].payload, 16 << 20);
        assert_eq!(
            list[6],
            Workload {
                connections: 16,
                payload: 1024,
                window: 16,
                kind: PayloadKind::Json,
            }
        );
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
        for bad in [
            "",
            "1x20B",
            "0x20Bx1",
            "1x0x1",
            "1x20GiBx1",
            "ax1x1",
            "1x20Bx1x2",
            "1xjson-20Bx1",
            "1xjsonx1",
        ] {
            assert!(bad.parse::<Workload>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn json_messages_are_exact_varied_json_and_compressible_text() {
        let w: Workload = "1xjson-1KiBx1".parse().expect("json workload");
        let msgs = w.messages();
        assert_eq!(msgs.len(), JSON_MESSAGES);
        assert!(msgs.iter().all(|m| m.len() == 1024));
        assert_ne!(msgs[0], msgs[1]);
        let again = w.messages();
        assert_eq!(msgs[7], again[7], "seeded: the same documents every run");
        let text = std::str::from_utf8(&msgs[3]).expect("UTF-8");
        assert!(text.starts_with(r#"{"seq":3,"events":[{"id":"#), "{text}");
        assert!(text.ends_with(r#""}"#), "{text}");
        assert!(text.matches(r#""id":"#).count() >= 2, "a few records per KiB: {text}");
        // Balanced braces and brackets outside strings: well-formed enough for a benchmark.
        let (mut depth, mut in_str) = (0i32, false);
        for c in text.chars() {
            match c {
                '"' => in_str = !in_str,
                '{' | '[' if !in_str => depth += 1,
                '}' | ']' if !in_str => depth -= 1,
                _ => {}
            }
            assert!(depth >= 0, "{text}");
        }
        assert_eq!((depth, in_str), (0, false), "{text}");
        let small: Workload = "1xjson-64Bx1".parse().expect("the smallest");
        assert!(small.messages().iter().all(|m| m.len() == 64));
        assert_eq!(small.to_string(), "1xjson-64Bx1");
    }
}
