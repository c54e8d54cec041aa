//! `${{ ... }}` references. `variables.<name>`, `campaign.name` and `campaign.seed` are known when the
//! file is read and are replaced then (a string that is one whole reference takes the referred value
//! with its type, so `cycles: ${{ variables.cycles }}` stays a number). `steps.<id>.outputs.<name>`
//! is known only while an experiment runs; it is checked here and filled in by the engine.

use crate::diagnostic::did_you_mean;
use labloop_core::limits::{MAX_DIAGNOSTICS, MAX_EXPANDED_BYTES, MAX_VARIABLES};
use serde_json::Value;
use std::collections::BTreeMap;

/// One `${{ expr }}` in a string: byte range and the trimmed expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    /// Byte offset of `${{`.
    pub start: usize,
    /// Byte offset just past `}}`.
    pub end: usize,
    /// The expression, trimmed, e.g. `variables.cycles`.
    pub expr: String,
}

/// Every reference in `text`; `Err` for a `${{` without its `}}`.
pub fn references(text: &str) -> Result<Vec<Reference>, String> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find("${{") {
        let start = from + at;
        let Some(len) = text[start + 3..].find("}}") else {
            return Err(format!("`${{{{` at byte {start} has no closing `}}}}`"));
        };
        let end = start + 3 + len + 2;
        out.push(Reference {
            start,
            end,
            expr: text[start + 3..end - 2].trim().to_owned(),
        });
        from = end;
    }
    Ok(out)
}

/// Replaces every reference in `text` whose value `lookup` knows, leaving the others.
pub fn interpolate(text: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let Ok(refs) = references(text) else {
        return text.to_owned();
    };
    let mut out = String::new();
    let mut last = 0;
    for r in refs {
        out.push_str(&text[last..r.start]);
        match lookup(&r.expr) {
            Some(v) => out.push_str(&v),
            None => out.push_str(&text[r.start..r.end]),
        }
        last = r.end;
    }
    out.push_str(&text[last..]);
    out
}

/// Replaces the references known at load time throughout `root` (not inside `variables` itself),
/// returning (dotted path, message) for each reference that cannot be resolved — at most
/// [`MAX_DIAGNOSTICS`], the last one counting the rest. The substituted document may grow by at
/// most [`MAX_EXPANDED_BYTES`]: a large variable referenced thousands of times is refused, not
/// expanded into gigabytes.
pub(crate) fn substitute_static(root: &mut Value) -> Vec<(String, String)> {
    let variables: BTreeMap<String, Value> = root
        .get("variables")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    if variables.len() > MAX_VARIABLES {
        return vec![(
            "variables".into(),
            format!("{} variables: at most {MAX_VARIABLES}", variables.len()),
        )];
    }
    let campaign = |key: &str| {
        root.get("campaign")
            .and_then(|c| c.get(key))
            .filter(|v| v.is_string() || v.is_number())
            .cloned()
    };
    let mut context = BTreeMap::new();
    for (name, value) in &variables {
        context.insert(format!("variables.{name}"), value.clone());
    }
    if let Some(v) = campaign("name") {
        context.insert("campaign.name".into(), v);
    }
    if let Some(v) = campaign("seed") {
        context.insert("campaign.seed".into(), v);
    }
    let sizes = context
        .iter()
        .map(|(k, v)| (k.clone(), v.to_string().len()))
        .collect();
    let mut walk = Walk {
        context,
        sizes,
        variables,
        grown: 0,
        problems: Vec::new(),
        more: 0,
    };
    if let Value::Object(map) = root {
        for (key, value) in map.iter_mut() {
            if key != "variables" {
                walk.value(value, key);
            }
        }
    }
    if walk.more > 0 {
        walk.problems.push((
            String::new(),
            format!("… and {} more unknown references", walk.more),
        ));
    }
    walk.problems
}

/// One substitution pass over a document.
struct Walk {
    context: BTreeMap<String, Value>,
    /// Each known reference's value's size in bytes.
    sizes: BTreeMap<String, usize>,
    variables: BTreeMap<String, Value>,
    /// Bytes the substitutions added so far.
    grown: usize,
    problems: Vec<(String, String)>,
    /// Problems beyond the limit, only counted.
    more: usize,
}

