//! `--trace FILE`: every byte of the AT port, both directions, timestamped.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::Instant;

/// Which way bytes went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the host (the MCU) to the modem.
    In,
    /// From the modem to the host.
    Out,
}

/// A trace file: one line per read or write, `<seconds since start> <in|out> <len> "<escaped bytes>"`.
#[derive(Debug)]
pub struct Trace {
    out: BufWriter<File>,
    start: Instant,
}

impl Trace {
    /// Creates (truncates) the file.
    pub fn create(path: &Path) -> io::Result<Self> {
        Ok(Trace {
            out: BufWriter::new(File::create(path)?),
            start: Instant::now(),
        })
    }

    /// Records one read or write and flushes, so the trace survives a crash of the host.
    pub fn record(&mut self, direction: Direction, bytes: &[u8]) {
        let dir = match direction {
            Direction::In => "in ",
            Direction::Out => "out",
        };
        let t = self.start.elapsed().as_secs_f64();
        let line = format!("{t:12.6} {dir} {:5} \"{}\"\n", bytes.len(), bytes.escape_ascii());
        if let Err(e) = self.out.write_all(line.as_bytes()).and_then(|()| self.out.flush()) {
            tracing::warn!("trace write failed: {e}");
        }
    }
}
