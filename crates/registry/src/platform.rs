//! Platforms (`os/arch[/variant]`) and manifest selection from an index.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

use crate::RegistryError;

/// A target platform such as `linux/amd64` or `linux/arm64/v8`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Self {
        Platform {
            os: os.to_string(),
            architecture: architecture.to_string(),
            variant: variant.map(str::to_string),
        }
    }

    /// Parses `os/arch[/variant]`, lower-casing and resolving common aliases
    /// (`x86_64` → `amd64`, `aarch64` → `arm64`, `armhf` → `arm/v7`...).
    pub fn parse(s: &str) -> Result<Self, RegistryError> {
        let bad = |reason: &str| RegistryError::InvalidPlatform {
            platform: s.to_string(),
            reason: reason.to_string(),
        };
        let parts: Vec<&str> = s.split('/').collect();
        if parts.len() < 2 || parts.len() > 3 {
            return Err(bad("expected os/arch or os/arch/variant"));
        }
        let valid = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        };
        if !parts.iter().all(|p| valid(p)) {
            return Err(bad("empty or invalid component"));
        }
        let os = match parts[0].to_ascii_lowercase().as_str() {
            "macos" => "darwin".to_string(),
            o => o.to_string(),
        };
        let (architecture, variant) = normalize_arch_alias(
            &parts[1].to_ascii_lowercase(),
            parts.get(2).map(|v| v.to_ascii_lowercase()),
        );
        Ok(Platform {
            os,
            architecture,
            variant,
        })
    }

    /// The platform of the machine this runs on (`linux/amd64`,
    /// `linux/arm64/v8`, ...).
    pub fn host() -> Self {
        let os = match std::env::consts::OS {
            "macos" => "darwin",
            o => o,
        };
        let (arch, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "x86" => ("386", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
            "powerpc64" => ("ppc64", None),
            "loongarch64" => ("loong64", None),
            "mips64" if cfg!(target_endian = "little") => ("mips64le", None),
            a => (a, None),
        };
        Platform::new(os, arch, variant)
    }

    /// Canonical form used for comparisons: amd64 has no variant (`v1` is
    /// dropped), arm64 defaults to `v8`, arm defaults to `v7`, as containerd
    /// normalises them.
    pub fn normalized(&self) -> Platform {
        let os = self.os.to_ascii_lowercase();
        let (architecture, variant) = normalize_arch_alias(
            &self.architecture.to_ascii_lowercase(),
            self.variant.as_ref().map(|v| v.to_ascii_lowercase()),
        );
        let variant = match (architecture.as_str(), variant.as_deref()) {
            ("amd64", Some("v1")) => None,
            ("arm64", None | Some("8" | "v8" | "v8.0")) => Some("v8".to_string()),
            ("arm64", Some("9" | "9.0" | "v9.0")) => Some("v9".to_string()),
            ("arm", None | Some("7")) => Some("v7".to_string()),
            ("arm", Some(v @ ("5" | "6" | "8"))) => Some(format!("v{v}")),
            (_, v) => v.map(str::to_string),
        };
        Platform {
            os,
            architecture,
            variant,
        }
    }

    /// Whether an image for `candidate` satisfies a request for `self`; see
    /// [`Platform::match_rank`].
    pub fn matches(&self, candidate: &Platform) -> bool {
        self.match_rank(candidate).is_some()
    }

    /// `Some(0)` for an exact match (after normalisation), `Some(n)` for a
    /// compatible but older variant (arm v6 for an arm/v7 request, amd64 v2
    /// for amd64/v3), `None` when `candidate` cannot serve `self`. A request
    /// without variant accepts any variant of the same os/architecture,
    /// except that arm64 means arm64/v8 and arm means arm/v7.
    pub fn match_rank(&self, candidate: &Platform) -> Option<u32> {
        let want = self.normalized();
        let have = candidate.normalized();
        if want.os != have.os || want.architecture != have.architecture {
            return None;
        }
        let want_v = match &want.variant {
            None => return Some(u32::from(have.variant.is_some())),
            Some(v) => v,
        };
        match &have.variant {
            Some(h) if h == want_v => Some(0),
            have_v => {
                let level = |v: Option<&String>| -> Option<u32> {
                    match v {
                        None => Some(1),
                        Some(v) => v.strip_prefix('v')?.parse().ok(),
                    }
                };
                let compatible_family = matches!(want.architecture.as_str(), "arm" | "amd64");
                match (
                    compatible_family,
                    level(Some(want_v)),
                    level(have_v.as_ref()),
                ) {
                    (true, Some(w), Some(h)) if h < w => Some(w - h),
                    _ => None,
                }
            }
        }
    }
}

