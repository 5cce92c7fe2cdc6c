//! Keeping secrets out of records.
//!
//! Plugin configurations can carry passwords, tokens and whole kubeconfigs (multus accepts an embedded one).
//! Values are redacted by key (a key that names a secret) and by shape (a PEM private key, a JWT, an embedded
//! kubeconfig). A redacted JSON document is re-encoded; one with nothing to redact is kept byte for byte.

use serde_json::Value;

/// What replaces a secret.
pub(crate) const MARK: &str = "[REDACTED]";

/// Whether a key names a secret: compared lower-case with `-`, `_` and `.` removed.
pub(crate) fn secret_key(key: &str) -> bool {
    // Keys are short and ASCII: normalised on the stack, as every key of every record is looked at.
    let mut buf = [0u8; 64];
    let mut len = 0;
    for b in key.bytes().filter(|b| !matches!(b, b'-' | b'_' | b'.')) {
        match buf.get_mut(len) {
            Some(slot) if b.is_ascii() => *slot = b.to_ascii_lowercase(),
            _ => return secret_key_slow(key),
        }
        len += 1;
    }
    std::str::from_utf8(&buf[..len]).map_or_else(|_| secret_key_slow(key), secret_normalised)
}

/// [`secret_key`] for long or non-ASCII keys.
fn secret_key_slow(key: &str) -> bool {
    let k: String = key
        .chars()
        .filter(|c| !matches!(c, '-' | '_' | '.'))
        .flat_map(char::to_lowercase)
        .collect();
    secret_normalised(&k)
}

/// Whether a key already lower-cased, with `-`, `_` and `.` removed, names a secret.
fn secret_normalised(k: &str) -> bool {
    const PARTS: [&str; 10] = [
        "password",
        "passwd",
        "secret",
        "token",
        "apikey",
        "privatekey",
        "credential",
        "clientkeydata",
        "bearer",
        "authorization",
    ];
    PARTS.iter().any(|p| k.contains(p)) || matches!(k, "auth" | "pass" | "psk")
}

/// Whether a string value is a secret whatever its key: a private key, a JWT, a kubeconfig.
pub(crate) fn secret_value(v: &str) -> bool {
    (v.contains("-----BEGIN") && v.contains("PRIVATE KEY"))
        || looks_like_jwt(v)
        || embedded_kubeconfig(v)
}

fn embedded_kubeconfig(v: &str) -> bool {
    (v.contains("clusters:") || v.contains("\"clusters\""))
        && (v.contains("users:") || v.contains("\"users\"") || v.contains("client-key-data"))
}

fn looks_like_jwt(v: &str) -> bool {
    let v = v.trim();
    v.starts_with("eyJ")
        && v.len() > 20
        && v.bytes().filter(|&c| c == b'.').count() == 2
        && v.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'='))
}

/// Redacts in place; appends the JSON pointer of each redacted value to `found`.
pub(crate) fn redact_json(value: &mut Value, pointer: &str, found: &mut Vec<String>) {
    let mut path = pointer.to_owned();
    redact_at(value, &mut path, found);
}

/// [`redact_json`] with one path buffer for the whole walk: a pointer becomes a string of its own only when
/// something is redacted there.
fn redact_at(value: &mut Value, path: &mut String, found: &mut Vec<String>) {
    let len = path.len();
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                path.push('/');
                for c in k.chars() {
                    match c {
                        '~' => path.push_str("~0"),
                        '/' => path.push_str("~1"),
                        c => path.push(c),
                    }
                }
                let kubeconfig = k
                    .as_bytes()
                    .windows(10)
                    .any(|w| w.eq_ignore_ascii_case(b"kubeconfig"))
                    && (v.is_object() || v.as_str().is_some_and(|s| s.contains('\n')));
                if (secret_key(k) && !v.is_null()) || kubeconfig {
                    *v = Value::String(MARK.to_owned());
                    found.push(path.clone());
                } else {
                    redact_at(v, path, found);
                }
                path.truncate(len);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                path.push('/');
                path.push_str(&i.to_string());
                redact_at(v, path, found);
                path.truncate(len);
            }
        }
        Value::String(s) if secret_value(s) => {
            *s = MARK.to_owned();
            found.push(path.clone());
        }
        _ => {}
    }
}

