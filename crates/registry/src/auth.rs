//! Authentication: `WWW-Authenticate` challenges and credentials from the
//! Docker client configuration (`auths`, `credHelpers`, `credsStore`).

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use crate::reference::DOCKER_HUB;
use crate::RegistryError;

/// Key Docker uses for Docker Hub in `auths` and with credential helpers.
pub const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";

/// One challenge of a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic {
        realm: Option<String>,
    },
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
        error: Option<String>,
    },
    /// Any other scheme, kept by name.
    Other(String),
}

impl fmt::Display for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Challenge::Basic { realm } => match realm {
                Some(r) => write!(f, "Basic realm={r:?}"),
                None => f.write_str("Basic"),
            },
            Challenge::Bearer {
                realm,
                service,
                scope,
                ..
            } => {
                write!(f, "Bearer realm={realm:?}")?;
                if let Some(s) = service {
                    write!(f, ",service={s:?}")?;
                }
                if let Some(s) = scope {
                    write!(f, ",scope={s:?}")?;
                }
                Ok(())
            }
            Challenge::Other(s) => f.write_str(s),
        }
    }
}

fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// Parses one `WWW-Authenticate` header value, which may hold several
/// challenges (`Basic realm="a", Bearer realm="b",service="c"`). Parameter
/// names are case-insensitive; values may be tokens or quoted strings.
pub fn parse_www_authenticate(value: &str) -> Vec<Challenge> {
    let b = value.as_bytes();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && (b[*i] == b' ' || b[*i] == b'\t') {
            *i += 1;
        }
    };
    let read_token = |i: &mut usize| -> String {
        let start = *i;
        while *i < b.len() && is_tchar(b[*i]) {
            *i += 1;
        }
        value[start..*i].to_string()
    };
    let mut out = Vec::new();
    loop {
        while i < b.len() && (b[i] == b' ' || b[i] == b'\t' || b[i] == b',') {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let scheme = read_token(&mut i);
        if scheme.is_empty() {
            // Garbage: skip a byte and try again.
            i += 1;
            continue;
        }
        let mut params: HashMap<String, String> = HashMap::new();
        loop {
            skip_ws(&mut i);
            let save = i;
            let name = read_token(&mut i);
            skip_ws(&mut i);
            if name.is_empty() || i >= b.len() || b[i] != b'=' {
                // Not a parameter: the start of the next challenge.
                i = save;
                break;
            }
            i += 1; // '='
            skip_ws(&mut i);
            let val = if i < b.len() && b[i] == b'"' {
                i += 1;
                let mut v = Vec::new();
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' && i + 1 < b.len() {
                        i += 1;
                    }
                    v.push(b[i]);
                    i += 1;
                }
                i += 1; // closing quote (or end)
                String::from_utf8_lossy(&v).into_owned()
            } else {
                let start = i;
                while i < b.len() && b[i] != b',' && b[i] != b' ' && b[i] != b'\t' {
                    i += 1;
                }
                value[start..i].to_string()
            };
            params.insert(name.to_ascii_lowercase(), val);
            skip_ws(&mut i);
            if i < b.len() && b[i] == b',' {
                i += 1;
                continue;
            }
            break;
        }
        let challenge = match scheme.to_ascii_lowercase().as_str() {
            "basic" => Challenge::Basic {
                realm: params.remove("realm"),
            },
            "bearer" => match params.remove("realm") {
                Some(realm) => Challenge::Bearer {
                    realm,
                    service: params.remove("service"),
                    scope: params.remove("scope"),
                    error: params.remove("error"),
                },
                None => Challenge::Other(scheme),
            },
            _ => Challenge::Other(scheme),
        };
        out.push(challenge);
    }
    out
}

