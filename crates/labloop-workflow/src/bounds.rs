//! Bounds a workflow's text must keep before it is parsed (size, nesting) and that its includes
//! must keep before they are read (where, what kind of file, how large), so that no small file can
//! make `labloop validate` run out of memory or time. The numbers live in `labloop_core::limits`.

use crate::diagnostic::Diagnostic;
use labloop_core::limits::{MAX_INCLUDES, MAX_NESTING, MAX_WORKFLOW_BYTES};
use std::io::Read;
use std::path::{Component, Path};

/// The first bound `text` breaks, as a diagnostic: its size, or its nesting (flow `[ {` brackets
/// or block indentation), found in one pass.
pub(crate) fn check_text(text: &str, file: &str) -> Option<Diagnostic> {
    if text.len() > MAX_WORKFLOW_BYTES {
        return Some(Diagnostic::new(
            file,
            1,
            1,
            "",
            format!(
                "the file is {} bytes, more than the limit of {MAX_WORKFLOW_BYTES}",
                text.len()
            ),
        ));
    }
    let mut flow = 0usize;
    let mut indents: Vec<usize> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let content = line.trim_start_matches(' ');
        let indent = line.len() - content.len();
        if !content.is_empty() && !content.starts_with('#') && flow == 0 {
            while indents.last().is_some_and(|&i| i >= indent) {
                indents.pop();
            }
            indents.push(indent);
            // `- - - x` nests a list per dash on one line.
            let dashes = content
                .as_bytes()
                .chunks(2)
                .take_while(|c| c == b"- ")
                .count();
            if indents.len() + dashes > MAX_NESTING {
                return Some(too_deep(file, n + 1, indent + 1));
            }
        }
        let mut previous = ' ';
        for (col, ch) in content.char_indices() {
            match ch {
                '#' if previous == ' ' || previous == '\t' => break,
                '[' | '{' => {
                    flow += 1;
                    if flow + indents.len() > MAX_NESTING {
                        return Some(too_deep(file, n + 1, indent + col + 1));
                    }
                }
                ']' | '}' => flow = flow.saturating_sub(1),
                _ => {}
            }
            previous = ch;
        }
    }
    None
}

fn too_deep(file: &str, line: usize, column: usize) -> Diagnostic {
    Diagnostic::new(
        file,
        line,
        column,
        "",
        format!("nested more than {MAX_NESTING} levels deep"),
    )
}

/// Reads the `index`-th include, `name`, from under `base`: a relative path without `..`, to a
/// regular file of at most `MAX_WORKFLOW_BYTES`. `Err` says why not.
pub(crate) fn read_include(base: &Path, name: &str, index: usize) -> Result<String, String> {
    if index >= MAX_INCLUDES {
        return Err(format!("more than {MAX_INCLUDES} includes"));
    }
    let relative = Path::new(name);
    let inside = relative
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !inside || name.is_empty() {
        return Err(format!(
            "`{name}` is not inside the workflow's folder: includes are relative paths without `..`"
        ));
    }
    let path = base.join(relative);
    // Resolved links must stay inside too.
    let canonical_base = base
        .canonicalize()
        .or_else(|_| Path::new(".").canonicalize())
        .map_err(|e| format!("cannot resolve the workflow's folder: {e}"))?;
    let canonical = path
        .canonicalize()
        .map_err(|e| format!("cannot read `{name}`: {e}"))?;
    if !canonical.starts_with(&canonical_base) {
        return Err(format!(
            "`{name}` resolves outside the workflow's folder (a link?)"
        ));
    }
    // Asked before opening: opening a FIFO would wait for a writer.
    let meta = std::fs::metadata(&canonical).map_err(|e| format!("cannot read `{name}`: {e}"))?;
    if !meta.is_file() {
        return Err(format!("`{name}` is not a regular file"));
    }
    if meta.len() > MAX_WORKFLOW_BYTES as u64 {
        return Err(format!(
            "`{name}` is {} bytes, more than the limit of {MAX_WORKFLOW_BYTES}",
            meta.len()
        ));
    }
    read_bounded(&canonical).map_err(|e| format!("cannot read `{name}`: {e}"))
}

/// Reads at most one byte more than `MAX_WORKFLOW_BYTES` (so [`check_text`] can refuse a file
/// that grew meanwhile) from a regular file.
fn read_bounded(path: &Path) -> Result<String, String> {
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| {
            f.take(MAX_WORKFLOW_BYTES as u64 + 1)
                .read_to_string(&mut text)
        })
        .map_err(|e| e.to_string())?;
    Ok(text)
}

/// Reads a workflow file named by the user: a regular file (not a device or a FIFO), bounded.
pub(crate) fn read_workflow(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    read_bounded(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_flow_and_block_nesting_are_refused_in_one_pass() {
        let deep = format!("a: {}{}\n", "[".repeat(200_000), "]".repeat(200_000));
        let d = check_text(&deep, "w.yaml").expect("too deep");
        assert!(d.to_string().contains("nested more than 64"), "{d}");
        let mut block = String::new();
        for i in 0..100 {
            block.push_str(&format!("{}k{i}:\n", " ".repeat(i)));
        }
        assert!(check_text(&block, "w.yaml").is_some());
        assert!(check_text("a:\n  b: [1, [2, 3]]\n  c: {d: 1}\n", "w.yaml").is_none());
        assert!(
            check_text(
                "a: 1 # [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\n",
                "w.yaml"
            )
            .is_none()
        );
    }

    #[test]
    fn includes_stay_in_the_folder_and_are_regular_files() {
        let dir = std::env::temp_dir().join(format!("labloop-include-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/i.yaml"), "instruments: []\n").unwrap();
        assert!(read_include(&dir, "sub/i.yaml", 0).is_ok());
        for bad in [
            "/etc/passwd",
            "../x.yaml",
            "sub/../../x.yaml",
            "/dev/zero",
            "",
        ] {
            assert!(read_include(&dir, bad, 0).is_err(), "{bad}");
        }
        assert!(
            read_include(&dir, "sub", 0)
                .unwrap_err()
                .contains("regular file")
        );
        assert!(read_include(&dir, "sub/i.yaml", MAX_INCLUDES).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
