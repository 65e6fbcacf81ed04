//! Stamps the build time that AT+GMR prints (the firmware prints its `__DATE__ __TIME__`).
//! Honours `SOURCE_DATE_EPOCH` for reproducible builds.

#[allow(dead_code)]
#[path = "src/asctime.rs"]
mod asctime;

fn main() {
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/asctime.rs");
    let secs = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse::<i64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0)
        });
    println!("cargo:rustc-env=WSAT_AT_BUILD_STAMP={}", asctime::build_stamp(secs));
}
