//! Finds where a dotted field path (`a.b[2].c`) sits in block-style YAML text, so checks made on the
//! typed workflow can still point at a line and column.

/// Like [`locate`], but never `(0, 0)`: a path not in the text points at the first content line.
pub(crate) fn locate_or_start(text: &str, path: &str) -> (usize, usize) {
    match locate(text, path) {
        (0, _) => {
            // The whole file, or a key the file does not have: its first content line.
            let line = text
                .lines()
                .position(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
                .map_or(1, |n| n + 1);
            (line, 1)
        }
        found => found,
    }
}

/// 1-based (line, column) of the key (or list item) the path names; the deepest part of the path
/// that can be found when the rest cannot; (0, 0) when nothing matches.
pub(crate) fn locate(text: &str, path: &str) -> (usize, usize) {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = (0, 0);
    let mut from = 0;
    let mut parent_indent: Option<usize> = None;
    for segment in path.split('.').filter(|s| !s.is_empty()) {
        let (key, index) = match segment.split_once('[') {
            Some((k, rest)) => (k, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (segment, None),
        };
        let Some((line, indent)) = find_key(&lines, from, parent_indent, key) else {
            return found;
        };
        found = (line + 1, indent + 1);
        from = line + 1;
        parent_indent = Some(indent);
        if let Some(i) = index {
            let Some((item_line, dash_indent)) = find_item(&lines, from, indent, i) else {
                return found;
            };
            found = (item_line + 1, dash_indent + 3);
            from = item_line;
            parent_indent = Some(dash_indent);
        }
    }
    found
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn is_content(line: &str) -> bool {
    let t = line.trim_start();
    !t.is_empty() && !t.starts_with('#')
}

/// The line and column of `key:` below `from`, deeper than `parent` and before the parent's block ends.
fn find_key(
    lines: &[&str],
    from: usize,
    parent: Option<usize>,
    key: &str,
) -> Option<(usize, usize)> {
    for (n, line) in lines.iter().enumerate().skip(from) {
        if !is_content(line) {
            continue;
        }
        let indent = indent_of(line);
        if parent.is_some_and(|p| indent <= p) && n > from {
            return None;
        }
        let body = line.trim_start().trim_start_matches("- ");
        let col = indent + (line.trim_start().len() - body.len());
        if body
            .strip_prefix(key)
            .is_some_and(|rest| rest.starts_with(':'))
        {
            return Some((n, col));
        }
    }
    None
}

/// The line and dash column of the `index`-th `- ` item of the block after `from`, not shallower than
/// `parent` (YAML allows a list at its key's own indentation).
fn find_item(lines: &[&str], from: usize, parent: usize, index: usize) -> Option<(usize, usize)> {
    let mut seen = 0;
    let mut item_indent = None;
    for (n, line) in lines.iter().enumerate().skip(from) {
        if !is_content(line) {
            continue;
        }
        let indent = indent_of(line);
        if indent < parent || (indent == parent && !line.trim_start().starts_with("- ")) {
            return None;
        }
        if line.trim_start().starts_with("- ") && item_indent.is_none_or(|i| i == indent) {
            item_indent = Some(indent);
            if seen == index {
                return Some((n, indent));
            }
            seen += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::locate;

    const TEXT: &str = "campaign:\n  name: x\n  objective:\n    name: cycle_life\noptimizer:\n  batch_size: 0\ninstruments:\n  - name: a\n    channels: 2\n  - name: b\n    channels: 0\n";

    #[test]
    fn finds_nested_keys_and_items() {
        assert_eq!(locate(TEXT, "optimizer.batch_size"), (6, 3));
        assert_eq!(locate(TEXT, "campaign.objective.name"), (4, 5));
        assert_eq!(locate(TEXT, "instruments[1].channels"), (11, 5));
        assert_eq!(locate(TEXT, "instruments[0]"), (8, 5));
    }

    #[test]
    fn falls_back_to_the_deepest_known_part() {
        assert_eq!(locate(TEXT, "optimizer.kernel"), (5, 1));
        assert_eq!(locate(TEXT, "nothing.here"), (0, 0));
    }
}
