//! Checks a document against the workflow's own JSON Schema (the one `labloop schema` prints) and
//! reports every mismatch — unknown keys, missing keys, wrong types, unknown names — not just the
//! first, each with the dotted path of the offending value. It reads the subset of JSON Schema that
//! the schema generator writes: `$ref`, `type`, `properties`, `required`, `additionalProperties`,
//! `items`, `oneOf`/`anyOf` (enums, tagged maps, optional values), `const`, `enum`, `minimum`,
//! `maximum` and integer `format`s.

use crate::diagnostic::did_you_mean;
use serde_json::Value;

/// One mismatch: the dotted path (`optimizer.batch_size`, `instruments[1]`) and what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Mismatch {
    pub path: String,
    pub message: String,
}

pub(crate) struct SchemaChecker<'a> {
    root: &'a Value,
    out: Vec<Mismatch>,
}

impl<'a> SchemaChecker<'a> {
    /// Checks `value` against `schema`, whose `$ref`s resolve in `root`.
    pub fn check(root: &'a Value, schema: &Value, value: &Value) -> Vec<Mismatch> {
        let mut checker = Self {
            root,
            out: Vec::new(),
        };
        checker.walk(schema, value, "");
        checker.out
    }

    fn report(&mut self, path: &str, message: String) {
        self.out.push(Mismatch {
            path: path.to_owned(),
            message,
        });
    }

    fn resolve(&self, schema: &'a Value) -> &'a Value {
        let mut schema = schema;
        for _ in 0..32 {
            let Some(reference) = schema.get("$ref").and_then(Value::as_str) else {
                break;
            };
            let Some(target) = reference
                .strip_prefix("#/")
                .map(|p| p.split('/').try_fold(self.root, |v, part| v.get(part)))
            else {
                break;
            };
            match target {
                Some(t) => schema = t,
                None => break,
            }
        }
        schema
    }

    fn walk(&mut self, schema: &Value, value: &Value, path: &str) {
        // The schema is borrowed from `root` or from a caller-made value; re-borrow through a clone
        // of the reference target only when it is a `$ref`.
        let schema = match schema.get("$ref") {
            Some(_) => self.resolve_owned(schema),
            None => schema.clone(),
        };
        if schema == Value::Bool(true) {
            return;
        }
        if let Some(alternatives) = schema
            .get("oneOf")
            .or_else(|| schema.get("anyOf"))
            .and_then(Value::as_array)
        {
            self.alternatives(alternatives, value, path);
            return;
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
            if !allowed.contains(value) {
                let names: Vec<String> = allowed.iter().map(show).collect();
                self.report(path, expected_one_of(&names, value));
            }
            return;
        }
        if let Some(constant) = schema.get("const") {
            if constant != value {
                self.report(
                    path,
                    format!("expected {}, got {}", show(constant), show(value)),
                );
            }
            return;
        }
        if let Some(types) = schema.get("type") {
            let names: Vec<&str> = match types {
                Value::String(t) => vec![t.as_str()],
                Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            if !names.is_empty() && !names.iter().any(|t| has_type(value, t)) {
                self.report(
                    path,
                    format!("expected {}, got {}", names.join(" or "), describe(value)),
                );
                return;
            }
        }
        match value {
            Value::Object(map) => self.object(&schema, map, path),
            Value::Array(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        self.walk(item_schema, item, &format!("{path}[{i}]"));
                    }
                }
            }
            Value::Number(n) => self.number(&schema, n, path),
            _ => {}
        }
    }

    fn resolve_owned(&self, schema: &Value) -> Value {
        let reference = schema.get("$ref").and_then(Value::as_str).unwrap_or("");
        let target = reference
            .strip_prefix("#/")
            .and_then(|p| p.split('/').try_fold(self.root, |v, part| v.get(part)));
        match target {
            Some(t) => self.resolve(t).clone(),
            None => Value::Bool(true),
        }
    }

