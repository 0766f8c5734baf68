//! rbuild's config file: registry mirrors and insecure registries.
//!
//! Read from `$RBUILD_CONFIG`, else `/etc/rbuild/config.json` when running as
//! root, else `$XDG_CONFIG_HOME/rbuild/config.json` (`~/.config/...`):
//!
//! ```json
//! { "registry": {
//!     "mirrors": { "docker.io": ["https://mirror.example.com"] },
//!     "insecure": ["registry.internal:5000"] } }
//! ```

use std::collections::HashMap;
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub registry: RegistryConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    #[serde(default)]
    pub mirrors: HashMap<String, Vec<String>>,
    #[serde(default)]
    pub insecure: Vec<String>,
}

fn path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("RBUILD_CONFIG") {
        return Some(PathBuf::from(p));
    }
    if nix::unistd::geteuid().is_root() {
        return Some(PathBuf::from("/etc/rbuild/config.json"));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("rbuild/config.json"))
}

/// The config, or the default when there is no file. A file that exists but
/// cannot be read or parsed is an error naming it.
pub fn load() -> Result<Config, String> {
    let Some(p) = path() else {
        return Ok(Config::default());
    };
    match std::fs::read(&p) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).map_err(|e| format!("error: {}: {e}\n", p.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
        Err(e) => Err(format!("error: {}: {e}\n", p.display())),
    }
}

/// The registry client settings from the config file plus `--insecure-registry` flags.
pub fn client_config(flags: &[String]) -> Result<rbuild_registry::ClientConfig, String> {
    let cfg = load()?;
    let mut insecure = cfg.registry.insecure;
    insecure.extend(flags.iter().cloned());
    Ok(rbuild_registry::ClientConfig {
        insecure_registries: insecure,
        mirrors: cfg.registry.mirrors,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mirrors_and_rejects_typos() {
        let c: Config = serde_json::from_str(
            r#"{"registry":{"mirrors":{"docker.io":["http://127.0.0.1:5000"]},"insecure":["r:5000"]}}"#,
        )
        .unwrap();
        assert_eq!(c.registry.mirrors["docker.io"], ["http://127.0.0.1:5000"]);
        assert_eq!(c.registry.insecure, ["r:5000"]);
        assert!(serde_json::from_str::<Config>(r#"{"registry":{"mirror":{}}}"#).is_err());
    }
}
