//! Image references with Docker's normalisation rules.

use std::fmt;
use std::str::FromStr;

use crate::RegistryError;

/// Registry name Docker Hub images normalise to.
pub const DOCKER_HUB: &str = "docker.io";
/// Host actually spoken to for Docker Hub.
pub const DOCKER_HUB_API_HOST: &str = "index.docker.io";
/// Tag used when a reference names neither a tag nor a digest.
pub const DEFAULT_TAG: &str = "latest";

const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// A normalised image reference: `registry/repository[:tag][@digest]`.
///
/// `tag` is `Some("latest")` when the input named neither tag nor digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

fn bad(reference: &str, reason: impl Into<String>) -> RegistryError {
    RegistryError::InvalidReference {
        reference: reference.to_string(),
        reason: reason.into(),
    }
}

impl Reference {
    /// Parses and normalises a reference as `docker pull` does:
    /// `node:12` → `docker.io/library/node:12`, `user/app` →
    /// `docker.io/user/app:latest`, `localhost:5000/x`,
    /// `127.0.0.1:5000/x@sha256:…`.
    pub fn parse(s: &str) -> Result<Self, RegistryError> {
        if s.is_empty() {
            return Err(bad(s, "empty reference"));
        }
        if s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(bad(
                s,
                "a 64-character hexadecimal string is an image ID, not a repository name",
            ));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad(s, "contains whitespace"));
        }

        // Split the domain as Docker's splitDockerDomain does: the first
        // component is a registry host only if it looks like one.
        let (mut registry, remainder) = match s.find('/') {
            Some(i) => {
                let first = &s[..i];
                if first.contains(['.', ':'])
                    || first == "localhost"
                    || first.to_lowercase() != first
                {
                    (first.to_string(), &s[i + 1..])
                } else {
                    (DOCKER_HUB.to_string(), s)
                }
            }
            None => (DOCKER_HUB.to_string(), s),
        };
        if registry == DOCKER_HUB_API_HOST || registry == "registry-1.docker.io" {
            registry = DOCKER_HUB.to_string();
        }
        validate_domain(&registry).map_err(|r| bad(s, r))?;

        // remainder = path[:tag][@digest]
        let (name_tag, digest) = match remainder.split_once('@') {
            Some((n, d)) => (n, Some(d)),
            None => (remainder, None),
        };
        let (path, tag) = match name_tag.rfind(':') {
            // The tag colon comes after the last '/' (the domain, which may
            // hold a port, has already been split off).
            Some(i) if !name_tag[i..].contains('/') => (&name_tag[..i], Some(&name_tag[i + 1..])),
            _ => (name_tag, None),
        };
        if path.is_empty() {
            return Err(bad(s, "empty repository name"));
        }
        if path.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(bad(s, "repository name must be lowercase"));
        }
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_string()
        };
        for component in repository.split('/') {
            if !valid_path_component(component) {
                return Err(bad(
                    s,
                    format!("invalid repository path component {component:?}"),
                ));
            }
        }
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(bad(
                s,
                format!("name longer than {MAX_NAME_LEN} characters"),
            ));
        }
        if let Some(t) = tag {
            validate_tag(t).map_err(|r| bad(s, r))?;
        }
        if let Some(d) = digest {
            validate_digest(d).map_err(|r| bad(s, r))?;
        }
        let tag = match (tag, digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some(DEFAULT_TAG.to_string()),
            (None, Some(_)) => None,
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest: digest.map(str::to_string),
        })
    }

    /// Host name (with port) the Distribution API is served on:
    /// `index.docker.io` for Docker Hub, the registry name otherwise.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API_HOST
        } else {
            &self.registry
        }
    }

    /// The manifest reference used in API paths: the digest when there is
    /// one, else the tag (`latest` by default).
    pub fn manifest_reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or(DEFAULT_TAG)
    }

    /// `registry/repository` without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// Same repository, pinned to `digest` (the tag is kept).
    pub fn with_digest(&self, digest: &str) -> Reference {
        Reference {
            digest: Some(digest.to_string()),
            ..self.clone()
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = RegistryError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() {
        return false;
    }
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let mut i = 0;
    loop {
        // a run of alphanumerics
        let start = i;
        while i < b.len() && alnum(b[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == b.len() {
            return true;
        }
        // a separator
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == b.len() {
            return false;
        }
    }
}

fn validate_domain(d: &str) -> Result<(), String> {
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        let end = rest
            .find(']')
            .ok_or_else(|| format!("invalid registry host {d:?}"))?;
        let ip = &rest[..end];
        if ip.is_empty() || !ip.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return Err(format!("invalid IPv6 registry host {d:?}"));
        }
        let after = &rest[end + 1..];
        match after.strip_prefix(':') {
            Some(p) => (None, Some(p)),
            None if after.is_empty() => (None, None),
            None => return Err(format!("invalid registry host {d:?}")),
        }
    } else {
        match d.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(d), None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("invalid port in registry host {d:?}"));
        }
    }
    if let Some(h) = host {
        if h.is_empty() {
            return Err("empty registry host".to_string());
        }
        for label in h.split('.') {
            let lb = label.as_bytes();
            let ok = !lb.is_empty()
                && lb.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
                && lb[0] != b'-'
                && lb[lb.len() - 1] != b'-';
            if !ok {
                return Err(format!("invalid registry host {d:?}"));
            }
        }
    }
    Ok(())
}

