//! Process figures: CPU time and peak resident set.

use std::time::Duration;

use nix::time::{clock_gettime, ClockId};
use nix::unistd::{sysconf, SysconfVar};
use wsat_testkit::process::status_kib;

/// CPU time (user + system) of this process so far (zero if the clock cannot be read).
pub fn process_cpu_time() -> Duration {
    clock_gettime(ClockId::CLOCK_PROCESS_CPUTIME_ID).map_or(Duration::ZERO, Duration::from)
}

/// Peak resident set of this process, KiB (`VmHWM`).
pub fn peak_rss_kib() -> u64 {
    status_kib("self", "VmHWM:").unwrap_or(0)
}

/// CPU time (user + system, all threads, reaped ones included) of process `pid` so far,
/// from `/proc/<pid>/stat` (clock-tick resolution, usually 10 ms); `None` if it is gone.
pub fn cpu_time_of(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count after its ')'.
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 1..)?.split_whitespace().collect();
    // Fields 14 (utime) and 15 (stime) of proc(5); `fields[0]` is field 3.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let hz = sysconf(SysconfVar::CLK_TCK).ok()??;
    let hz = u64::try_from(hz).ok().filter(|&h| h > 0)?;
    Some(Duration::from_nanos(ticks.saturating_mul(1_000_000_000) / hz))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpu_time_and_memory() {
        // Burn a little CPU so that neither clock can read zero.
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(30) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        assert!(process_cpu_time() > Duration::ZERO);
        assert!(peak_rss_kib() > 0);
        let me = std::process::id();
        assert!(cpu_time_of(me).is_some_and(|t| t <= process_cpu_time() + Duration::from_millis(20)));
        assert!(status_kib(me, "VmRSS:").is_some_and(|kib| kib > 0));
        assert_eq!(cpu_time_of(u32::MAX), None);
    }
}
