//! Records when the binary was built: the webhook clock rule treats any earlier clock reading
//! as wrong (a Pi without a real-time clock boots in 1970). `SOURCE_DATE_EPOCH` wins when set,
//! so reproducible builds stay reproducible.

use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    // Only this file: the stamp is not renewed on every edit, so incremental builds stay fast;
    // an older stamp only makes the rule more lenient.
    println!("cargo:rerun-if-changed=build.rs");
    let seconds = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|value| value.trim().parse::<u64>().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_secs())
        });
    println!("cargo:rustc-env=SMSRELAY_BUILD_UNIX={seconds}");
}
