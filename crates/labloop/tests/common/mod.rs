//! What the binary's test files share: the binary and the repository's files.

use std::path::PathBuf;
use std::process::Command;

/// The `labloop` binary under test.
pub fn labloop() -> Command {
    Command::new(env!("CARGO_BIN_EXE_labloop"))
}

/// A path in the repository.
pub fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}
