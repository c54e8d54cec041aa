//! `${{ ... }}` references. `variables.<name>`, `campaign.name` and `campaign.seed` are known when the
//! file is read and are replaced then (a string that is one whole reference takes the referred value
//! with its type, so `cycles: ${{ variables.cycles }}` stays a number). `steps.<id>.outputs.<name>`
//! is known only while an experiment runs; it is checked here and filled in by the engine.

use crate::diagnostic::did_you_mean;
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
/// returning (dotted path, message) for each reference that cannot be resolved.
pub(crate) fn substitute_static(root: &mut Value) -> Vec<(String, String)> {
    let variables: BTreeMap<String, Value> = root
        .get("variables")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
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
    let mut problems = Vec::new();
    if let Value::Object(map) = root {
        for (key, value) in map.iter_mut() {
            if key != "variables" {
                walk(value, key, &context, &variables, &mut problems);
            }
        }
    }
    problems
}

fn walk(
    value: &mut Value,
    path: &str,
    context: &BTreeMap<String, Value>,
    variables: &BTreeMap<String, Value>,
    problems: &mut Vec<(String, String)>,
) {
    match value {
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                walk(item, &format!("{path}.{key}"), context, variables, problems);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk(item, &format!("{path}[{i}]"), context, variables, problems);
            }
        }
        Value::String(text) => {
            let refs = match references(text) {
                Ok(r) => r,
                Err(e) => {
                    problems.push((path.to_owned(), e));
                    return;
                }
            };
            for r in &refs {
                if r.expr.starts_with("steps.") || context.contains_key(&r.expr) {
                    continue;
                }
                let mut message = format!("unknown reference `{}`", r.expr);
                if let Some(name) = r.expr.strip_prefix("variables.") {
                    if variables.is_empty() {
                        message.push_str("; the file has no `variables:`");
                    } else {
                        message.push_str(&format!(
                            "; known variables: {}",
                            variables.keys().cloned().collect::<Vec<_>>().join(", ")
                        ));
                        if let Some(hint) = did_you_mean(name, variables.keys()) {
                            message.push_str(&format!("; did you mean `variables.{hint}`?"));
                        }
                    }
                } else {
                    message.push_str(
                        "; expected `variables.<name>`, `campaign.name`, `campaign.seed` or `steps.<id>.outputs.<name>`",
                    );
                }
                problems.push((path.to_owned(), message));
            }
            if let [only] = refs.as_slice()
                && only.start == 0
                && only.end == text.len()
                && let Some(v) = context.get(&only.expr)
            {
                *value = v.clone();
                return;
            }
            *text = interpolate(text, |expr| {
                context.get(expr).map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
            });
        }
        _ => {}
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
