//! The built image: config blob and manifest for the target stage, written
//! to the content store and tagged in the local store.

use std::collections::HashMap;
use std::sync::Arc;

use rbuild_cache::Root;
use rbuild_planner::graph::NodeId;
use rbuild_planner::image::{ContainerConfig, History};
use rbuild_planner::Graph;
use serde::Serialize;

use crate::build::VertexResult;
use crate::error::ExecError;

pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";

#[derive(Debug, Clone)]
pub struct BuiltImage {
    pub manifest_digest: String,
    pub manifest_size: u64,
    pub config_digest: String,
}

#[derive(Serialize)]
struct ConfigBlob<'a> {
    created: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    author: Option<&'a str>,
    architecture: &'a str,
    os: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    variant: Option<&'a str>,
    config: &'a ContainerConfig,
    rootfs: RootFs,
    history: Vec<History>,
}

#[derive(Serialize)]
struct RootFs {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    media_type: String,
    digest: String,
    size: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    schema_version: u32,
    media_type: &'static str,
    config: Descriptor,
    layers: Vec<Descriptor>,
}

/// RFC 3339 in UTC for a Unix time.
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Writes the target stage's config and manifest and returns them.
/// `created` is the image creation time (SOURCE_DATE_EPOCH when set).
pub fn assemble(
    root: &Arc<Root>,
    graph: &Graph,
    results: &HashMap<NodeId, Arc<VertexResult>>,
    created: i64,
) -> Result<BuiltImage, ExecError> {
    let stage = graph.target_stage();
    let out = results
        .get(&stage.output)
        .ok_or_else(|| ExecError::invalid("the target stage was not built"))?;

    // Our own history entries claim a layer each; steps whose layer came out
    // empty become empty_layer entries, as BuildKit does.
    let chain = graph.target_layers();
    let created_s = rfc3339(created);
    let mut history = stage.history.clone();
    let mut steps = chain.iter();
    for h in history.iter_mut().skip(stage.base_history) {
        if h.created.is_none() {
            h.created = Some(created_s.clone());
        }
        if !h.empty_layer {
            match steps.next().and_then(|s| results.get(s)) {
                Some(r) if r.made_layer => {}
                _ => h.empty_layer = true,
            }
        }
    }

    if out.layers.iter().any(|l| l.diff_id.is_empty()) {
        return Err(ExecError::invalid("a layer's digest was not computed"));
    }
    let diff_ids: Vec<String> = out.layers.iter().map(|l| l.diff_id.clone()).collect();
    let config = ConfigBlob {
        created: &created_s,
        author: stage.author.as_deref(),
        architecture: &stage.architecture,
        os: &stage.os,
        variant: stage.variant.as_deref(),
        config: &stage.config,
        rootfs: RootFs {
            kind: "layers",
            diff_ids,
        },
        history,
    };
    let config_bytes =
        serde_json::to_vec(&config).map_err(|e| ExecError::invalid(e.to_string()))?;
    let config_digest = root.put_blob_bytes(&config_bytes)?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: MANIFEST_MEDIA_TYPE,
        config: Descriptor {
            media_type: CONFIG_MEDIA_TYPE.into(),
            digest: config_digest.clone(),
            size: config_bytes.len() as u64,
        },
        layers: out
            .layers
            .iter()
            .map(|l| Descriptor {
                media_type: normalize_layer_media_type(&l.media_type),
                digest: l.blob.clone(),
                size: l.blob_size,
            })
            .collect(),
    };
    let manifest_bytes =
        serde_json::to_vec(&manifest).map_err(|e| ExecError::invalid(e.to_string()))?;
    let manifest_digest = root.put_blob_bytes(&manifest_bytes)?;
    Ok(BuiltImage {
        manifest_digest,
        manifest_size: manifest_bytes.len() as u64,
        config_digest,
    })
}

/// An OCI manifest must use OCI layer media types; Docker's map one to one.
fn normalize_layer_media_type(mt: &str) -> String {
    match mt {
        "application/vnd.docker.image.rootfs.diff.tar.gzip" => {
            "application/vnd.oci.image.layer.v1.tar+gzip".into()
        }
        "application/vnd.docker.image.rootfs.diff.tar" => {
            "application/vnd.oci.image.layer.v1.tar".into()
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_dates() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
