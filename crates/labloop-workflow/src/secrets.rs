//! Secrets in workflow text: what a viewer or a report may never see. A workflow names credentials
//! by environment variable (`password_env`), never inline; campaigns stored before that rule, or a
//! URL given on the command line, may still carry one, so everything shown to viewers goes through
//! [`redact_secrets`].

/// Keys whose values are secrets wherever they appear.
const SECRET_KEYS: [&str; 5] = ["password", "passwd", "secret", "token", "api_key"];

/// The password in the environment variable a workflow names (`password_env`); `default` when
/// it names none.
pub fn password_from_env(var: Option<&str>, default: &str) -> Result<String, String> {
    match var {
        Some(var) => {
            std::env::var(var).map_err(|_| format!("the password variable `{var}` is not set"))
        }
        None => Ok(default.to_owned()),
    }
}

/// Whether a URL (`scheme://user:password@host...`) carries a password.
pub fn url_has_password(url: &str) -> bool {
    url.split_once("://")
        .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or(""))
        .and_then(|authority| authority.rsplit_once('@'))
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

/// `text` with every URL's password and every secret-named key's value replaced by `***`.
pub fn redact_secrets(text: &str) -> String {
    text.lines().map(redact_line).collect::<Vec<_>>().join("\n")
        + if text.ends_with('\n') { "\n" } else { "" }
}

fn redact_line(line: &str) -> String {
    let mut out = redact_urls(line);
    let trimmed = out.trim_start().trim_start_matches("- ");
    if let Some((key, value)) = trimmed.split_once(':') {
        let key = key.trim().trim_matches(['"', '\'']).to_ascii_lowercase();
        if SECRET_KEYS.contains(&key.as_str()) && !value.trim().is_empty() {
            let keep = out.len() - value.len();
            out.truncate(keep);
            out.push_str(" ***");
        }
    }
    out
}

fn redact_urls(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| {
                c.is_whitespace() || matches!(c, '/' | '?' | '#' | '"' | '\'' | ',' | '}' | ']')
            })
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rsplit_once('@') {
            Some((userinfo, host)) if userinfo.contains(':') => {
                let user = userinfo.split(':').next().unwrap_or("");
                out.push_str(&format!("{user}:***@{host}"));
            }
            _ => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_and_secret_keys_are_masked() {
        let text = "store:\n  url: postgres://lab:hunter2@db:5432/x\ninstruments:\n  - transport: {mqtt: {broker: \"mqtt://u:p%40ss@broker:1883\"}}\n    password: hunter3\n    password_env: MQTT_PASS\n";
        let shown = redact_secrets(text);
        for secret in ["hunter2", "p%40ss", "hunter3"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("postgres://lab:***@db:5432/x"), "{shown}");
        assert!(shown.contains("password_env: MQTT_PASS"), "{shown}");
        assert!(url_has_password("mqtt://u:p@h:1883"));
        assert!(!url_has_password("mqtt://u@h:1883"));
        assert!(!url_has_password("mqtt://h:1883/a@b"));
    }
}
