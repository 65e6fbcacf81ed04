//! Modem figures (next increment).

use std::path::Path;

use super::orchestrate::{Pinning, ServerProcess};

/// Not yet measured.
pub fn run(_exe: &Path, _pinning: &Pinning, _server: &ServerProcess, _quick: bool) -> anyhow::Result<String> {
    anyhow::bail!("modem figures are not implemented yet")
}
