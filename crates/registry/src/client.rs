//! The Distribution API client.

use std::collections::HashMap;
use std::io::{Seek, SeekFrom};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::header::{
    HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, RETRY_AFTER,
    WWW_AUTHENTICATE,
};
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::auth::{
    default_docker_config_path, parse_www_authenticate, Challenge, CredentialStore, Credentials,
};
use crate::digest::{sha256_digest, verify, Hasher};
use crate::error::{parse_error_body, ApiError, ApiErrors};
use crate::media_types;
use crate::platform::select_from_index;
use crate::{ClientConfig, Platform, Reference, RegistryError, ResolvedImage};

/// Largest manifest / index accepted (as containerd).
const MAX_MANIFEST_SIZE: u64 = 4 << 20;
/// How much of an error body is read.
const MAX_ERROR_BODY: usize = 64 << 10;
/// Largest token response accepted.
const MAX_TOKEN_RESPONSE: u64 = 1 << 20;
/// Tries per request for connection errors, 5xx and 429.
const ATTEMPTS: u32 = 3;
/// Blobs up to this size are uploaded with one PUT; larger ones in PATCH
/// chunks of this size.
const DEFAULT_CHUNK_SIZE: u64 = 64 << 20;
const DEFAULT_RETRY_DELAY: Duration = Duration::from_millis(200);
const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);
const IO_BUF: usize = 64 << 10;
const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";

/// A place the Distribution API is served: the registry itself or a mirror.
#[derive(Debug, Clone)]
struct Endpoint {
    /// `scheme://host[:port][/prefix]`, without trailing slash.
    base: String,
    /// `host[:port]`: key for credentials and cached auth.
    host: String,
    /// Loopback host: never through a proxy.
    local: bool,
}

/// Token scopes (`repository:name:pull`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Scope(Vec<String>);

impl Scope {
    fn pull(repo: &str) -> Self {
        Scope(vec![format!("repository:{repo}:pull")])
    }
    fn push(repo: &str) -> Self {
        Scope(vec![format!("repository:{repo}:pull,push")])
    }
    fn add(&mut self, s: &str) {
        if !s.is_empty() && !self.0.iter().any(|x| x == s) {
            self.0.push(s.to_string());
        }
    }
    fn key(&self) -> String {
        self.0.join(" ")
    }
}

#[derive(Debug, Clone)]
enum HostScheme {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

struct CachedToken {
    token: String,
    expires: Instant,
}

#[derive(Default)]
struct AuthState {
    schemes: HashMap<String, HostScheme>,
    tokens: HashMap<(String, String), CachedToken>,
    creds: HashMap<String, Option<Credentials>>,
}

/// OCI Distribution client. Cheap to share behind an `Arc`; all methods take
/// `&self` and may run concurrently.
pub struct Client {
    cfg: ClientConfig,
    http: reqwest::Client,
    http_local: reqwest::Client,
    store: CredentialStore,
    state: Mutex<AuthState>,
    chunk_size: u64,
    retry_delay: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("cfg", &self.cfg)
            .field("chunk_size", &self.chunk_size)
            .finish_non_exhaustive()
    }
}

type MakeRequest<'a> =
    &'a (dyn Fn(&reqwest::Client) -> Result<reqwest::RequestBuilder, RegistryError> + Sync);

enum Attempt {
    Retry(RegistryError),
    Fatal(RegistryError),
}

