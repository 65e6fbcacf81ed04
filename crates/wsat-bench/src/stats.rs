//! Statistics of a benchmark: percentiles of latencies, medians across rounds.

/// The `p`-th percentile (0..=100) of `sorted` by the nearest-rank method; `None` when empty.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p.clamp(0.0, 100.0) / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The median of `values` (the mean of the two middle ones for an even count); `NaN` when
/// empty. NaNs sort last.
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// The figures of one measurement (one client process), or the median of several.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Figures {
    /// Echoed messages per second.
    pub msgs_per_s: f64,
    /// Echoed payload megabytes (10⁶ bytes) per second, one direction.
    pub mb_per_s: f64,
    /// Median round trip, µs.
    pub p50_us: f64,
    /// 99th percentile round trip, µs.
    pub p99_us: f64,
    /// Client process CPU time (user + system) per echoed message, µs.
    pub cpu_us_per_msg: f64,
    /// Peak resident set of the client process, KiB.
    pub peak_rss_kib: f64,
    /// TCP payload bytes the echo server read and wrote over the measured interval, both
    /// directions together (frames with their headers and masks, or the raw-tcp bytes),
    /// per echoed message; 0 when not measured.
    pub wire_bytes_per_msg: f64,
}

impl Figures {
    /// Field-wise medians.
    pub fn median_of(all: &[Figures]) -> Figures {
        let m = |f: fn(&Figures) -> f64| median(&all.iter().map(f).collect::<Vec<_>>());
        Figures {
            msgs_per_s: m(|f| f.msgs_per_s),
            mb_per_s: m(|f| f.mb_per_s),
            p50_us: m(|f| f.p50_us),
            p99_us: m(|f| f.p99_us),
            cpu_us_per_msg: m(|f| f.cpu_us_per_msg),
            peak_rss_kib: m(|f| f.peak_rss_kib),
            wire_bytes_per_msg: m(|f| f.wire_bytes_per_msg),
        }
    }

    /// The line a client process prints for the orchestrator.
    pub fn to_line(&self) -> String {
        format!(
            "RESULT msgs_per_s={} mb_per_s={} p50_us={} p99_us={} cpu_us_per_msg={} peak_rss_kib={} wire_bytes_per_msg={}",
            self.msgs_per_s,
            self.mb_per_s,
            self.p50_us,
            self.p99_us,
            self.cpu_us_per_msg,
            self.peak_rss_kib,
            self.wire_bytes_per_msg
        )
    }

    /// Parses [`Figures::to_line`] output.
    pub fn from_line(line: &str) -> Option<Figures> {
        let rest = line.trim().strip_prefix("RESULT ")?;
        let mut f = Figures::default();
        for pair in rest.split_whitespace() {
            let (k, v) = pair.split_once('=')?;
            let v: f64 = v.parse().ok()?;
            match k {
                "msgs_per_s" => f.msgs_per_s = v,
                "mb_per_s" => f.mb_per_s = v,
                "p50_us" => f.p50_us = v,
                "p99_us" => f.p99_us = v,
                "cpu_us_per_msg" => f.cpu_us_per_msg = v,
                "peak_rss_kib" => f.peak_rss_kib = v,
                "wire_bytes_per_msg" => f.wire_bytes_per_msg = v,
                _ => return None,
            }
        }
        Some(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 100.0), Some(100));
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[1, 2, 3, 4], 50.0), Some(2));
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        let a = Figures {
            msgs_per_s: 10.0,
            p99_us: 5.0,
            ..Figures::default()
        };
        let b = Figures {
            msgs_per_s: 30.0,
            p99_us: 1.0,
            ..a
        };
        let c = Figures {
            msgs_per_s: 20.0,
            p99_us: 9.0,
            ..a
        };
        let m = Figures::median_of(&[a, b, c]);
        assert_eq!((m.msgs_per_s, m.p99_us), (20.0, 5.0));
    }

    #[test]
    fn result_line_round_trips() {
        let f = Figures {
            msgs_per_s: 41234.5,
            mb_per_s: 0.82,
            p50_us: 23.25,
            p99_us: 40.0,
            cpu_us_per_msg: 3.5,
            peak_rss_kib: 4096.0,
            wire_bytes_per_msg: 2060.5,
        };
        assert_eq!(Figures::from_line(&f.to_line()), Some(f));
        assert_eq!(Figures::from_line("RESULT nope=1"), None);
        assert_eq!(Figures::from_line("hello"), None);
    }
}