/// `[\w][\w.-]{0,127}`
fn validate_tag(t: &str) -> Result<(), String> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let b = t.as_bytes();
    if b.is_empty() {
        return Err("empty tag".to_string());
    }
    if b.len() > MAX_TAG_LEN {
        return Err(format!("tag longer than {MAX_TAG_LEN} characters"));
    }
    if !word(b[0]) || !b.iter().all(|&x| word(x) || x == b'.' || x == b'-') {
        return Err(format!("invalid tag {t:?}"));
    }
    Ok(())
}

/// Validates `algorithm:hex`. sha256 and sha512 are checked for exact
/// length and lowercase hex; other algorithms must follow the OCI grammar.
pub(crate) fn validate_digest(d: &str) -> Result<(), String> {
    let (alg, hex) = d
        .split_once(':')
        .ok_or_else(|| format!("digest {d:?} has no algorithm"))?;
    let lower_hex = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    match alg {
        "sha256" if hex.len() == 64 && lower_hex(hex) => Ok(()),
        "sha512" if hex.len() == 128 && lower_hex(hex) => Ok(()),
        "sha256" | "sha512" => Err(format!("invalid {alg} digest {d:?}")),
        _ => {
            let alg_ok = !alg.is_empty()
                && alg.split(['+', '.', '_', '-']).all(|c| {
                    !c.is_empty()
                        && c.bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                });
            let hex_ok = hex.len() >= 32
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b'_' | b'-'));
            if alg_ok && hex_ok {
                Ok(())
            } else {
                Err(format!("invalid digest {d:?}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn p(s: &str) -> Reference {
        Reference::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn normalisation_table() {
        #[allow(clippy::type_complexity)]
        let cases: &[(&str, &str, &str, Option<&str>, Option<&str>)] = &[
            ("node", "docker.io", "library/node", Some("latest"), None),
            ("node:12", "docker.io", "library/node", Some("12"), None),
            ("user/app", "docker.io", "user/app", Some("latest"), None),
            (
                "docker.io/library/x",
                "docker.io",
                "library/x",
                Some("latest"),
                None,
            ),
            (
                "docker.io/x",
                "docker.io",
                "library/x",
                Some("latest"),
                None,
            ),
            (
                "index.docker.io/x:1",
                "docker.io",
                "library/x",
                Some("1"),
                None,
            ),
            ("localhost/x", "localhost", "x", Some("latest"), None),
            (
                "localhost:5000/x",
                "localhost:5000",
                "x",
                Some("latest"),
                None,
            ),
            (
                "localhost:5000/x:5000",
                "localhost:5000",
                "x",
                Some("5000"),
                None,
            ),
            (
                "localhost:5000/a/b/c:v1.2-rc_3",
                "localhost:5000",
                "a/b/c",
                Some("v1.2-rc_3"),
                None,
            ),
            (
                "ghcr.io/owner/repo:tag",
                "ghcr.io",
                "owner/repo",
                Some("tag"),
                None,
            ),
            ("quay.io/a/b/c", "quay.io", "a/b/c", Some("latest"), None),
            ("[::1]:5000/x:t", "[::1]:5000", "x", Some("t"), None),
            (
                "my-reg.local/a__b/c-d.e",
                "my-reg.local",
                "a__b/c-d.e",
                Some("latest"),
                None,
            ),
            // A first component without '.', ':' and not "localhost" is a path.
            (
                "foo/bar/baz",
                "docker.io",
                "foo/bar/baz",
                Some("latest"),
                None,
            ),
            // `foo:5000` without slash is a tag, not a port.
            ("foo:5000", "docker.io", "library/foo", Some("5000"), None),
        ];
        for (input, reg, repo, tag, digest) in cases {
            let r = p(input);
            assert_eq!(r.registry, *reg, "{input}");
            assert_eq!(r.repository, *repo, "{input}");
            assert_eq!(r.tag.as_deref(), *tag, "{input}");
            assert_eq!(r.digest.as_deref(), *digest, "{input}");
        }
    }

    #[test]
    fn digests() {
        let r = p(&format!("127.0.0.1:5000/x@{D}"));
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "x");
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.as_deref(), Some(D));
        assert_eq!(r.manifest_reference(), D);
        assert_eq!(r.to_string(), format!("127.0.0.1:5000/x@{D}"));

        let r = p(&format!("x@{D}"));
        assert_eq!(r.to_string(), format!("docker.io/library/x@{D}"));

        let r = p(&format!("x:1@{D}"));
        assert_eq!(r.tag.as_deref(), Some("1"));
        assert_eq!(r.manifest_reference(), D);
        assert_eq!(r.to_string(), format!("docker.io/library/x:1@{D}"));
    }

    #[test]
    fn display_and_api_host() {
        let r = p("node:12");
        assert_eq!(r.to_string(), "docker.io/library/node:12");
        assert_eq!(r.api_host(), "index.docker.io");
        assert_eq!(r.name(), "docker.io/library/node");
        let r = p("localhost:5000/x");
        assert_eq!(r.to_string(), "localhost:5000/x:latest");
        assert_eq!(r.api_host(), "localhost:5000");
        // Round trip.
        assert_eq!(p(&r.to_string()), r);
        assert_eq!(
            "node".parse::<Reference>().unwrap(),
            p("docker.io/library/node:latest")
        );
    }

    #[test]
    fn rejected() {
        let bad = [
            "",
            "Node", // uppercase repository
            "docker.io/library/Node",
            "localhost:5000/MyApp",
            "x:",           // empty tag
            "x:-bad",       // tag must start with a word char
            "x@sha256:abc", // short digest
            "x@sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef", // uppercase hex
            "x@md5",                                                                     // no colon
            "a//b",
            "a/b/",
            "/a",
            "a..b",
            "-a",
            "a-",
            "x y",
            "localhost:port/x", // non-numeric port
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ];
        for s in bad {
            match Reference::parse(s) {
                Err(RegistryError::InvalidReference { .. }) => {}
                other => panic!("{s:?} should be rejected, got {other:?}"),
            }
        }
        let long_tag = format!("x:{}", "a".repeat(129));
        assert!(Reference::parse(&long_tag).is_err());
        let long_name = "a".repeat(300);
        assert!(Reference::parse(&long_name).is_err());
    }

    #[test]
    fn uppercase_domain_component_is_a_domain() {
        // Docker treats a first component with uppercase letters as a host.
        let r = p("Registry/app");
        assert_eq!(r.registry, "Registry");
        assert_eq!(r.repository, "app");
    }

    #[test]
    fn path_components() {
        for ok in ["a", "a0", "a.b", "a_b", "a__b", "a-b", "a---b", "a.b-c_d"] {
            assert!(valid_path_component(ok), "{ok}");
        }
        for no in ["", "_a", "a_", "a___b", "a._b", "A", "a/b", "a:b"] {
            assert!(!valid_path_component(no), "{no}");
        }
    }
}