impl Client {
    /// Builds a client; reads the Docker config (a missing file is fine, a
    /// malformed one is an error).
    pub fn new(cfg: ClientConfig) -> Result<Self, RegistryError> {
        let config_path = cfg
            .docker_config
            .clone()
            .or_else(default_docker_config_path);
        let store = CredentialStore::load(config_path.as_deref())?;
        let builder = || {
            reqwest::Client::builder()
                .user_agent(concat!("rbuild-registry/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(Duration::from_secs(30))
                .read_timeout(Duration::from_secs(300))
        };
        Ok(Client {
            http: builder().build()?,
            http_local: builder().no_proxy().build()?,
            store,
            cfg,
            state: Mutex::new(AuthState::default()),
            chunk_size: DEFAULT_CHUNK_SIZE,
            retry_delay: DEFAULT_RETRY_DELAY,
        })
    }

    /// Blobs larger than `bytes` are uploaded in PATCH chunks of `bytes`.
    pub fn with_chunk_size(mut self, bytes: u64) -> Self {
        self.chunk_size = bytes.max(1);
        self
    }

    /// First retry delay (doubled for each further try).
    pub fn with_retry_delay(mut self, delay: Duration) -> Self {
        self.retry_delay = delay;
        self
    }

    // ----------------------------------------------------------------------
    // Public operations
    // ----------------------------------------------------------------------

    /// Resolve a reference to a single-platform image manifest (following an
    /// index / manifest list by platform). Returns the manifest digest (of
    /// the chosen platform manifest), its raw bytes and media type, and the
    /// parsed manifest.
    pub async fn resolve(
        &self,
        r: &Reference,
        platform: &Platform,
    ) -> Result<ResolvedImage, RegistryError> {
        let what = r.to_string();
        let (mut bytes, content_type) = self.get_manifest(r, r.manifest_reference()).await?;
        let mut digest = match &r.digest {
            Some(d) => {
                verify(&what, &bytes, d)?;
                d.clone()
            }
            None => sha256_digest(&bytes),
        };
        let mut media_type = detect_media_type(content_type.as_deref(), &bytes, &what)?;
        let mut depth = 0;
        while media_types::is_index(&media_type) {
            depth += 1;
            if depth > 2 {
                return Err(RegistryError::InvalidManifest {
                    what,
                    reason: "indexes nested too deeply".to_string(),
                });
            }
            let entry = select_from_index(&bytes, platform, &what)?;
            crate::reference::validate_digest(&entry.digest).map_err(|reason| {
                RegistryError::InvalidManifest {
                    what: what.clone(),
                    reason: format!("index entry: {reason}"),
                }
            })?;
            let child_what = format!("{what} ({platform}: {})", entry.digest);
            let (child, child_type) = self.get_manifest(r, &entry.digest).await?;
            if child.len() as u64 != entry.size {
                return Err(RegistryError::SizeMismatch {
                    what: child_what,
                    expected: entry.size,
                    actual: child.len() as u64,
                });
            }
            verify(&child_what, &child, &entry.digest)?;
            media_type = match detect_media_type(child_type.as_deref(), &child, &child_what) {
                Ok(mt) => mt,
                // Some registries serve a generic content type; trust the
                // index's descriptor then.
                Err(_) if media_types::is_manifest(&entry.media_type) => entry.media_type.clone(),
                Err(e) => return Err(e),
            };
            bytes = child;
            digest = entry.digest;
        }
        if !media_types::is_manifest(&media_type) {
            return Err(RegistryError::UnsupportedMediaType { what, media_type });
        }
        let manifest = oci_spec::image::ImageManifest::from_reader(&bytes[..]).map_err(|e| {
            RegistryError::InvalidManifest {
                what: what.clone(),
                reason: e.to_string(),
            }
        })?;
        if manifest.schema_version() != 2 {
            return Err(RegistryError::InvalidManifest {
                what,
                reason: format!("schemaVersion {} (expected 2)", manifest.schema_version()),
            });
        }
        Ok(ResolvedImage {
            digest,
            media_type,
            bytes,
            manifest,
        })
    }

    /// Download a blob to `dest` (a file path; written to a temp file beside
    /// it and renamed when verified), streaming, verifying size and digest;
    /// never holds the blob in memory. On any error `dest` is left untouched.
    pub async fn fetch_blob(
        &self,
        r: &Reference,
        digest: &str,
        size: Option<u64>,
        dest: &Path,
    ) -> Result<(), RegistryError> {
        Hasher::for_digest(digest)?;
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let tmp = tempfile::Builder::new()
            .prefix(".rbuild-blob-")
            .suffix(".partial")
            .tempfile_in(&dir)
            .map_err(|e| RegistryError::io(&dir, e))?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut file = tmp
                .as_file()
                .try_clone()
                .map_err(|e| RegistryError::io(tmp.path(), e))?;
            file.set_len(0)
                .and_then(|_| file.seek(SeekFrom::Start(0)).map(|_| ()))
                .map_err(|e| RegistryError::io(tmp.path(), e))?;
            let mut file = tokio::fs::File::from_std(file);
            match self
                .download_into(r, digest, size, &mut file, tmp.path())
                .await
            {
                Ok(()) => break,
                Err(Attempt::Retry(_)) if attempt < ATTEMPTS => {
                    tokio::time::sleep(self.backoff(attempt)).await;
                }
                Err(Attempt::Retry(e) | Attempt::Fatal(e)) => return Err(e),
            }
        }
        tmp.persist(dest)
            .map_err(|e| RegistryError::io(dest, e.error))?;
        Ok(())
    }

    /// Fetch a small blob (such as an image config) into memory, refusing
    /// more than `max` bytes; verified against `digest`.
    pub async fn fetch_blob_bytes(
        &self,
        r: &Reference,
        digest: &str,
        max: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        Hasher::for_digest(digest)?;
        let what = format!("blob {digest}");
        let resp = self
            .send_pull(r, "GET", &|c, ep| {
                Ok(c.get(blob_url(ep, &r.repository, digest)))
            })
            .await?;
        let bytes = read_limited(resp, max, &what).await?;
        verify(&what, &bytes, digest)?;
        Ok(bytes)
    }

    /// Whether the repository of `r` has blob `digest` (HEAD on the registry
    /// itself, not on mirrors).
    pub async fn blob_exists(&self, r: &Reference, digest: &str) -> Result<bool, RegistryError> {
        Hasher::for_digest(digest)?;
        let ep = self.registry_endpoint(r);
        self.head_blob(&ep, &Scope::pull(&r.repository), &r.repository, digest)
            .await
    }

    /// Upload a blob from a file, streaming: skipped when the registry
    /// already has it, otherwise POST then one PUT `?digest=` (or PATCH
    /// chunks then PUT for blobs larger than the chunk size).
    pub async fn push_blob(
        &self,
        r: &Reference,
        digest: &str,
        size: u64,
        path: &Path,
    ) -> Result<(), RegistryError> {
        self.push_blob_from(r, digest, size, path, None).await
    }

    /// [`Client::push_blob`] that first tries a cross-repository mount from
    /// `mount_from` (same registry, other repository) and uploads only when
    /// the registry does not mount.
    pub async fn push_blob_from(
        &self,
        r: &Reference,
        digest: &str,
        size: u64,
        path: &Path,
        mount_from: Option<&Reference>,
    ) -> Result<(), RegistryError> {
        Hasher::for_digest(digest)?;
        let meta = tokio::fs::metadata(path)
            .await
            .map_err(|e| RegistryError::io(path, e))?;
        if meta.len() != size {
            return Err(RegistryError::SizeMismatch {
                what: path.display().to_string(),
                expected: size,
                actual: meta.len(),
            });
        }
        let ep = self.registry_endpoint(r);
        let mut scope = Scope::push(&r.repository);
        let mount = mount_from.filter(|m| m.registry == r.registry && m.repository != r.repository);
        if let Some(m) = mount {
            scope.add(&format!("repository:{}:pull", m.repository));
        }
        if self.head_blob(&ep, &scope, &r.repository, digest).await? {
            return Ok(());
        }

        let uploads = format!("{}/v2/{}/blobs/uploads/", ep.base, r.repository);
        let start_url = match mount {
            Some(m) => Url::parse_with_params(
                &uploads,
                &[("mount", digest), ("from", m.repository.as_str())],
            ),
            None => Url::parse(&uploads),
        }
        .map_err(|e| RegistryError::Protocol(format!("bad upload URL {uploads}: {e}")))?;
        let resp = self
            .send(&ep, &scope, &|c| Ok(c.post(start_url.clone())))
            .await?;
        match resp.status() {
            StatusCode::CREATED if mount.is_some() => return Ok(()),
            StatusCode::ACCEPTED => {}
            _ => return Err(status_error("POST", resp).await),
        }
        let mut location = location_of(&ep, &resp)?;

        let final_resp = if size <= self.chunk_size {
            let mut url = location;
            url.query_pairs_mut().append_pair("digest", digest);
            self.send(&ep, &scope, &|c| {
                Ok(c.put(url.clone())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, size)
                    .body(file_body(path, 0, size)?))
            })
            .await?
        } else {
            let mut offset = 0;
            while offset < size {
                let len = self.chunk_size.min(size - offset);
                let url = location.clone();
                let range = format!("{}-{}", offset, offset + len - 1);
                let resp = self
                    .send(&ep, &scope, &|c| {
                        Ok(c.patch(url.clone())
                            .header(CONTENT_TYPE, "application/octet-stream")
                            .header(CONTENT_LENGTH, len)
                            .header("Content-Range", range.as_str())
                            .body(file_body(path, offset, len)?))
                    })
                    .await?;
                if resp.status() != StatusCode::ACCEPTED {
                    return Err(status_error("PATCH", resp).await);
                }
                location = location_of(&ep, &resp)?;
                offset += len;
            }
            let mut url = location;
            url.query_pairs_mut().append_pair("digest", digest);
            self.send(&ep, &scope, &|c| Ok(c.put(url.clone()).body(Vec::new())))
                .await?
        };
        if final_resp.status() != StatusCode::CREATED {
            return Err(status_error("PUT", final_resp).await);
        }
        check_digest_header(&final_resp, digest, &format!("blob {digest}"))?;
        Ok(())
    }

