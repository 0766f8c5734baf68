//! The crate's single error type.

use std::fmt;
use std::path::PathBuf;

/// One entry of the `errors` array a registry returns in an error body
/// (`{"errors":[{"code":"MANIFEST_UNKNOWN","message":"...","detail":...}]}`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct ApiError {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub detail: Option<serde_json::Value>,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code.is_empty(), self.message.is_empty()) {
            (false, false) => write!(f, "{}: {}", self.code, self.message),
            (false, true) => f.write_str(&self.code),
            (true, _) => f.write_str(&self.message),
        }
    }
}

/// Formats a list of registry error codes for messages: ` (CODE: message; ...)`.
pub(crate) struct ApiErrors<'a>(pub &'a [ApiError]);

impl fmt::Display for ApiErrors<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return Ok(());
        }
        f.write_str(": ")?;
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Everything that can go wrong talking to a registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The image reference could not be parsed or is not valid.
    #[error("invalid reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },

    /// A platform string such as `linux/arm64/v8` could not be parsed.
    #[error("invalid platform {platform:?}: {reason}")]
    InvalidPlatform { platform: String, reason: String },

    /// A digest string is malformed or uses an unsupported algorithm.
    #[error("invalid digest {digest:?}: {reason}")]
    InvalidDigest { digest: String, reason: String },

    /// The registry answered with an unexpected HTTP status; `errors` holds
    /// the registry error codes parsed from the body, if any.
    #[error("{method} {url}: registry returned HTTP {status}{}", ApiErrors(errors))]
    Status {
        method: String,
        url: String,
        status: u16,
        errors: Vec<ApiError>,
    },

    /// The registry demands authentication and no credentials are known for it.
    #[error(
        "authentication required by {host} and no credentials are configured for it ({challenge})"
    )]
    AuthRequired { host: String, challenge: String },

    /// Authentication was attempted and failed (bad credentials, token
    /// endpoint refused, token rejected...).
    #[error("authentication to {host} failed: {reason}")]
    AuthFailed { host: String, reason: String },

    /// Content did not hash to the expected digest.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },

    /// Content did not have the expected size.
    #[error("size mismatch for {what}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },

    /// Content is larger than the caller's limit.
    #[error("{what} is larger than the limit of {limit} bytes")]
    TooLarge { what: String, limit: u64 },

    /// A manifest media type this client does not handle (e.g. schema1).
    #[error("unsupported media type {media_type:?} for {what}")]
    UnsupportedMediaType { what: String, media_type: String },

    /// An index / manifest list has no entry for the wanted platform.
    #[error("no manifest for platform {platform} in {reference} (available: {})", if available.is_empty() { "none".to_string() } else { available.join(", ") })]
    NoMatchingPlatform {
        reference: String,
        platform: String,
        available: Vec<String>,
    },

    /// A manifest or index could not be parsed.
    #[error("invalid manifest for {what}: {reason}")]
    InvalidManifest { what: String, reason: String },

    /// The registry did something the protocol does not allow (missing
    /// `Location` header, ...).
    #[error("registry protocol error: {0}")]
    Protocol(String),

    /// The Docker client configuration file could not be read or parsed.
    #[error("docker config {}: {reason}", path.display())]
    Config { path: PathBuf, reason: String },

    /// A `docker-credential-*` helper failed.
    #[error("credential helper {helper}: {reason}")]
    CredentialHelper { helper: String, reason: String },

    /// Transport-level failure (connection refused, TLS, body read...).
    #[error("HTTP request failed: {0}")]
    Http(#[from] reqwest::Error),

    /// Local file I/O failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl RegistryError {
    /// Registry error codes (`MANIFEST_UNKNOWN`, `BLOB_UNKNOWN`, `DENIED`...)
    /// carried by this error, if any.
    pub fn codes(&self) -> Vec<&str> {
        match self {
            RegistryError::Status { errors, .. } => {
                errors.iter().map(|e| e.code.as_str()).collect()
            }
            _ => Vec::new(),
        }
    }

    /// HTTP status of a [`RegistryError::Status`] error.
    pub fn status(&self) -> Option<u16> {
        match self {
            RegistryError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// True for a 404 or a `*_UNKNOWN` error code.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
            || self.codes().iter().any(|c| {
                matches!(
                    *c,
                    "MANIFEST_UNKNOWN" | "BLOB_UNKNOWN" | "NAME_UNKNOWN" | "NOT_FOUND"
                )
            })
    }

    /// True for authentication / authorisation failures.
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            RegistryError::AuthRequired { .. } | RegistryError::AuthFailed { .. }
        ) || self.status() == Some(403)
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        RegistryError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Parses a registry error body; returns an empty list for anything else.
pub(crate) fn parse_error_body(body: &[u8]) -> Vec<ApiError> {
    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(default)]
        errors: Vec<ApiError>,
    }
    match serde_json::from_slice::<Body>(body) {
        Ok(b) => b.errors,
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() {
                Vec::new()
            } else {
                let mut message: String = text.chars().take(200).collect();
                if text.chars().count() > 200 {
                    message.push('…');
                }
                vec![ApiError {
                    code: String::new(),
                    message,
                    detail: None,
                }]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_codes() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}}]}"#;
        let errors = parse_error_body(body);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].code, "MANIFEST_UNKNOWN");
        let e = RegistryError::Status {
            method: "GET".into(),
            url: "http://127.0.0.1/v2/x/manifests/y".into(),
            status: 404,
            errors,
        };
        assert!(e.is_not_found());
        assert_eq!(e.codes(), vec!["MANIFEST_UNKNOWN"]);
        let msg = e.to_string();
        assert!(msg.contains("HTTP 404"), "{msg}");
        assert!(msg.contains("MANIFEST_UNKNOWN: manifest unknown"), "{msg}");
    }

    #[test]
    fn error_body_not_json() {
        let errors = parse_error_body(b"<html>bad gateway</html>");
        assert_eq!(errors[0].message, "<html>bad gateway</html>");
        assert!(parse_error_body(b"").is_empty());
    }
}