/// Redacts a captured stream. JSON is redacted by key and shape and re-encoded only if something changed; other
/// text by shape (private key blocks, bearer tokens, JWTs, `password=` pairs). `label` prefixes the reported paths.
pub(crate) fn redact_text(text: &str, label: &str, found: &mut Vec<String>) -> Option<String> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        if let Ok(mut value) = serde_json::from_str::<Value>(text) {
            let before = found.len();
            redact_json(&mut value, "", found);
            if found.len() == before {
                return None;
            }
            for p in &mut found[before..] {
                *p = format!("{label}:{p}");
            }
            let mut out = serde_json::to_string(&value).ok()?;
            if text.ends_with('\n') {
                out.push('\n');
            }
            return Some(out);
        }
    }
    // Not JSON (cut at the capture bound, malformed): secret keys' string values masked where they stand, then the
    // line-by-line shapes.
    let mut changed = false;
    let masked = redact_json_like(text.as_bytes(), &mut changed);
    let text = String::from_utf8_lossy(&masked);
    let out: Vec<String> = text
        .split_inclusive('\n')
        .map(|line| redact_line(line, &mut changed))
        .collect();
    let out = pem_blocks(&out.concat(), &mut changed);
    if changed {
        found.push(label.to_owned());
        Some(out)
    } else {
        None
    }
}

/// Masks the string value after every `"KEY"` `:` whose key names a secret, in bytes that need not be valid JSON or
/// UTF-8: a capture cut at its bound, a malformed config, one with a stray byte. Everything else is kept as it is.
pub(crate) fn redact_json_like(bytes: &[u8], changed: &mut bool) -> Vec<u8> {
    fn string_end(b: &[u8], mut k: usize) -> usize {
        while k < b.len() {
            match b[k] {
                b'\\' => k += 2,
                b'"' => return k,
                _ => k += 1,
            }
        }
        b.len()
    }
    fn skip_space(b: &[u8], mut k: usize) -> usize {
        while k < b.len() && b[k].is_ascii_whitespace() {
            k += 1;
        }
        k
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'"' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let end = string_end(bytes, i + 1);
        let key = &bytes[i + 1..end.min(bytes.len())];
        let after = (end + 1).min(bytes.len());
        out.extend_from_slice(&bytes[i..after]);
        i = after;
        let colon = skip_space(bytes, i);
        if bytes.get(colon) != Some(&b':') {
            continue;
        }
        let quote = skip_space(bytes, colon + 1);
        if bytes.get(quote) != Some(&b'"') || !secret_key(&String::from_utf8_lossy(key)) {
            continue;
        }
        let value_end = string_end(bytes, quote + 1);
        out.extend_from_slice(&bytes[i..=quote]);
        out.extend_from_slice(MARK.as_bytes());
        if value_end < bytes.len() {
            out.push(b'"');
        }
        i = (value_end + 1).min(bytes.len());
        *changed = true;
    }
    out
}

fn redact_line(line: &str, changed: &mut bool) -> String {
    let mut out = String::with_capacity(line.len());
    let mut redact_next = false;
    for (i, word) in line.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let bare = word.trim_end_matches(['\n', '\r', ',', ';', '"', '\'']);
        let tail = &word[bare.len()..];
        if redact_next && !bare.is_empty() {
            out.push_str(MARK);
            out.push_str(tail);
            *changed = true;
            redact_next = false;
            continue;
        }
        redact_next = bare.eq_ignore_ascii_case("bearer");
        if let Some((k, v)) = bare
            .split_once(['=', ':'])
            .filter(|(k, v)| !v.is_empty() && secret_key(k))
        {
            let sep = &bare[k.len()..=k.len()];
            let _ = v;
            out.push_str(k);
            out.push_str(sep);
            out.push_str(MARK);
            out.push_str(tail);
            *changed = true;
        } else if looks_like_jwt(bare) {
            out.push_str(MARK);
            out.push_str(tail);
            *changed = true;
        } else {
            out.push_str(word);
        }
    }
    out
}

