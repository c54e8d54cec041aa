//! End-to-end tests of the whole loop live in `tests/`; this library holds what they share.

use std::path::PathBuf;

/// The team's shared data folder: `$LABLOOP_SHARED_DATA`, else `../shared/data` beside the checkout.
pub fn shared_data() -> PathBuf {
    let dir = std::env::var_os("LABLOOP_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"));
    assert!(
        dir.join("README.md").exists(),
        "shared data not found at {} (set LABLOOP_SHARED_DATA to the shared/data folder)",
        dir.display()
    );
    dir
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}
