//! Replays the checked-in fuzz inputs (`fuzz/corpus/<target>/` seeds and
//! `fuzz/regressions/<target>/` crashes that were fixed) through the same functions the
//! cargo-fuzz targets call, so `cargo test` on stable re-checks every one of them.
//! Long fuzzing runs: `scripts/fuzz.sh`.

use std::fs;
use std::path::PathBuf;

/// Runs `body` on every file of the target's corpus (which must exist and be non-empty) and
/// regressions (optional); returns how many inputs ran.
fn replay(target: &str, body: fn(&[u8])) -> usize {
    let fuzz = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut count = 0;
    for (kind, required) in [("corpus", true), ("regressions", false)] {
        let dir = fuzz.join(kind).join(target);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if required => panic!("{}: {e}", dir.display()),
            Err(_) => continue,
        };
        let mut files: Vec<PathBuf> = entries.map(|e| e.expect("dir entry").path()).collect();
        files.sort();
        assert!(!required || !files.is_empty(), "{} is empty", dir.display());
        for file in files {
            let data = fs::read(&file).expect("readable input");
            if let Err(panic) = std::panic::catch_unwind(|| body(&data)) {
                eprintln!("failing input: {}", file.display());
                std::panic::resume_unwind(panic);
            }
            count += 1;
        }
    }
    count
}

#[test]
fn at_engine_corpus() {
    let n = replay("at_engine", wsat_at::fuzzing::engine);
    println!("{n} at_engine inputs");
}

#[test]
fn at_params_corpus() {
    let n = replay("at_params", wsat_at::fuzzing::params);
    println!("{n} at_params inputs");
}
