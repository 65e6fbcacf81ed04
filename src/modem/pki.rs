//! The firmware's wss PKI from a folder: `wss_ca_NN.crt`, `wss_client_NN.crt`,
//! `wss_client_NN.key` with NN = 00, 01, … (the names of the factory partition).

use std::io;
use std::path::Path;

use wsat_at::Pki;

/// Loads every contiguous index from 00 up for each kind; a kind stops at its first gap.
pub fn load(dir: &Path) -> io::Result<Pki> {
    if !dir.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} is not a folder", dir.display()),
        ));
    }
    let series = |prefix: &str, ext: &str| -> io::Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        loop {
            let path = dir.join(format!("{prefix}_{:02}.{ext}", out.len()));
            match std::fs::read(&path) {
                Ok(bytes) => out.push(bytes),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
                Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
            }
        }
    };
    Ok(Pki {
        cas: series("wss_ca", "crt")?,
        client_certs: series("wss_client", "crt")?,
        client_keys: series("wss_client", "key")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_contiguous_indices_by_the_firmware_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        for f in [
            "wss_ca_00.crt",
            "wss_ca_01.crt",
            "wss_ca_03.crt",
            "wss_client_00.crt",
            "wss_client_00.key",
        ] {
            std::fs::write(dir.path().join(f), f).expect("write");
        }
        let pki = load(dir.path()).expect("loads");
        assert_eq!(
            (pki.cas.len(), pki.client_certs.len(), pki.client_keys.len()),
            (2, 1, 1)
        );
        assert_eq!(pki.cas[1], b"wss_ca_01.crt");
        assert!(load(&dir.path().join("missing")).is_err());
    }
}