/// A user name and secret for a registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    /// OAuth2 refresh token (`identitytoken` in config.json, or a helper
    /// answering with user name `<token>`).
    pub identity_token: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field(
                "identity_token",
                &self.identity_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl Credentials {
    pub(crate) fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

#[derive(Debug, Default, Deserialize)]
struct DockerConfigFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(rename = "credsStore", default)]
    creds_store: Option<String>,
    #[serde(rename = "credHelpers", default)]
    cred_helpers: HashMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

/// Where Docker keeps its client config: `$DOCKER_CONFIG/config.json`, else
/// `~/.docker/config.json`.
pub fn default_docker_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".docker").join("config.json"))
}

/// Normalises an `auths` / `credHelpers` key or a host to the form compared:
/// scheme and path dropped, Docker Hub aliases folded to `docker.io`.
pub(crate) fn normalize_auth_key(key: &str) -> String {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let k = k.split('/').next().unwrap_or(k).to_ascii_lowercase();
    match k.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => DOCKER_HUB.to_string(),
        _ => k,
    }
}

/// Server URL handed to a credential helper for `host`.
fn helper_server_url(host: &str) -> String {
    if normalize_auth_key(host) == DOCKER_HUB {
        DOCKER_HUB_AUTH_KEY.to_string()
    } else {
        host.to_string()
    }
}

/// Credentials from a Docker client configuration file.
#[derive(Debug, Default)]
pub(crate) struct CredentialStore {
    config: DockerConfigFile,
    /// `PATH` used to find `docker-credential-*` (the process's when `None`).
    search_path: Option<OsString>,
}