fn pem_blocks(text: &str, changed: &mut bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN") {
        let after = &rest[start..];
        let end = after
            .find("-----END")
            .and_then(|e| after[e + 8..].find("-----").map(|f| e + 8 + f + 5));
        match end {
            Some(end) if after[..end].contains("PRIVATE KEY") => {
                out.push_str(&rest[..start]);
                out.push_str(MARK);
                *changed = true;
                rest = &after[end..];
            }
            _ => {
                out.push_str(&rest[..start + 10]);
                rest = &after[10..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Redacts the values of secret-looking keys in `CNI_ARGS` (`K=V;K=V`).
pub(crate) fn redact_cni_args(args: &str, found: &mut Vec<String>) -> Option<String> {
    let mut changed = false;
    let out: Vec<String> = args
        .split(';')
        .map(|seg| match seg.split_once('=') {
            Some((k, v)) if secret_key(k) || secret_value(v) => {
                changed = true;
                found.push(format!("CNI_ARGS:{k}"));
                format!("{k}={MARK}")
            }
            _ => seg.to_owned(),
        })
        .collect();
    changed.then(|| out.join(";"))
}

#[cfg(test)]
mod tests {

    #[test]
    fn masks_secret_strings_in_what_does_not_parse() {
        let mut changed = false;
        let cut = br#"{"a":1, "password" : "hunter\"2", "token":"abc"#;
        let out = redact_json_like(cut, &mut changed);
        assert!(changed);
        assert_eq!(
            out,
            br#"{"a":1, "password" : "[REDACTED]", "token":"[REDACTED]"#.to_vec()
        );
        let mut changed = false;
        let bytes = b"{\"apiKey\":\"k\xff\",\"name\":\"n\"}";
        assert_eq!(
            redact_json_like(bytes, &mut changed),
            b"{\"apiKey\":\"[REDACTED]\",\"name\":\"n\"}".to_vec()
        );
        let mut changed = false;
        assert_eq!(
            redact_json_like(br#"{"name":"password"}"#, &mut changed),
            br#"{"name":"password"}"#.to_vec()
        );
        assert!(!changed, "a secret word as a value is no secret key");
    }

    use super::*;
    use serde_json::json;

    const JWT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXNpZw";

    #[test]
    fn keys_that_name_secrets() {
        for k in [
            "password",
            "Password",
            "client_secret",
            "apiKey",
            "token",
            "bearer-token",
            "auth",
            "private_key",
        ] {
            assert!(secret_key(k), "{k}");
        }
        for k in [
            "name",
            "type",
            "master",
            "ipam",
            "kubeconfig",
            "key_id_count_x",
            "authority",
            "mode",
        ] {
            assert!(!secret_key(k), "{k}");
        }
        // Past the stack buffer and outside ASCII, the same rules.
        let long = format!("{}_Pass-Word", "x".repeat(80));
        assert!(secret_key(&long));
        assert!(!secret_key(&"x".repeat(80)));
        assert!(secret_key("Schlüssel-Token"));
        assert!(!secret_key("Schlüssel"));
        assert!(secret_key("PSK") && !secret_key("PSKs-count"));
    }

    #[test]
    fn json_is_redacted_by_key_and_shape_and_paths_are_reported() {
        let mut v = json!({
            "name": "n",
            "kubeconfig": "/etc/cni/net.d/multus.d/multus.kubeconfig",
            "delegates": [{"password": "hunter2", "note": JWT, "ok": "fine"}],
            "embedded": {"kubeconfig": "apiVersion: v1\nclusters:\n- x\nusers:\n- y\n"},
            "token": null
        });
        let mut found = Vec::new();
        redact_json(&mut v, "", &mut found);
        assert_eq!(
            v["kubeconfig"],
            json!("/etc/cni/net.d/multus.d/multus.kubeconfig"),
            "a path is not a secret"
        );
        assert_eq!(v["delegates"][0]["password"], json!(MARK));
        assert_eq!(v["delegates"][0]["note"], json!(MARK));
        assert_eq!(v["delegates"][0]["ok"], json!("fine"));
        assert_eq!(v["embedded"]["kubeconfig"], json!(MARK));
        assert_eq!(v["token"], json!(null));
        found.sort();
        assert_eq!(
            found,
            [
                "/delegates/0/note",
                "/delegates/0/password",
                "/embedded/kubeconfig"
            ]
        );
    }

    #[test]
    fn clean_text_is_left_alone() {
        let mut found = Vec::new();
        let text = "{\"cniVersion\":\"1.0.0\",  \"name\":\"x\"}\n";
        assert_eq!(redact_text(text, "stdin", &mut found), None);
        assert_eq!(redact_text("plain log line\n", "stderr", &mut found), None);
        assert!(found.is_empty());
    }

    #[test]
    fn redacted_json_is_reencoded_with_its_newline() {
        let mut found = Vec::new();
        let out = redact_text("{\"password\":\"x\"}\n", "stdin", &mut found);
        assert_eq!(out.as_deref(), Some("{\"password\":\"[REDACTED]\"}\n"));
        assert_eq!(found, ["stdin:/password"]);
    }

    #[test]
    fn plain_text_secrets() {
        let mut found = Vec::new();
        let text = format!(
            "auth with Bearer abc.def ok\npassword=hunter2 user=bob\njwt {JWT}\n-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\ntail\n"
        );
        let out = redact_text(&text, "stderr", &mut found).unwrap_or_default();
        assert!(
            !out.contains("abc.def")
                && !out.contains("hunter2")
                && !out.contains(JWT)
                && !out.contains("AAAA"),
            "{out}"
        );
        assert!(
            out.contains("user=bob")
                && out.contains("tail\n")
                && out.contains("password=[REDACTED]"),
            "{out}"
        );
        assert_eq!(found, ["stderr"]);
    }

    #[test]
    fn cni_args() {
        let mut found = Vec::new();
        assert_eq!(
            redact_cni_args("K8S_POD_NAME=a;IgnoreUnknown=1", &mut found),
            None
        );
        assert_eq!(
            redact_cni_args("K8S_POD_NAME=a;TOKEN=xyz", &mut found).as_deref(),
            Some("K8S_POD_NAME=a;TOKEN=[REDACTED]")
        );
        assert_eq!(found, ["CNI_ARGS:TOKEN"]);
    }
}