impl Walk {
    fn report(&mut self, path: &str, message: impl FnOnce(&Self) -> String) {
        if self.problems.len() < MAX_DIAGNOSTICS {
            let message = message(self);
            self.problems.push((path.to_owned(), message));
        } else {
            self.more += 1;
        }
    }

    fn value(&mut self, value: &mut Value, path: &str) {
        match value {
            Value::Object(map) => {
                for (key, item) in map.iter_mut() {
                    self.value(item, &format!("{path}.{key}"));
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.value(item, &format!("{path}[{i}]"));
                }
            }
            Value::String(_) => self.string(value, path),
            _ => {}
        }
    }

    fn string(&mut self, value: &mut Value, path: &str) {
        let Value::String(text) = value else { return };
        let refs = match references(text) {
            Ok(r) => r,
            Err(e) => {
                self.report(path, |_| e);
                return;
            }
        };
        for r in &refs {
            if r.expr.starts_with("steps.") || self.context.contains_key(&r.expr) {
                continue;
            }
            self.report(path, |walk| walk.unknown(&r.expr));
        }
        let added: usize = refs.iter().filter_map(|r| self.sizes.get(&r.expr)).sum();
        if added > 0 && self.grown + added > MAX_EXPANDED_BYTES {
            if self.grown <= MAX_EXPANDED_BYTES {
                self.report(path, |_| {
                    format!(
                        "references here and before expand the document by more than {MAX_EXPANDED_BYTES} bytes: \
                         reference a large value fewer times"
                    )
                });
                self.grown = MAX_EXPANDED_BYTES + 1;
            }
            return;
        }
        self.grown += added;
        if let [only] = refs.as_slice()
            && only.start == 0
            && only.end == text.len()
            && let Some(v) = self.context.get(&only.expr)
        {
            *value = v.clone();
            return;
        }
        *text = interpolate(text, |expr| {
            self.context.get(expr).map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
        });
    }

    /// Why `expr` is unknown, with a hint (naming at most a few variables).
    fn unknown(&self, expr: &str) -> String {
        let mut message = format!("unknown reference `{expr}`");
        if let Some(name) = expr.strip_prefix("variables.") {
            if self.variables.is_empty() {
                message.push_str("; the file has no `variables:`");
            } else {
                const SHOWN: usize = 10;
                let names: Vec<&str> = self
                    .variables
                    .keys()
                    .take(SHOWN)
                    .map(String::as_str)
                    .collect();
                let rest = self.variables.len().saturating_sub(SHOWN);
                message.push_str(&format!("; known variables: {}", names.join(", ")));
                if rest > 0 {
                    message.push_str(&format!(" and {rest} more"));
                }
                if let Some(hint) = did_you_mean(name, self.variables.keys()) {
                    message.push_str(&format!("; did you mean `variables.{hint}`?"));
                }
            }
        } else {
            message.push_str(
                "; expected `variables.<name>`, `campaign.name`, `campaign.seed` or `steps.<id>.outputs.<name>`",
            );
        }
        message
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn whole_references_keep_their_type_and_parts_interpolate() {
        let mut doc = json!({
            "variables": {"n": 100, "model": "severson-variance"},
            "campaign": {"name": "c1"},
            "a": "${{ variables.n }}",
            "b": "run ${{campaign.name}} for ${{ variables.n }} cycles",
            "c": "${{ steps.x.outputs.cell_id }}",
        });
        assert!(substitute_static(&mut doc).is_empty());
        assert_eq!(doc["a"], json!(100));
        assert_eq!(doc["b"], json!("run c1 for 100 cycles"));
        assert_eq!(doc["c"], json!("${{ steps.x.outputs.cell_id }}"));
    }

    #[test]
    fn unknown_references_are_reported_with_a_hint() {
        let mut doc = json!({"variables": {"cycles": 1}, "a": {"b": ["${{ variables.cycle }}"]}, "z": "${{ oops"});
        let problems = substitute_static(&mut doc);
        assert_eq!(problems.len(), 2);
        assert_eq!(problems[0].0, "a.b[0]");
        assert!(problems[0].1.contains("did you mean `variables.cycles`"));
        assert!(problems[1].1.contains("no closing"));
    }
}