fn normalize_arch_alias(arch: &str, variant: Option<String>) -> (String, Option<String>) {
    match arch {
        "x86_64" | "x86-64" => ("amd64".to_string(), variant),
        "aarch64" => ("arm64".to_string(), variant),
        "i386" | "i686" => ("386".to_string(), variant),
        "armhf" => ("arm".to_string(), Some("v7".to_string())),
        "armel" => ("arm".to_string(), Some("v6".to_string())),
        a => (a.to_string(), variant),
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl FromStr for Platform {
    type Err = RegistryError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Platform::parse(s)
    }
}

/// The parts of an index / manifest list entry this crate needs. Parsed
/// leniently (own struct rather than `oci_spec::image::ImageIndex`) so that
/// odd platform fields in Docker manifest lists do not break selection.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct IndexEntry {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default)]
    pub platform: Option<EntryPlatform>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct EntryPlatform {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub variant: Option<String>,
}

impl EntryPlatform {
    fn to_platform(&self) -> Platform {
        Platform {
            os: self.os.clone(),
            architecture: self.architecture.clone(),
            variant: self.variant.clone().filter(|v| !v.is_empty()),
        }
    }
}

#[derive(Debug, Deserialize)]
struct IndexJson {
    #[serde(default)]
    manifests: Vec<IndexEntry>,
}

/// Picks the entry of an index / manifest list for `platform`: the best
/// [`Platform::match_rank`], first entry on ties. Errors with
/// `NoMatchingPlatform` listing what the index offers.
pub(crate) fn select_from_index(
    index_json: &[u8],
    platform: &Platform,
    reference: &str,
) -> Result<IndexEntry, RegistryError> {
    let index: IndexJson =
        serde_json::from_slice(index_json).map_err(|e| RegistryError::InvalidManifest {
            what: reference.to_string(),
            reason: format!("bad index: {e}"),
        })?;
    let mut best: Option<(u32, &IndexEntry)> = None;
    for entry in &index.manifests {
        let Some(p) = &entry.platform else { continue };
        if let Some(rank) = platform.match_rank(&p.to_platform()) {
            if best.is_none_or(|(r, _)| rank < r) {
                best = Some((rank, entry));
            }
        }
    }
    match best {
        Some((_, e)) => Ok(e.clone()),
        None => Err(RegistryError::NoMatchingPlatform {
            reference: reference.to_string(),
            platform: platform.to_string(),
            available: index
                .manifests
                .iter()
                .filter_map(|e| e.platform.as_ref().map(|p| p.to_platform().to_string()))
                .collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        Platform::parse(s).unwrap()
    }

    #[test]
    fn parse_and_display() {
        assert_eq!(p("linux/amd64"), Platform::new("linux", "amd64", None));
        assert_eq!(
            p("linux/arm64/v8"),
            Platform::new("linux", "arm64", Some("v8"))
        );
        assert_eq!(p("Linux/X86_64"), Platform::new("linux", "amd64", None));
        assert_eq!(p("linux/aarch64"), Platform::new("linux", "arm64", None));
        assert_eq!(p("linux/armhf"), Platform::new("linux", "arm", Some("v7")));
        assert_eq!(p("linux/arm64/v8").to_string(), "linux/arm64/v8");
        assert_eq!(p("linux/amd64").to_string(), "linux/amd64");
        for bad in ["linux", "", "linux/", "/amd64", "a/b/c/d", "linux/am d64"] {
            assert!(Platform::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn host_is_sane() {
        let h = Platform::host();
        assert!(!h.os.is_empty() && !h.architecture.is_empty());
        if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
            assert_eq!(h.to_string(), "linux/amd64");
        }
        assert!(h.matches(&h));
    }

    #[test]
    fn matching_rules() {
        // arm64 without variant == arm64/v8.
        assert!(p("linux/arm64").matches(&p("linux/arm64/v8")));
        assert!(p("linux/arm64/v8").matches(&p("linux/arm64")));
        assert!(!p("linux/arm64/v8").matches(&p("linux/arm64/v9")));
        // amd64: v1 is no variant.
        assert!(p("linux/amd64").matches(&Platform::new("linux", "amd64", Some("v1"))));
        // os/arch exact.
        assert!(!p("linux/amd64").matches(&p("linux/arm64")));
        assert!(!p("linux/amd64").matches(&p("windows/amd64")));
        // arm: v7 default, older variants compatible but ranked lower.
        assert_eq!(p("linux/arm").match_rank(&p("linux/arm/v7")), Some(0));
        assert_eq!(p("linux/arm/v7").match_rank(&p("linux/arm/v6")), Some(1));
        assert_eq!(p("linux/arm/v6").match_rank(&p("linux/arm/v7")), None);
    }

    const INDEX: &str = r#"{
      "schemaVersion": 2,
      "mediaType": "application/vnd.oci.image.index.v1+json",
      "manifests": [
        {"mediaType":"application/vnd.oci.image.manifest.v1+json","size":100,
         "digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111",
         "platform":{"architecture":"amd64","os":"linux"}},
        {"mediaType":"application/vnd.oci.image.manifest.v1+json","size":101,
         "digest":"sha256:2222222222222222222222222222222222222222222222222222222222222222",
         "platform":{"architecture":"arm","os":"linux","variant":"v6"}},
        {"mediaType":"application/vnd.oci.image.manifest.v1+json","size":102,
         "digest":"sha256:3333333333333333333333333333333333333333333333333333333333333333",
         "platform":{"architecture":"arm","os":"linux","variant":"v7"}},
        {"mediaType":"application/vnd.oci.image.manifest.v1+json","size":103,
         "digest":"sha256:4444444444444444444444444444444444444444444444444444444444444444",
         "platform":{"architecture":"arm64","os":"linux","variant":"v8"}},
        {"mediaType":"application/vnd.oci.image.manifest.v1+json","size":104,
         "digest":"sha256:5555555555555555555555555555555555555555555555555555555555555555",
         "platform":{"architecture":"unknown","os":"unknown"}},
        {"mediaType":"application/vnd.oci.image.manifest.v1+json","size":105,
         "digest":"sha256:6666666666666666666666666666666666666666666666666666666666666666",
         "platform":{"architecture":"amd64","os":"windows","os.version":"10.0.17763.1"}}
      ]
    }"#;

    fn pick(platform: &str) -> Result<u64, RegistryError> {
        select_from_index(INDEX.as_bytes(), &p(platform), "test").map(|e| e.size)
    }

    #[test]
    fn select_platform_from_index() {
        assert_eq!(pick("linux/amd64").unwrap(), 100);
        assert_eq!(pick("linux/arm/v7").unwrap(), 102);
        assert_eq!(pick("linux/arm").unwrap(), 102);
        assert_eq!(pick("linux/arm/v6").unwrap(), 101);
        assert_eq!(pick("linux/arm64").unwrap(), 103);
        assert_eq!(pick("linux/arm64/v8").unwrap(), 103);
        assert_eq!(pick("windows/amd64").unwrap(), 105);
        match pick("linux/s390x") {
            Err(RegistryError::NoMatchingPlatform { available, .. }) => {
                assert!(
                    available.contains(&"linux/arm/v7".to_string()),
                    "{available:?}"
                );
            }
            other => panic!("expected NoMatchingPlatform, got {other:?}"),
        }
        assert!(pick("linux/arm64/v9").is_err());
    }

    #[test]
    fn docker_manifest_list_selection() {
        let list = r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json",
          "manifests":[
            {"mediaType":"application/vnd.docker.distribution.manifest.v2+json","size":7,"digest":"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
             "platform":{"architecture":"arm64","os":"linux","variant":"v8","features":["x"]}},
            {"mediaType":"application/vnd.docker.distribution.manifest.v2+json","size":8,"digest":"sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
             "platform":{"architecture":"amd64","os":"linux"}}]}"#;
        let e = select_from_index(list.as_bytes(), &p("linux/amd64"), "x").unwrap();
        assert_eq!(e.size, 8);
        assert_eq!(
            e.media_type,
            "application/vnd.docker.distribution.manifest.v2+json"
        );
        let e = select_from_index(list.as_bytes(), &p("linux/arm64"), "x").unwrap();
        assert_eq!(e.size, 7);
    }
}