impl CredentialStore {
    /// Loads `path`; a missing file means no credentials.
    pub(crate) fn load(path: Option<&Path>) -> Result<Self, RegistryError> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => {
                return Err(RegistryError::Config {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })
            }
        };
        let config: DockerConfigFile = if text.iter().all(u8::is_ascii_whitespace) {
            DockerConfigFile::default()
        } else {
            serde_json::from_slice(&text).map_err(|e| RegistryError::Config {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?
        };
        Ok(CredentialStore {
            config,
            search_path: None,
        })
    }

    #[cfg(test)]
    pub(crate) fn with_search_path(mut self, path: OsString) -> Self {
        self.search_path = Some(path);
        self
    }

    /// Credentials for `host` (a registry name such as `docker.io` or
    /// `localhost:5000`): `credHelpers[host]`, else `credsStore`, else the
    /// `auths` entry. A `credsStore` whose helper is not installed is
    /// ignored (as with configs copied from Docker Desktop); a missing
    /// `credHelpers` helper is an error.
    pub(crate) async fn get(&self, host: &str) -> Result<Option<Credentials>, RegistryError> {
        let key = normalize_auth_key(host);
        let helper = self
            .config
            .cred_helpers
            .iter()
            .find(|(k, _)| normalize_auth_key(k) == key)
            .map(|(_, v)| (v.clone(), true))
            .or_else(|| self.config.creds_store.clone().map(|s| (s, false)));
        if let Some((name, explicit)) = helper.filter(|(n, _)| !n.is_empty()) {
            match self.run_helper(&name, &helper_server_url(host)).await {
                Ok(Some(c)) => return Ok(Some(c)),
                Ok(None) => {}
                Err(HelperError::NotInstalled(_)) if !explicit => {}
                Err(HelperError::NotInstalled(p)) => {
                    return Err(RegistryError::CredentialHelper {
                        helper: p,
                        reason: "executable not found in PATH".to_string(),
                    })
                }
                Err(HelperError::Failed(e)) => return Err(e),
            }
        }
        let entry = self
            .config
            .auths
            .iter()
            .filter(|(k, _)| normalize_auth_key(k) == key)
            // Prefer an exact key match over a normalised one.
            .min_by_key(|(k, _)| usize::from(k.as_str() != host))
            .map(|(_, v)| v);
        let Some(entry) = entry else { return Ok(None) };
        let (mut username, mut password) = (String::new(), String::new());
        if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|e| RegistryError::Config {
                    path: PathBuf::from("config.json"),
                    reason: format!("auths[{host}].auth is not base64: {e}"),
                })?;
            let decoded = String::from_utf8_lossy(&decoded).into_owned();
            let (u, p) = decoded
                .split_once(':')
                .ok_or_else(|| RegistryError::Config {
                    path: PathBuf::from("config.json"),
                    reason: format!("auths[{host}].auth is not user:password"),
                })?;
            username = u.to_string();
            password = p.to_string();
        } else if let Some(u) = &entry.username {
            username = u.clone();
            password = entry.password.clone().unwrap_or_default();
        }
        let identity_token = entry.identitytoken.clone().filter(|t| !t.is_empty());
        if username.is_empty() && password.is_empty() && identity_token.is_none() {
            return Ok(None);
        }
        Ok(Some(Credentials {
            username,
            password,
            identity_token,
        }))
    }

    fn find_helper(&self, name: &str) -> Option<PathBuf> {
        let path = self
            .search_path
            .clone()
            .or_else(|| std::env::var_os("PATH"))?;
        let file = format!("docker-credential-{name}");
        std::env::split_paths(&path)
            .map(|d| d.join(&file))
            .find(|p| is_executable(p))
    }

    async fn run_helper(
        &self,
        name: &str,
        server: &str,
    ) -> Result<Option<Credentials>, HelperError> {
        let program = format!("docker-credential-{name}");
        let Some(exe) = self.find_helper(name) else {
            return Err(HelperError::NotInstalled(program));
        };
        let fail = |reason: String| {
            HelperError::Failed(RegistryError::CredentialHelper {
                helper: program.clone(),
                reason,
            })
        };
        let mut child = tokio::process::Command::new(&exe)
            .arg("get")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| fail(format!("cannot run {}: {e}", exe.display())))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(server.as_bytes())
                .await
                .map_err(|e| fail(format!("writing stdin: {e}")))?;
            // stdin is closed when dropped here.
        }
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .map_err(|_| fail("timed out after 60s".to_string()))?
            .map_err(|e| fail(e.to_string()))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            let msg = format!(
                "{} {}",
                stdout.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
            if msg.to_ascii_lowercase().contains("credentials not found") {
                return Ok(None);
            }
            return Err(fail(format!("exited with {}: {}", out.status, msg.trim())));
        }
        #[derive(Deserialize)]
        struct HelperOut {
            #[serde(rename = "Username", default)]
            username: String,
            #[serde(rename = "Secret", default)]
            secret: String,
        }
        let parsed: HelperOut = serde_json::from_str(stdout.trim())
            .map_err(|e| fail(format!("bad JSON output: {e}")))?;
        if parsed.username == "<token>" {
            return Ok(Some(Credentials {
                username: String::new(),
                password: String::new(),
                identity_token: Some(parsed.secret),
            }));
        }
        if parsed.username.is_empty() && parsed.secret.is_empty() {
            return Ok(None);
        }
        Ok(Some(Credentials {
            username: parsed.username,
            password: parsed.secret,
            identity_token: None,
        }))
    }
}

enum HelperError {
    NotInstalled(String),
    Failed(RegistryError),
}

