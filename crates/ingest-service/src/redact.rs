//! No secret in the logs, at any level: the text of every log line passes through [`redact`]
//! before it is written, and the crates that see credentials (HTTP clients, TLS, the OAuth
//! stacks) are capped below DEBUG whatever `RUST_LOG` says ([`DEPENDENCY_CAPS`]).
//!
//! Redaction is the second line of defence; the first is that bq-ingest itself never logs a
//! header or a credential. It removes what looks like one: a bearer or basic credential, a JWT
//! (an ID token, a signed assertion), a Google access token (`ya29.…`), a PEM private key, and
//! the values of the JSON and form fields that carry them (`access_token`, `id_token`,
//! `refresh_token`, `private_key`, `client_secret`, `assertion`).

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::Regex;

/// What replaces a secret.
pub const REDACTED: &str = "[redacted]";

/// Per-target levels added after `RUST_LOG`, replacing any directive for the same target: these
/// crates log request headers, token responses or key material at DEBUG and TRACE.
pub const DEPENDENCY_CAPS: &[&str] = &[
    "hyper=info",
    "hyper_util=info",
    "h2=info",
    "reqwest=info",
    "rustls=info",
    "tonic=info",
    "tower=info",
    "yup_oauth2=info",
    "gcloud_auth=info",
    "gcloud_metadata=info",
    "google_cloud_auth=info",
    "token_source=info",
    "gcp_bigquery_client=info",
];

static PATTERNS: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    let rules: [(&str, &'static str); 6] = [
        // PEM keys, also as a Debug string with `\n` escapes.
        (
            r"(?s)-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----",
            REDACTED,
        ),
        // JSON and form fields that carry credentials (quotes may be escaped in Debug output).
        (
            r#"(?i)(\\?"(?:access_token|id_token|refresh_token|private_key|client_secret|assertion|token)\\?"\s*:\s*\\?")(?:[^"\\]|\\[^"])*"#,
            "${1}[redacted]",
        ),
        (
            r"(?i)\b((?:access_token|id_token|refresh_token|client_secret|assertion)=)[^&\s]+",
            "${1}[redacted]",
        ),
        // Authorization values.
        (
            r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{4,}",
            "$1 [redacted]",
        ),
        // JWTs: a base64url JSON header (`eyJ`), a payload and an optional signature.
        (
            r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*",
            REDACTED,
        ),
        // Google OAuth access tokens.
        (r"ya29\.[A-Za-z0-9._-]+", REDACTED),
    ];
    rules
        .into_iter()
        .map(|(pattern, replacement)| {
            (
                Regex::new(pattern).expect("valid redaction pattern"),
                replacement,
            )
        })
        .collect()
});

/// `text` with every secret-shaped part replaced by [`REDACTED`]; borrowed when there is none.
///
/// ```
/// use ingest_service::redact::redact;
/// assert_eq!(redact("authorization: Bearer ya29.a0AfB_secret"), "authorization: Bearer [redacted]");
/// assert_eq!(redact(r#"{"access_token":"ya29.x","expires_in":3599}"#), r#"{"access_token":"[redacted]","expires_in":3599}"#);
/// assert_eq!(redact("gs://b/ds/t/_SUCCESS done"), "gs://b/ds/t/_SUCCESS done");
/// ```
pub fn redact(text: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(text);
    for (pattern, replacement) in PATTERNS.iter() {
        if pattern.is_match(&out) {
            out = Cow::Owned(pattern.replace_all(&out, *replacement).into_owned());
        }
    }
    out
}

/// A writer that redacts each buffer before writing it to `inner` (the text log format writes
/// one event per call).
#[derive(Debug)]
pub struct RedactingWriter<W>(pub W);

impl<W: std::io::Write> std::io::Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_secret_is_redacted() {
        let jwt = "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.eyJhdWQiOiJ4In0.c2lnbmF0dXJl";
        let pem = "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\\n-----END PRIVATE KEY-----\\n";
        let cases = [
            format!("Authorization: Bearer {jwt}"),
            format!("sending assertion={jwt}&grant_type=x"),
            format!(r#"response {{"id_token": "{jwt}", "token_type": "Bearer"}}"#),
            r#"debug {\"access_token\": \"ya29.c.b0AXv0zTsecret\"}"#.to_string(),
            format!(
                r#"key {{"private_key": "{pem}", "client_email": "sa@p.iam.gserviceaccount.com"}}"#
            ),
            format!("raw {pem}"),
            "token ya29.a0AfB_byC-secret_value".to_string(),
            "Basic dXNlcjpzZWNyZXQ=".to_string(),
            format!("bare {jwt} in a message"),
        ];
        for case in &cases {
            let out = redact(case);
            assert!(out.contains("[redacted]"), "{case} → {out}");
            for secret in [
                jwt,
                "ya29.c.b0AXv0zTsecret",
                "ya29.a0AfB_byC-secret_value",
                "MIIEvQ",
                "dXNlcjpzZWNyZXQ",
            ] {
                assert!(!out.contains(secret), "{case} → {out}");
            }
        }
        // What stays: the surroundings, and ordinary text.
        assert!(redact(&cases[4]).contains("sa@p.iam.gserviceaccount.com"));
        for plain in [
            "gs://bucket/ds/t/$2020010203/_SUCCESS: done; acknowledged",
            "job gcf-ingest-ds_t_ab12_0 failed: invalid: Provided Schema does not match",
            "token_type=Bearer",
        ] {
            assert_eq!(redact(plain), plain);
        }
    }
}
