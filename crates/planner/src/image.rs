//! The image configuration the planner computes for each stage: Docker's
//! `config` object (with its extensions: Healthcheck, Shell, OnBuild) plus
//! history. Field names serialise exactly as Docker and OCI write them, so
//! the executor can embed this struct in the image config blob unchanged.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Docker's default PATH, which BuildKit adds to images that have none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, EmptyObject>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, EmptyObject>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_build: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args_escaped: Option<bool>,
}

/// `{}` in `ExposedPorts` and `Volumes`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmptyObject {}

/// Docker's healthcheck config; durations in nanoseconds as Docker stores them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Healthcheck {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test: Option<Vec<String>>,
    #[serde(skip_serializing_if = "is_zero", default)]
    pub interval: i64,
    #[serde(skip_serializing_if = "is_zero", default)]
    pub timeout: i64,
    #[serde(skip_serializing_if = "is_zero", default)]
    pub start_period: i64,
    #[serde(skip_serializing_if = "is_zero", default)]
    pub start_interval: i64,
    #[serde(skip_serializing_if = "is_zero", default)]
    pub retries: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// One history entry of the image config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub empty_layer: bool,
}

/// What the planner knows about a base image: its pinned reference and the
/// parts of its config that later instructions build on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseImage {
    /// Normalised reference as written after expansion (`docker.io/library/busybox:latest`).
    pub reference: String,
    /// Manifest digest the reference resolved to; part of every cache key below it.
    pub digest: String,
    pub os: String,
    pub architecture: String,
    #[serde(default)]
    pub variant: Option<String>,
    pub config: ContainerConfig,
    #[serde(default)]
    pub history: Vec<History>,
}

impl ContainerConfig {
    /// The value of an environment variable in `Env`.
    pub fn env_value(&self, key: &str) -> Option<&str> {
        self.env
            .as_deref()?
            .iter()
            .rev()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
    }

    /// Sets `key=value` in `Env`, replacing an earlier value in place (Docker keeps the order).
    pub fn set_env(&mut self, key: &str, value: &str) {
        let env = self.env.get_or_insert_with(Vec::new);
        let entry = format!("{key}={value}");
        match env
            .iter_mut()
            .find(|kv| kv.split_once('=').map_or(kv.as_str(), |(k, _)| k) == key)
        {
            Some(existing) => *existing = entry,
            None => env.push(entry),
        }
    }

    /// `Env` as ordered (key, value) pairs.
    pub fn env_pairs(&self) -> Vec<(String, String)> {
        self.env
            .iter()
            .flatten()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (kv.clone(), String::new()),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_set_replaces_in_place_and_serialises_like_docker() {
        let mut c = ContainerConfig::default();
        c.set_env("PATH", DEFAULT_PATH);
        c.set_env("A", "1");
        c.set_env("PATH", "/x");
        assert_eq!(c.env.as_deref().unwrap(), ["PATH=/x", "A=1"]);
        assert_eq!(c.env_value("A"), Some("1"));
        assert_eq!(c.env_value("B"), None);
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(json, r#"{"Env":["PATH=/x","A=1"]}"#);
    }

    #[test]
    fn history_omits_false_empty_layer() {
        let h = History {
            created_by: Some("RUN x".into()),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&h).unwrap(),
            r#"{"created_by":"RUN x"}"#
        );
    }
}