fn is_executable(p: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    }
    #[cfg(not(unix))]
    {
        p.is_file()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge() {
        let c = parse_www_authenticate(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/node:pull""#,
        );
        assert_eq!(
            c,
            vec![Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/node:pull".into()),
                error: None,
            }]
        );
    }

    #[test]
    fn bearer_with_error_and_commas_in_scope() {
        let c = parse_www_authenticate(
            r#"Bearer realm="http://127.0.0.1:1/t", service="svc" , scope="repository:a/b:pull,push", error="insufficient_scope""#,
        );
        match &c[..] {
            [Challenge::Bearer {
                realm,
                service,
                scope,
                error,
            }] => {
                assert_eq!(realm, "http://127.0.0.1:1/t");
                assert_eq!(service.as_deref(), Some("svc"));
                assert_eq!(scope.as_deref(), Some("repository:a/b:pull,push"));
                assert_eq!(error.as_deref(), Some("insufficient_scope"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn basic_and_multiple_challenges() {
        assert_eq!(
            parse_www_authenticate(r#"Basic realm="Registry Realm""#),
            vec![Challenge::Basic {
                realm: Some("Registry Realm".into())
            }]
        );
        assert_eq!(
            parse_www_authenticate("basic"),
            vec![Challenge::Basic { realm: None }]
        );
        let c = parse_www_authenticate(
            r#"Basic realm="r", Bearer realm=http://h/token,service=s, Negotiate"#,
        );
        assert_eq!(c.len(), 3, "{c:?}");
        assert_eq!(
            c[0],
            Challenge::Basic {
                realm: Some("r".into())
            }
        );
        assert_eq!(
            c[1],
            Challenge::Bearer {
                realm: "http://h/token".into(),
                service: Some("s".into()),
                scope: None,
                error: None
            }
        );
        assert_eq!(c[2], Challenge::Other("Negotiate".into()));
        // Escaped quote inside a quoted string, case-insensitive names.
        let c = parse_www_authenticate(r#"BEARER REALM="a\"b",Service="x""#);
        assert_eq!(
            c,
            vec![Challenge::Bearer {
                realm: "a\"b".into(),
                service: Some("x".into()),
                scope: None,
                error: None
            }]
        );
        // Bearer without realm is not usable.
        assert_eq!(
            parse_www_authenticate(r#"Bearer service="x""#),
            vec![Challenge::Other("Bearer".into())]
        );
        assert!(parse_www_authenticate("").is_empty());
    }

    fn write_config(dir: &Path, json: &str) -> PathBuf {
        let p = dir.join("config.json");
        std::fs::write(&p, json).unwrap();
        p
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn auths_entries() {
        let dir = tempfile::tempdir().unwrap();
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cr:et");
        let cfg = write_config(
            dir.path(),
            &format!(
                r#"{{"auths":{{
                    "https://index.docker.io/v1/":{{"auth":"{auth}"}},
                    "localhost:5000":{{"username":"bob","password":"pw"}},
                    "http://127.0.0.1:6000/v2/":{{"auth":"{auth}"}},
                    "empty.example":{{}}
                }}}}"#
            ),
        );
        let store = CredentialStore::load(Some(&cfg)).unwrap();
        let rt = rt();
        let hub = rt.block_on(store.get("docker.io")).unwrap().unwrap();
        assert_eq!(hub.username, "alice");
        assert_eq!(hub.password, "s3cr:et");
        assert_eq!(
            rt.block_on(store.get("index.docker.io")).unwrap(),
            Some(hub.clone())
        );
        let local = rt.block_on(store.get("localhost:5000")).unwrap().unwrap();
        assert_eq!(
            (local.username.as_str(), local.password.as_str()),
            ("bob", "pw")
        );
        assert!(rt.block_on(store.get("127.0.0.1:6000")).unwrap().is_some());
        assert!(rt.block_on(store.get("localhost:5001")).unwrap().is_none());
        assert!(rt.block_on(store.get("empty.example")).unwrap().is_none());
        // Debug never shows secrets.
        assert!(!format!("{hub:?}").contains("s3cr"));
        assert_eq!(
            hub.basic_header(),
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("alice:s3cr:et")
            )
        );
    }

    #[test]
    fn missing_and_malformed_config() {
        let dir = tempfile::tempdir().unwrap();
        let store = CredentialStore::load(Some(&dir.path().join("nope.json"))).unwrap();
        assert!(rt().block_on(store.get("docker.io")).unwrap().is_none());
        let bad = write_config(dir.path(), "{not json");
        assert!(matches!(
            CredentialStore::load(Some(&bad)),
            Err(RegistryError::Config { .. })
        ));
    }

    #[cfg(unix)]
    fn write_helper(dir: &Path, name: &str, script: &str) {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join(format!("docker-credential-{name}"));
        std::fs::write(&p, script).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn cred_helper_and_store() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        // The helper echoes the server URL it was given as the user name so
        // the test can check what was written on stdin.
        write_helper(
            &bin,
            "test",
            "#!/bin/sh\n[ \"$1\" = get ] || exit 3\nread -r server\n\
             case \"$server\" in\n\
               *nocreds*) echo 'credentials not found in native keychain'; exit 1;;\n\
               *broken*) echo 'boom' >&2; exit 2;;\n\
             esac\n\
             printf '{\"ServerURL\":\"%s\",\"Username\":\"%s\",\"Secret\":\"tok-%s\"}\\n' \"$server\" \"$server\" \"$server\"\n",
        );
        write_helper(
            &bin,
            "store",
            "#!/bin/sh\nread -r server\nprintf '{\"Username\":\"<token>\",\"Secret\":\"refresh-%s\"}' \"$server\"\n",
        );
        let cfg = write_config(
            dir.path(),
            r#"{"credHelpers":{"localhost:5000":"test","docker.io":"test","nocreds.example":"test",
                 "broken.example":"test","missing.example":"absent"},
                "credsStore":"store",
                "auths":{"nocreds.example":{"username":"fallback","password":"pw"}}}"#,
        );
        let store = CredentialStore::load(Some(&cfg))
            .unwrap()
            .with_search_path(bin.clone().into_os_string());
        let rt = rt();
        let c = rt.block_on(store.get("localhost:5000")).unwrap().unwrap();
        assert_eq!(c.username, "localhost:5000");
        assert_eq!(c.password, "tok-localhost:5000");
        let c = rt.block_on(store.get("docker.io")).unwrap().unwrap();
        assert_eq!(c.username, DOCKER_HUB_AUTH_KEY);
        // Helper says "not found": fall back to auths.
        let c = rt.block_on(store.get("nocreds.example")).unwrap().unwrap();
        assert_eq!(c.username, "fallback");
        // Helper failure is an error.
        assert!(matches!(
            rt.block_on(store.get("broken.example")),
            Err(RegistryError::CredentialHelper { .. })
        ));
        // Named helper not installed: error.
        assert!(matches!(
            rt.block_on(store.get("missing.example")),
            Err(RegistryError::CredentialHelper { .. })
        ));
        // Everything else goes to credsStore; `<token>` means identity token.
        let c = rt
            .block_on(store.get("other.example:1234"))
            .unwrap()
            .unwrap();
        assert_eq!(
            c.identity_token.as_deref(),
            Some("refresh-other.example:1234")
        );

        // A credsStore that is not installed is ignored.
        let cfg2 = dir.path().join("c2.json");
        std::fs::write(
            &cfg2,
            r#"{"credsStore":"desktop","auths":{"a.example":{"username":"u","password":"p"}}}"#,
        )
        .unwrap();
        let store2 = CredentialStore::load(Some(&cfg2))
            .unwrap()
            .with_search_path(bin.into_os_string());
        assert_eq!(
            rt.block_on(store2.get("a.example"))
                .unwrap()
                .unwrap()
                .username,
            "u"
        );
        assert!(rt.block_on(store2.get("b.example")).unwrap().is_none());
    }

    #[test]
    fn auth_key_normalisation() {
        assert_eq!(
            normalize_auth_key("https://index.docker.io/v1/"),
            "docker.io"
        );
        assert_eq!(normalize_auth_key("registry-1.docker.io"), "docker.io");
        assert_eq!(
            normalize_auth_key("http://LocalHost:5000/v2/"),
            "localhost:5000"
        );
        assert_eq!(helper_server_url("docker.io"), DOCKER_HUB_AUTH_KEY);
        assert_eq!(helper_server_url("ghcr.io"), "ghcr.io");
    }
}