    fn object(&mut self, schema: &Value, map: &serde_json::Map<String, Value>, path: &str) {
        let properties = schema.get("properties").and_then(Value::as_object);
        let join = |key: &str| {
            if path.is_empty() {
                key.to_owned()
            } else {
                format!("{path}.{key}")
            }
        };
        // A misspelt key is reported once, as unknown with its hint, not also as missing.
        let hinted: Vec<String> = map
            .keys()
            .filter(|k| properties.is_none_or(|p| !p.contains_key(*k)))
            .filter_map(|k| did_you_mean(k, properties.into_iter().flat_map(|p| p.keys())))
            .collect();
        if let Some(required) = schema.get("required").and_then(Value::as_array) {
            for key in required.iter().filter_map(Value::as_str) {
                if !map.contains_key(key) && !hinted.iter().any(|h| h == key) {
                    let place = if path.is_empty() { "the file" } else { path };
                    self.report(path, format!("missing key `{key}` in {place}"));
                }
            }
        }
        let additional = schema.get("additionalProperties");
        for (key, item) in map {
            match properties.and_then(|p| p.get(key)) {
                Some(item_schema) => self.walk(item_schema, item, &join(key)),
                None => match additional {
                    Some(Value::Bool(false)) => {
                        let known: Vec<String> = properties
                            .map(|p| p.keys().map(|k| format!("`{k}`")).collect())
                            .unwrap_or_default();
                        let mut message = format!("unknown key `{key}`");
                        if !known.is_empty() {
                            message.push_str(&format!("; expected one of {}", known.join(", ")));
                        }
                        if let Some(hint) =
                            did_you_mean(key, properties.into_iter().flat_map(|p| p.keys()))
                        {
                            message.push_str(&format!("; did you mean `{hint}`?"));
                        }
                        self.report(&join(key), message);
                    }
                    Some(item_schema) => self.walk(item_schema, item, &join(key)),
                    None => {}
                },
            }
        }
    }

    fn number(&mut self, schema: &Value, n: &serde_json::Number, path: &str) {
        let x = n.as_f64().unwrap_or(f64::NAN);
        let (mut low, mut high) = (
            schema.get("minimum").and_then(Value::as_f64),
            schema.get("maximum").and_then(Value::as_f64),
        );
        match schema.get("format").and_then(Value::as_str) {
            Some("uint32") => {
                low = low.or(Some(0.0));
                high = high.or(Some(f64::from(u32::MAX)));
            }
            Some("uint64" | "uint") => low = low.or(Some(0.0)),
            _ => {}
        }
        if let Some(low) = low.filter(|l| x < *l) {
            self.report(path, format!("expected a number ≥ {low}, got {n}"));
        } else if let Some(high) = high.filter(|h| x > *h) {
            self.report(path, format!("expected a number ≤ {high}, got {n}"));
        }
    }