    /// Upload a manifest (or index) under the reference's tag, or its digest
    /// when it has no tag. Returns the manifest's digest (`sha256:` of
    /// `bytes`, or the reference's digest after checking it matches).
    pub async fn push_manifest(
        &self,
        r: &Reference,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<String, RegistryError> {
        let what = r.to_string();
        let digest = match &r.digest {
            Some(d) => {
                verify(&what, bytes, d)?;
                d.clone()
            }
            None => sha256_digest(bytes),
        };
        let target = r.tag.as_deref().unwrap_or(&digest).to_string();
        let ep = self.registry_endpoint(r);
        let scope = Scope::push(&r.repository);
        let url = format!("{}/v2/{}/manifests/{}", ep.base, r.repository, target);
        let resp = self
            .send(&ep, &scope, &|c| {
                Ok(c.put(&url)
                    .header(CONTENT_TYPE, media_type)
                    .body(bytes.to_vec()))
            })
            .await?;
        if !resp.status().is_success() {
            return Err(status_error("PUT", resp).await);
        }
        check_digest_header(&resp, &digest, &what)?;
        Ok(digest)
    }

    // ----------------------------------------------------------------------
    // Manifests and blobs
    // ----------------------------------------------------------------------

    async fn get_manifest(
        &self,
        r: &Reference,
        reference: &str,
    ) -> Result<(Vec<u8>, Option<String>), RegistryError> {
        let accept = [
            media_types::OCI_INDEX,
            media_types::DOCKER_MANIFEST_LIST,
            media_types::OCI_MANIFEST,
            media_types::DOCKER_MANIFEST,
        ]
        .join(", ");
        let resp = self
            .send_pull(r, "GET", &|c, ep| {
                Ok(c.get(format!(
                    "{}/v2/{}/manifests/{}",
                    ep.base, r.repository, reference
                ))
                .header(ACCEPT, accept.as_str()))
            })
            .await?;
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| {
                s.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            });
        let bytes = read_limited(resp, MAX_MANIFEST_SIZE, &format!("manifest {r}")).await?;
        Ok((bytes, content_type))
    }

