//! Local store commands: images, inspect, history, tag, rmi, push.

use std::path::Path;
use std::process::ExitCode;

use rbuild_cache::Root;

fn err(e: impl std::fmt::Display) -> String {
    format!("error: {e}\n")
}

fn open(root: &Path) -> Result<Root, String> {
    Root::open(root).map_err(err)
}

pub fn list(root: &Path) -> Result<ExitCode, String> {
    let root = open(root)?;
    let mut images = root.list_images().map_err(err)?;
    images.sort_by(|a, b| a.0.cmp(&b.0));
    println!("{:<50} {:<20} SIZE", "NAME", "DIGEST");
    for (name, desc) in images {
        let digest = desc.digest().to_string();
        let size = rbuild_push::find_image(&root, &digest)
            .map(|img| img.manifest.layers().iter().map(|l| l.size()).sum::<u64>())
            .unwrap_or(0);
        println!(
            "{:<50} {:<20} {}",
            name,
            &digest[..19.min(digest.len())],
            human(size)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn human(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u < units.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    format!("{v:.1}{}", units[u])
}

fn config_of(
    root: &Root,
    image: &str,
) -> Result<(rbuild_push::ImageRef, serde_json::Value), String> {
    let img = rbuild_push::find_image(root, image).map_err(err)?;
    let bytes = root
        .read_blob_bytes(img.manifest.config().digest().as_ref())
        .map_err(err)?;
    let config: serde_json::Value = serde_json::from_slice(&bytes).map_err(err)?;
    Ok((img, config))
}

pub fn inspect(root: &Path, image: &str) -> Result<ExitCode, String> {
    let root = open(root)?;
    let (img, config) = config_of(&root, image)?;
    let doc = serde_json::json!({
        "digest": img.manifest_digest,
        "manifest": img.manifest,
        "config": config,
    });
    println!("{}", serde_json::to_string_pretty(&doc).map_err(err)?);
    Ok(ExitCode::SUCCESS)
}

pub fn history(root: &Path, image: &str) -> Result<ExitCode, String> {
    let root = open(root)?;
    let (img, config) = config_of(&root, image)?;
    let mut sizes = img.manifest.layers().iter().map(|l| l.size());
    println!("{:<22} {:>10}  CREATED BY", "CREATED", "SIZE");
    let history = config["history"].as_array().cloned().unwrap_or_default();
    for h in history {
        let empty = h["empty_layer"].as_bool().unwrap_or(false);
        let size = if empty { 0 } else { sizes.next().unwrap_or(0) };
        println!(
            "{:<22} {:>10}  {}",
            h["created"].as_str().unwrap_or(""),
            human(size),
            h["created_by"].as_str().unwrap_or("")
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn tag(root: &Path, source: &str, target: &str) -> Result<ExitCode, String> {
    let root = open(root)?;
    let img = rbuild_push::find_image(&root, source).map_err(err)?;
    let name = crate::build::normalize_tag(target)?;
    root.tag_image(
        &name,
        &img.manifest_digest,
        img.manifest_size,
        crate_media_type(),
    )
    .map_err(err)?;
    Ok(ExitCode::SUCCESS)
}

fn crate_media_type() -> &'static str {
    rbuild_executor::image::MANIFEST_MEDIA_TYPE
}

pub fn rmi(root: &Path, images: &[String]) -> Result<ExitCode, String> {
    let root = open(root)?;
    let mut missing = Vec::new();
    for image in images {
        let name = crate::build::normalize_tag(image)?;
        let removed =
            root.untag_image(&name).map_err(err)? || root.untag_image(image).map_err(err)?;
        if removed {
            println!("Untagged: {name}");
        } else {
            missing.push(image.clone());
        }
    }
    if missing.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(format!("error: no such image: {}\n", missing.join(", ")))
    }
}

pub fn push(
    root: &Path,
    insecure: &[String],
    source: &str,
    destination: &str,
) -> Result<ExitCode, String> {
    let root = open(root)?;
    let img = rbuild_push::find_image(&root, source).map_err(err)?;
    let dest = rbuild_registry::Reference::parse(destination).map_err(err)?;
    let client =
        rbuild_registry::Client::new(crate::config::client_config(insecure)?).map_err(err)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(err)?;
    let digest = runtime
        .block_on(rbuild_push::push_image(&root, &client, &img, &dest))
        .map_err(err)?;
    eprintln!("pushed {dest}");
    println!("{digest}");
    Ok(ExitCode::SUCCESS)
}