    /// `oneOf`/`anyOf`: a plain enum of words, an optional value, or maps tagged by their one key.
    fn alternatives(&mut self, alternatives: &[Value], value: &Value, path: &str) {
        let resolved: Vec<Value> = alternatives
            .iter()
            .map(|a| {
                if a.get("$ref").is_some() {
                    self.resolve_owned(a)
                } else {
                    a.clone()
                }
            })
            .collect();
        let words: Vec<String> = resolved
            .iter()
            .filter_map(|a| {
                a.get("const")
                    .or_else(|| a.get("enum").and_then(|e| e.get(0)))
            })
            .map(show)
            .collect();
        let nullable = resolved
            .iter()
            .any(|a| a.get("type") == Some(&Value::String("null".into())));
        if value.is_null() && nullable {
            return;
        }
        let tags: Vec<(String, &Value)> = resolved
            .iter()
            .filter_map(|a| {
                // A tagged variant is a map with one property, its tag, which is required.
                let required = a.get("required")?.as_array()?;
                let properties = a.get("properties")?.as_object()?;
                let tag = required.first()?.as_str()?;
                (required.len() == 1 && properties.len() == 1 && properties.contains_key(tag))
                    .then(|| (tag.to_owned(), a))
            })
            .collect();
        // A word names a unit variant.
        if let Value::String(s) = value
            && !words.is_empty()
        {
            if !words.contains(&format!("`{s}`")) {
                let mut names = words.clone();
                names.extend(tags.iter().map(|(t, _)| format!("`{t}`")));
                self.report(path, expected_one_of(&names, value));
            }
            return;
        }
        // A one-key map names a variant with data.
        if let Value::Object(map) = value
            && !tags.is_empty()
        {
            if map.len() == 1 {
                let (key, _) = map.iter().next().expect("one entry");
                if let Some((_, schema)) = tags.iter().find(|(t, _)| t == key) {
                    let schema = (*schema).clone();
                    self.walk(&schema, value, path);
                } else {
                    let names: Vec<String> = tags.iter().map(|(t, _)| format!("`{t}`")).collect();
                    let mut message =
                        format!("unknown kind `{key}`; expected one of {}", names.join(", "));
                    if let Some(hint) = did_you_mean(key, tags.iter().map(|(t, _)| t)) {
                        message.push_str(&format!("; did you mean `{hint}`?"));
                    }
                    let place = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    self.report(&place, message);
                }
            } else {
                let names: Vec<String> = tags.iter().map(|(t, _)| format!("`{t}`")).collect();
                self.report(
                    path,
                    format!(
                        "expected exactly one of {} as the only key, got {}",
                        names.join(", "),
                        map.keys()
                            .map(|k| format!("`{k}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
            return;
        }
        if !words.is_empty() && tags.is_empty() && resolved.len() == words.len() {
            self.report(path, expected_one_of(&words, value));
            return;
        }
        // Otherwise: valid if any alternative is; else the closest alternative's complaints.
        let mut best: Option<Vec<Mismatch>> = None;
        for alternative in resolved
            .iter()
            .filter(|a| a.get("type") != Some(&Value::String("null".into())))
        {
            let mut inner = SchemaChecker {
                root: self.root,
                out: Vec::new(),
            };
            inner.walk(alternative, value, path);
            if inner.out.is_empty() {
                return;
            }
            if best.as_ref().is_none_or(|b| inner.out.len() < b.len()) {
                best = Some(inner.out);
            }
        }
        self.out.extend(best.unwrap_or_default());
    }
}

fn has_type(value: &Value, name: &str) -> bool {
    match name {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => value
            .as_f64()
            .is_some_and(|x| value.is_i64() || value.is_u64() || x.fract() == 0.0),
        _ => true,
    }
}

/// A value as a message shows it: `` `word` `` for strings, the JSON text for the rest.
fn show(value: &Value) -> String {
    match value {
        Value::String(s) => format!("`{s}`"),
        other => format!("`{other}`"),
    }
}

/// "a string `abc`", "a list", ...: what was found instead.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "nothing (null)".into(),
        Value::Bool(b) => format!("a boolean `{b}`"),
        Value::Number(n) => format!("a number `{n}`"),
        Value::String(s) => format!("a string `{s}`"),
        Value::Array(a) => format!("a list of {}", a.len()),
        Value::Object(_) => "a map".into(),
    }
}

fn expected_one_of(names: &[String], value: &Value) -> String {
    let mut message = format!(
        "expected one of {}, got {}",
        names.join(", "),
        describe(value)
    );
    if let Value::String(s) = value {
        let bare: Vec<String> = names
            .iter()
            .map(|n| n.trim_matches('`').to_owned())
            .collect();
        if let Some(hint) = did_you_mean(s, bare.iter()) {
            message.push_str(&format!("; did you mean `{hint}`?"));
        }
    }
    message
}