    async fn download_into(
        &self,
        r: &Reference,
        digest: &str,
        size: Option<u64>,
        file: &mut tokio::fs::File,
        tmp_path: &Path,
    ) -> Result<(), Attempt> {
        let what = format!("blob {digest}");
        let resp = self
            .send_pull(r, "GET", &|c, ep| {
                Ok(c.get(blob_url(ep, &r.repository, digest)))
            })
            .await
            .map_err(Attempt::Fatal)?;
        if let (Some(expected), Some(len)) = (size, resp.content_length()) {
            if len != expected {
                return Err(Attempt::Fatal(RegistryError::SizeMismatch {
                    what,
                    expected,
                    actual: len,
                }));
            }
        }
        let io_err = |e| Attempt::Fatal(RegistryError::io(tmp_path, e));
        let mut hasher = Hasher::for_digest(digest).map_err(Attempt::Fatal)?;
        let mut written: u64 = 0;
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| Attempt::Retry(e.into()))?;
            written += chunk.len() as u64;
            if let Some(expected) = size {
                if written > expected {
                    return Err(Attempt::Fatal(RegistryError::SizeMismatch {
                        what,
                        expected,
                        actual: written,
                    }));
                }
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(io_err)?;
        }
        file.flush().await.map_err(io_err)?;
        file.sync_all().await.map_err(io_err)?;
        if let Some(expected) = size {
            if written != expected {
                return Err(Attempt::Fatal(RegistryError::SizeMismatch {
                    what,
                    expected,
                    actual: written,
                }));
            }
        }
        let actual = hasher.finish();
        if actual != digest {
            return Err(Attempt::Fatal(RegistryError::DigestMismatch {
                what,
                expected: digest.to_string(),
                actual,
            }));
        }
        Ok(())
    }

    async fn head_blob(
        &self,
        ep: &Endpoint,
        scope: &Scope,
        repository: &str,
        digest: &str,
    ) -> Result<bool, RegistryError> {
        let url = blob_url(ep, repository, digest);
        let resp = self.send(ep, scope, &|c| Ok(c.head(&url))).await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(status_error("HEAD", resp).await),
        }
    }

    // ----------------------------------------------------------------------
    // Endpoints
    // ----------------------------------------------------------------------

    fn is_insecure(&self, host: &str) -> bool {
        let bare = host_only(host);
        if is_loopback_host(bare) {
            return true;
        }
        let ip = bare.parse::<IpAddr>().ok();
        self.cfg.insecure_registries.iter().any(|entry| {
            let e = entry
                .trim()
                .trim_start_matches("http://")
                .trim_start_matches("https://")
                .trim_end_matches('/');
            if e.eq_ignore_ascii_case(host) || e.eq_ignore_ascii_case(bare) {
                return true;
            }
            match (e.split_once('/'), ip) {
                (Some((net, bits)), Some(ip)) => {
                    match (net.parse::<IpAddr>(), bits.parse::<u8>()) {
                        (Ok(net), Ok(bits)) => cidr_contains(net, bits, ip),
                        _ => false,
                    }
                }
                _ => false,
            }
        })
    }

    fn endpoint_for_host(&self, host: &str) -> Endpoint {
        let scheme = if self.is_insecure(host) {
            "http"
        } else {
            "https"
        };
        Endpoint {
            base: format!("{scheme}://{host}"),
            host: host.to_string(),
            local: is_loopback_host(host_only(host)),
        }
    }

    fn registry_endpoint(&self, r: &Reference) -> Endpoint {
        self.endpoint_for_host(r.api_host())
    }

    fn mirror_endpoint(&self, spec: &str) -> Option<Endpoint> {
        let spec = spec.trim().trim_end_matches('/');
        if spec.is_empty() {
            return None;
        }
        if spec.contains("://") {
            let url = Url::parse(spec).ok()?;
            let host = match (url.host_str(), url.port()) {
                (Some(h), Some(p)) => format!("{h}:{p}"),
                (Some(h), None) => h.to_string(),
                (None, _) => return None,
            };
            let local = is_loopback_host(host_only(&host));
            Some(Endpoint {
                base: spec.to_string(),
                host,
                local,
            })
        } else {
            let (host, prefix) = match spec.split_once('/') {
                Some((h, p)) => (h, format!("/{p}")),
                None => (spec, String::new()),
            };
            let mut ep = self.endpoint_for_host(host);
            ep.base.push_str(&prefix);
            Some(ep)
        }
    }

    /// Where to pull from: the registry's mirrors in order, then the
    /// registry itself.
    fn pull_endpoints(&self, r: &Reference) -> Vec<Endpoint> {
        let mut eps = Vec::new();
        for key in [r.registry.as_str(), r.api_host()] {
            if let Some(mirrors) = self.cfg.mirrors.get(key) {
                eps.extend(mirrors.iter().filter_map(|m| self.mirror_endpoint(m)));
                break;
            }
        }
        eps.push(self.registry_endpoint(r));
        eps
    }

    // ----------------------------------------------------------------------
    // Transport: mirrors, auth, retries
    // ----------------------------------------------------------------------

    fn client_for(&self, local: bool) -> &reqwest::Client {
        if local {
            &self.http_local
        } else {
            &self.http
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        self.retry_delay * 2u32.saturating_pow(attempt.saturating_sub(1))
    }

    /// A read-only request, tried on each mirror then on the registry.
    /// Returns the first successful response; a mirror's failure falls
    /// through to the next endpoint, the registry's is returned.
    async fn send_pull(
        &self,
        r: &Reference,
        method: &str,
        make: &(dyn Fn(&reqwest::Client, &Endpoint) -> Result<reqwest::RequestBuilder, RegistryError>
              + Sync),
    ) -> Result<reqwest::Response, RegistryError> {
        let endpoints = self.pull_endpoints(r);
        let scope = Scope::pull(&r.repository);
        let last = endpoints.len() - 1;
        for (i, ep) in endpoints.iter().enumerate() {
            let result = self.send(ep, &scope, &|c| make(c, ep)).await;
            match result {
                Ok(resp) if resp.status().is_success() => return Ok(resp),
                Ok(resp) if i == last => return Err(status_error(method, resp).await),
                Err(e) if i == last => return Err(e),
                _ => continue,
            }
        }
        unreachable!("pull_endpoints always ends with the registry")
    }

    /// Sends a request to `ep` with authentication: proactively with what
    /// is known for the host, and on a 401 by answering the challenge once.
    /// Any non-401 response is returned as is.
    async fn send(
        &self,
        ep: &Endpoint,
        scope: &Scope,
        make: MakeRequest<'_>,
    ) -> Result<reqwest::Response, RegistryError> {
        let client = self.client_for(ep.local);
        let mut answered = false;
        loop {
            let auth = self.auth_header(ep, scope).await?;
            let resp = self
                .execute_retrying(client, &|| {
                    let mut req = make(client)?.build()?;
                    if let Some(a) = &auth {
                        let v =
                            HeaderValue::from_str(a).map_err(|_| RegistryError::AuthFailed {
                                host: ep.host.clone(),
                                reason: "credentials are not a valid header value".to_string(),
                            })?;
                        req.headers_mut().insert(AUTHORIZATION, v);
                    }
                    Ok(req)
                })
                .await?;
            if resp.status() != StatusCode::UNAUTHORIZED {
                return Ok(resp);
            }
            let challenges: Vec<Challenge> = resp
                .headers()
                .get_all(WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(parse_www_authenticate)
                .collect();
            let errors = read_error_body(resp).await;
            if answered {
                let have_creds = self.credentials(&ep.host).await?.is_some();
                return Err(if have_creds {
                    RegistryError::AuthFailed {
                        host: ep.host.clone(),
                        reason: format!(
                            "access denied with the configured credentials{}",
                            ApiErrors(&errors)
                        ),
                    }
                } else {
                    RegistryError::AuthRequired {
                        host: ep.host.clone(),
                        challenge: describe_challenges(&challenges),
                    }
                });
            }
            answered = true;
            self.answer_challenge(ep, scope, &challenges, auth.as_deref(), &errors)
                .await?;
        }
    }

    /// Records how `ep`'s host wants to be authenticated and, for Bearer,
    /// fetches a token for `scope` (plus the challenge's scope).
    async fn answer_challenge(
        &self,
        ep: &Endpoint,
        scope: &Scope,
        challenges: &[Challenge],
        sent: Option<&str>,
        errors: &[ApiError],
    ) -> Result<(), RegistryError> {
        let bearer = challenges.iter().find_map(|c| match c {
            Challenge::Bearer {
                realm,
                service,
                scope,
                ..
            } => Some((realm.clone(), service.clone(), scope.clone())),
            _ => None,
        });
        if let Some((realm, service, challenge_scope)) = bearer {
            {
                let mut st = self.state.lock().unwrap();
                st.schemes.insert(
                    ep.host.clone(),
                    HostScheme::Bearer {
                        realm: realm.clone(),
                        service: service.clone(),
                    },
                );
                st.tokens.remove(&(ep.host.clone(), scope.key()));
            }
            let mut scopes = scope.clone();
            for s in challenge_scope.iter().flat_map(|s| s.split(' ')) {
                scopes.add(s);
            }
            let token = self
                .fetch_token(ep, &realm, service.as_deref(), &scopes)
                .await?;
            self.state
                .lock()
                .unwrap()
                .tokens
                .insert((ep.host.clone(), scope.key()), token);
            return Ok(());
        }
        if let Some(basic) = challenges
            .iter()
            .find(|c| matches!(c, Challenge::Basic { .. }))
        {
            if sent.is_some_and(|s| s.starts_with("Basic ")) {
                return Err(RegistryError::AuthFailed {
                    host: ep.host.clone(),
                    reason: format!("credentials rejected{}", ApiErrors(errors)),
                });
            }
            match self.credentials(&ep.host).await? {
                Some(c) if !(c.username.is_empty() && c.password.is_empty()) => {
                    self.state
                        .lock()
                        .unwrap()
                        .schemes
                        .insert(ep.host.clone(), HostScheme::Basic);
                    return Ok(());
                }
                _ => {
                    return Err(RegistryError::AuthRequired {
                        host: ep.host.clone(),
                        challenge: basic.to_string(),
                    })
                }
            }
        }
        Err(RegistryError::AuthFailed {
            host: ep.host.clone(),
            reason: format!(
                "HTTP 401 without a usable WWW-Authenticate challenge ({}){}",
                describe_challenges(challenges),
                ApiErrors(errors)
            ),
        })
    }

    /// The `Authorization` value to send proactively, if the host is known
    /// to want one.
    async fn auth_header(
        &self,
        ep: &Endpoint,
        scope: &Scope,
    ) -> Result<Option<String>, RegistryError> {
        let scheme = {
            let st = self.state.lock().unwrap();
            match st.schemes.get(&ep.host) {
                None => return Ok(None),
                Some(HostScheme::Bearer { .. }) => {
                    if let Some(t) = st.tokens.get(&(ep.host.clone(), scope.key())) {
                        if t.expires > Instant::now() + Duration::from_secs(5) {
                            return Ok(Some(format!("Bearer {}", t.token)));
                        }
                    }
                }
                Some(HostScheme::Basic) => {}
            }
            st.schemes.get(&ep.host).cloned()
        };
        match scheme {
            Some(HostScheme::Basic) => {
                Ok(self.credentials(&ep.host).await?.map(|c| c.basic_header()))
            }
            Some(HostScheme::Bearer { realm, service }) => {
                let token = self
                    .fetch_token(ep, &realm, service.as_deref(), scope)
                    .await?;
                let value = format!("Bearer {}", token.token);
                self.state
                    .lock()
                    .unwrap()
                    .tokens
                    .insert((ep.host.clone(), scope.key()), token);
                Ok(Some(value))
            }
            None => Ok(None),
        }
    }

    /// GET `realm?service=..&scope=..` (with Basic credentials when known),
    /// or the OAuth2 refresh-token POST when the credentials are an identity
    /// token. Accepts `token` or `access_token`.
    async fn fetch_token(
        &self,
        ep: &Endpoint,
        realm: &str,
        service: Option<&str>,
        scopes: &Scope,
    ) -> Result<CachedToken, RegistryError> {
        let creds = self.credentials(&ep.host).await?;
        let fail = |reason: String| RegistryError::AuthFailed {
            host: ep.host.clone(),
            reason,
        };
        let url =
            Url::parse(realm).map_err(|e| fail(format!("invalid token realm {realm:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(fail(format!("token realm {realm:?} is not HTTP(S)")));
        }
        let local = url
            .host_str()
            .map(|h| is_loopback_host(h.trim_start_matches('[').trim_end_matches(']')))
            .unwrap_or(false);
        let client = self.client_for(local);
        let make = || -> Result<reqwest::Request, RegistryError> {
            let req = match creds.as_ref().and_then(|c| c.identity_token.as_ref()) {
                Some(refresh) => {
                    let mut form = vec![
                        ("grant_type", "refresh_token".to_string()),
                        ("refresh_token", refresh.clone()),
                        ("client_id", "rbuild".to_string()),
                    ];
                    if let Some(s) = service {
                        form.push(("service", s.to_string()));
                    }
                    form.push(("scope", scopes.0.join(" ")));
                    client.post(url.clone()).form(&form)
                }
                None => {
                    let mut u = url.clone();
                    {
                        let mut q = u.query_pairs_mut();
                        if let Some(s) = service {
                            q.append_pair("service", s);
                        }
                        for s in &scopes.0 {
                            q.append_pair("scope", s);
                        }
                    }
                    let mut rb = client.get(u);
                    if let Some(c) = creds.as_ref().filter(|c| !c.username.is_empty()) {
                        rb = rb.basic_auth(&c.username, Some(&c.password));
                    }
                    rb
                }
            };
            Ok(req.build()?)
        };
        let resp = self.execute_retrying(client, &make).await?;
        let status = resp.status();
        if !status.is_success() {
            let errors = read_error_body(resp).await;
            if creds.is_none() && matches!(status.as_u16(), 401 | 403) {
                return Err(RegistryError::AuthRequired {
                    host: ep.host.clone(),
                    challenge: format!("Bearer realm={realm:?} (anonymous token refused)"),
                });
            }
            return Err(fail(format!(
                "token endpoint {realm} returned HTTP {}{}",
                status.as_u16(),
                ApiErrors(&errors)
            )));
        }
        let body = read_limited(resp, MAX_TOKEN_RESPONSE, "token response").await?;
        #[derive(Deserialize)]
        struct TokenResponse {
            #[serde(default)]
            token: Option<String>,
            #[serde(default)]
            access_token: Option<String>,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let parsed: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| fail(format!("bad token response from {realm}: {e}")))?;
        let token = parsed
            .token
            .filter(|t| !t.is_empty())
            .or(parsed.access_token.filter(|t| !t.is_empty()))
            .ok_or_else(|| fail(format!("token response from {realm} has no token")))?;
        let lifetime = Duration::from_secs(parsed.expires_in.unwrap_or(60).max(10));
        Ok(CachedToken {
            token,
            expires: Instant::now() + lifetime,
        })
    }

    async fn credentials(&self, host: &str) -> Result<Option<Credentials>, RegistryError> {
        if let Some(c) = self.state.lock().unwrap().creds.get(host) {
            return Ok(c.clone());
        }
        let c = self.store.get(host).await?;
        self.state
            .lock()
            .unwrap()
            .creds
            .insert(host.to_string(), c.clone());
        Ok(c)
    }

    /// Executes a request, retrying connection errors, 5xx and 429 (with
    /// backoff, `Retry-After` honoured up to 10 s), at most [`ATTEMPTS`]
    /// times. The last response is returned whatever its status.
    async fn execute_retrying(
        &self,
        client: &reqwest::Client,
        make: &(dyn Fn() -> Result<reqwest::Request, RegistryError> + Sync),
    ) -> Result<reqwest::Response, RegistryError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let req = make()?;
            match client.execute(req).await {
                Ok(resp) => {
                    let s = resp.status();
                    if (s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS)
                        && attempt < ATTEMPTS
                    {
                        let delay = retry_after(&resp).unwrap_or_else(|| self.backoff(attempt));
                        drop(resp);
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    return Ok(resp);
                }
                Err(e) if attempt < ATTEMPTS && is_transient(&e) => {
                    tokio::time::sleep(self.backoff(attempt)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

fn is_transient(e: &reqwest::Error) -> bool {
    !e.is_builder()
        && !e.is_redirect()
        && (e.is_connect() || e.is_timeout() || e.is_request() || e.is_body())
}

fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let secs: u64 = resp
        .headers()
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

fn blob_url(ep: &Endpoint, repository: &str, digest: &str) -> String {
    format!("{}/v2/{}/blobs/{}", ep.base, repository, digest)
}

fn location_of(ep: &Endpoint, resp: &reqwest::Response) -> Result<Url, RegistryError> {
    let loc = resp
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            RegistryError::Protocol(format!("{} answered without a Location header", resp.url()))
        })?;
    let base = Url::parse(&ep.base)
        .map_err(|e| RegistryError::Protocol(format!("bad endpoint {}: {e}", ep.base)))?;
    base.join(loc)
        .map_err(|e| RegistryError::Protocol(format!("bad Location {loc:?}: {e}")))
}

fn check_digest_header(
    resp: &reqwest::Response,
    expected: &str,
    what: &str,
) -> Result<(), RegistryError> {
    if let Some(d) = resp
        .headers()
        .get(DOCKER_CONTENT_DIGEST)
        .and_then(|v| v.to_str().ok())
    {
        let same_algorithm = d.split(':').next() == expected.split(':').next();
        if same_algorithm && d != expected {
            return Err(RegistryError::DigestMismatch {
                what: format!("{what} (registry's Docker-Content-Digest)"),
                expected: expected.to_string(),
                actual: d.to_string(),
            });
        }
    }
    Ok(())
}

/// A streaming request body reading `len` bytes of `path` from `offset`.
fn file_body(path: &Path, offset: u64, len: u64) -> Result<reqwest::Body, RegistryError> {
    let mut f = std::fs::File::open(path).map_err(|e| RegistryError::io(path, e))?;
    f.seek(SeekFrom::Start(offset))
        .map_err(|e| RegistryError::io(path, e))?;
    let reader = tokio::fs::File::from_std(f).take(len);
    let stream = futures_util::stream::try_unfold(reader, |mut reader| async move {
        let mut buf = vec![0u8; IO_BUF];
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            return Ok::<_, std::io::Error>(None);
        }
        buf.truncate(n);
        Ok(Some((buf, reader)))
    });
    Ok(reqwest::Body::wrap_stream(stream))
}

async fn read_limited(
    resp: reqwest::Response,
    max: u64,
    what: &str,
) -> Result<Vec<u8>, RegistryError> {
    let too_large = || RegistryError::TooLarge {
        what: what.to_string(),
        limit: max,
    };
    if resp.content_length().is_some_and(|l| l > max) {
        return Err(too_large());
    }
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if (out.len() + chunk.len()) as u64 > max {
            return Err(too_large());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

async fn read_error_body(resp: reqwest::Response) -> Vec<ApiError> {
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        body.extend_from_slice(&chunk);
        if body.len() >= MAX_ERROR_BODY {
            body.truncate(MAX_ERROR_BODY);
            break;
        }
    }
    parse_error_body(&body)
}

async fn status_error(method: &str, resp: reqwest::Response) -> RegistryError {
    let status = resp.status().as_u16();
    let url = resp.url().to_string();
    let errors = read_error_body(resp).await;
    RegistryError::Status {
        method: method.to_string(),
        url,
        status,
        errors,
    }
}

fn describe_challenges(challenges: &[Challenge]) -> String {
    if challenges.is_empty() {
        return "no WWW-Authenticate header".to_string();
    }
    challenges
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Media type of fetched manifest bytes: the `Content-Type` when it names a
/// known manifest type, else the body's `mediaType`, else guessed from its
/// shape. Schema1 and unknown types are `UnsupportedMediaType`.
fn detect_media_type(
    content_type: Option<&str>,
    bytes: &[u8],
    what: &str,
) -> Result<String, RegistryError> {
    let known = |m: &str| media_types::is_manifest(m) || media_types::is_index(m);
    #[derive(Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType", default)]
        media_type: Option<String>,
        #[serde(rename = "schemaVersion", default)]
        schema_version: Option<u32>,
        #[serde(default)]
        manifests: Option<serde_json::Value>,
        #[serde(default)]
        config: Option<serde_json::Value>,
    }
    if let Some(ct) = content_type.filter(|c| known(c)) {
        return Ok(ct.to_string());
    }
    let probe: Probe =
        serde_json::from_slice(bytes).map_err(|e| RegistryError::InvalidManifest {
            what: what.to_string(),
            reason: format!("not JSON: {e}"),
        })?;
    let mt = match probe.media_type.filter(|m| !m.is_empty()) {
        Some(m) => m,
        None if probe.schema_version == Some(1) => media_types::DOCKER_SCHEMA1.to_string(),
        None if probe.manifests.is_some() => media_types::OCI_INDEX.to_string(),
        None if probe.config.is_some() => media_types::OCI_MANIFEST.to_string(),
        None => content_type.unwrap_or("unknown").to_string(),
    };
    if known(&mt) {
        Ok(mt)
    } else {
        Err(RegistryError::UnsupportedMediaType {
            what: what.to_string(),
            media_type: mt,
        })
    }
}

/// `host` without port and IPv6 brackets.
fn host_only(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        // A bare IPv6 address has several colons; leave it whole.
        Some((h, p)) if !h.contains(':') && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// `localhost`, 127.0.0.0/8 and ::1 — spoken to over plain HTTP, as Docker
/// does.
fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

fn cidr_contains(net: IpAddr, bits: u8, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) if bits <= 32 => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(n) & mask == u32::from(i) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(i)) if bits <= 128 => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(n) & mask == u128::from(i) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(cfg: ClientConfig) -> Client {
        let dir = std::env::temp_dir().join("rbuild-registry-no-such-config.json");
        Client::new(ClientConfig {
            docker_config: Some(dir),
            ..cfg
        })
        .unwrap()
    }

    #[test]
    fn schemes_and_insecure() {
        let c = client(ClientConfig {
            insecure_registries: vec![
                "myreg.example:5000".into(),
                "http://plain.example".into(),
                "10.0.0.0/8".into(),
            ],
            ..Default::default()
        });
        let base = |h: &str| c.endpoint_for_host(h).base;
        assert_eq!(base("localhost:5000"), "http://localhost:5000");
        assert_eq!(base("localhost"), "http://localhost");
        assert_eq!(base("127.0.0.1:5000"), "http://127.0.0.1:5000");
        assert_eq!(base("127.3.4.5"), "http://127.3.4.5");
        assert_eq!(base("[::1]:5000"), "http://[::1]:5000");
        assert_eq!(base("myreg.example:5000"), "http://myreg.example:5000");
        assert_eq!(base("myreg.example:5001"), "https://myreg.example:5001");
        assert_eq!(base("plain.example:443"), "http://plain.example:443");
        assert_eq!(base("10.1.2.3:5000"), "http://10.1.2.3:5000");
        assert_eq!(base("11.1.2.3:5000"), "https://11.1.2.3:5000");
        assert_eq!(base("index.docker.io"), "https://index.docker.io");
        assert_eq!(base("128.0.0.1"), "https://128.0.0.1");
        assert!(c.endpoint_for_host("127.0.0.1:1").local);
        assert!(!c.endpoint_for_host("ghcr.io").local);
    }

    #[test]
    fn mirrors_come_first() {
        let mut mirrors = HashMap::new();
        mirrors.insert(
            "docker.io".to_string(),
            vec![
                "https://mirror.example/".to_string(),
                "127.0.0.1:5001".to_string(),
                "http://127.0.0.1:5002/prefix".to_string(),
            ],
        );
        let c = client(ClientConfig {
            mirrors,
            ..Default::default()
        });
        let eps = c.pull_endpoints(&Reference::parse("node:12").unwrap());
        let bases: Vec<&str> = eps.iter().map(|e| e.base.as_str()).collect();
        assert_eq!(
            bases,
            [
                "https://mirror.example",
                "http://127.0.0.1:5001",
                "http://127.0.0.1:5002/prefix",
                "https://index.docker.io"
            ]
        );
        assert_eq!(eps[0].host, "mirror.example");
        assert_eq!(eps[2].host, "127.0.0.1:5002");
        // Other registries have no mirrors.
        let eps = c.pull_endpoints(&Reference::parse("ghcr.io/a/b").unwrap());
        assert_eq!(eps.len(), 1);
        assert_eq!(eps[0].base, "https://ghcr.io");
    }

    #[test]
    fn media_type_detection() {
        let m = br#"{"schemaVersion":2,"config":{},"layers":[]}"#;
        assert_eq!(
            detect_media_type(Some(media_types::DOCKER_MANIFEST), m, "x").unwrap(),
            media_types::DOCKER_MANIFEST
        );
        assert_eq!(
            detect_media_type(Some("application/octet-stream"), m, "x").unwrap(),
            media_types::OCI_MANIFEST
        );
        let i = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[]}"#;
        assert_eq!(
            detect_media_type(None, i, "x").unwrap(),
            media_types::DOCKER_MANIFEST_LIST
        );
        let s1 = br#"{"schemaVersion":1,"fsLayers":[]}"#;
        assert!(matches!(
            detect_media_type(Some(media_types::DOCKER_SCHEMA1_SIGNED), s1, "x"),
            Err(RegistryError::UnsupportedMediaType { .. })
        ));
    }

    #[test]
    fn host_parts() {
        assert_eq!(host_only("a.b:5000"), "a.b");
        assert_eq!(host_only("a.b"), "a.b");
        assert_eq!(host_only("[::1]:5000"), "::1");
        assert_eq!(host_only("::1"), "::1");
        assert!(is_loopback_host("::1"));
        assert!(is_loopback_host("LOCALHOST"));
        assert!(!is_loopback_host("localhost.example"));
        assert!(cidr_contains(
            "192.168.0.0".parse().unwrap(),
            16,
            "192.168.7.1".parse().unwrap()
        ));
        assert!(!cidr_contains(
            "192.168.0.0".parse().unwrap(),
            16,
            "192.169.0.1".parse().unwrap()
        ));
    }

    fn assert_send<T: Send>(_: &T) {}

    #[test]
    fn client_and_futures_are_send_and_sync() {
        fn assert_sync<T: Send + Sync>() {}
        assert_sync::<Client>();
        let c = client(ClientConfig::default());
        let r = Reference::parse("127.0.0.1:1/a").unwrap();
        let p = Platform::host();
        let d = sha256_digest(b"");
        let path = Path::new("/nonexistent");
        assert_send(&c.resolve(&r, &p));
        assert_send(&c.fetch_blob(&r, &d, None, path));
        assert_send(&c.fetch_blob_bytes(&r, &d, 1));
        assert_send(&c.blob_exists(&r, &d));
        assert_send(&c.push_blob(&r, &d, 0, path));
        assert_send(&c.push_blob_from(&r, &d, 0, path, Some(&r)));
        assert_send(&c.push_manifest(&r, media_types::OCI_MANIFEST, b"{}"));
    }

    #[test]
    fn scopes() {
        let mut s = Scope::push("a/b");
        s.add("repository:c:pull");
        s.add("repository:c:pull");
        assert_eq!(s.key(), "repository:a/b:pull,push repository:c:pull");
    }
}
