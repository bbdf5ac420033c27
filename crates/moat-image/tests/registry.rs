//! Pulling from a real `docker-registry` on loopback: by tag, by digest, through a
//! multi-platform index, with htpasswd auth (inline and via a credential helper), concurrently.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::*;
use moat_image::{PullOptions, Store};

/// DOCKER_CONFIG is process-wide: tests that set it take this lock.
static DOCKER_CONFIG: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn quiet() -> PullOptions {
    PullOptions::default()
}

fn busybox_layout(dir: &Path) -> BuiltImage {
    layout_with(dir, &[(busybox_layer(), Compression::Gzip), (TarBuilder::new().file("etc/motd", b"hi\n", 0o644).finish(), Compression::Zstd)])
}

#[tokio::test(flavor = "multi_thread")]
async fn pulls_by_tag_and_by_digest_and_reuses_blobs() {
    let _env = DOCKER_CONFIG.lock().await;
    let registry = Registry::start(None);
    let work = tempfile::tempdir().unwrap();
    let built = busybox_layout(&work.path().join("layout"));
    let target = registry.push(&work.path().join("layout"), "latest", "tools/busybox", None);

    let store = Store::open(&work.path().join("root")).unwrap();
    let image = store.pull(&target, &quiet()).await.unwrap();
    assert_eq!(image.reference, format!("{target}"));
    assert_eq!(image.config_digest.to_string(), built.config_digest);
    assert_eq!(image.layers.len(), 2);
    let erofs = store.cached_erofs(&image).expect("pull converts");
    let view = ErofsView::open(&erofs);
    assert_eq!(std::fs::read(view.path("etc/motd")).unwrap(), b"hi\n");
    assert_eq!(std::fs::read_link(view.path("bin/sh")).unwrap(), Path::new("busybox"));

    let by_digest = format!("{}/tools/busybox@{}", registry.addr, image.manifest_digest);
    let again = store.pull(&by_digest, &quiet()).await.unwrap();
    assert_eq!(again.reference, by_digest);
    assert_eq!(again.config_digest, image.config_digest);
    assert_eq!(store.erofs(&again).unwrap(), erofs, "same config, same cached EROFS");

    let listed: Vec<String> = store.list().unwrap().into_iter().map(|i| i.reference).collect();
    assert_eq!(listed.len(), 2, "{listed:?}");
    let blobs = std::fs::read_dir(store.base().join("blobs/sha256")).unwrap().count();
    assert_eq!(blobs, 4, "manifest, config and two layers, stored once");

    let looked_up = store.get(&target).unwrap().expect("stored");
    assert_eq!(looked_up.manifest_digest, image.manifest_digest);
    assert_eq!(looked_up.config.os().to_string(), "linux");
}

#[tokio::test(flavor = "multi_thread")]
async fn multi_arch_index_resolves_to_the_requested_platform() {
    let _env = DOCKER_CONFIG.lock().await;
    let registry = Registry::start(None);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("layout");
    let mut layout = OciLayout::new(&dir);
    let amd64 = layout.image("amd64", &[(TarBuilder::new().file("arch", b"amd64", 0o644).finish(), Compression::Gzip)]);
    let arm64 = layout.image("arm64", &[(TarBuilder::new().file("arch", b"arm64", 0o644).finish(), Compression::Gzip)]);
    let index = layout.index(&[&arm64, &amd64]);
    layout.tag(index.clone(), "multi");
    let target = registry.push(&dir, "multi", "multi", None);

    let store = Store::open(&work.path().join("root")).unwrap();
    let image = store.pull(&target, &quiet()).await.unwrap();
    assert_eq!(image.config_digest.to_string(), amd64.config_digest);
    assert_eq!(image.index_digest.as_ref().map(ToString::to_string), Some(index["digest"].as_str().unwrap().to_owned()));
    let view = ErofsView::open(&store.erofs(&image).unwrap());
    assert_eq!(std::fs::read(view.path("arch")).unwrap(), b"amd64");
    drop(view);

    let arm_opts = PullOptions { platform: "linux/arm64".parse().unwrap(), ..quiet() };
    let arm = store.pull(&target, &arm_opts).await.unwrap();
    assert_eq!(arm.config_digest.to_string(), arm64.config_digest);

    let s390 = PullOptions { platform: "linux/s390x".parse().unwrap(), ..quiet() };
    let err = store.pull(&target, &s390).await.unwrap_err();
    assert!(one_line(&err).contains("no manifest for platform linux/s390x"), "{}", one_line(&err));
}

#[tokio::test(flavor = "multi_thread")]
async fn htpasswd_registry_needs_credentials_from_docker_config() {
    let _env = DOCKER_CONFIG.lock().await;
    let creds = Credentials { user: "moat", password: "s3cret-pass" };
    let registry = Registry::start(Some(&creds));
    let work = tempfile::tempdir().unwrap();
    busybox_layout(&work.path().join("layout"));
    let target = registry.push(&work.path().join("layout"), "latest", "private/busybox", Some(&creds));
    let store = Store::open(&work.path().join("root")).unwrap();

    // No credentials: a clear refusal, nothing stored.
    let config_dir = work.path().join("docker");
    std::fs::create_dir(&config_dir).unwrap();
    std::env::set_var("DOCKER_CONFIG", &config_dir);
    let err = store.pull(&target, &quiet()).await.unwrap_err();
    let line = one_line(&err);
    assert!(line.contains("refused access") && line.contains("HTTP 401"), "{line}");
    assert!(store.list().unwrap().is_empty());

    // Wrong password: refused too.
    let auth = |pass: &str| {
        let encoded = run(std::process::Command::new("sh").arg("-c").arg(format!("printf %s 'moat:{pass}' | base64 -w0")));
        serde_json::json!({ "auths": { registry.addr.clone(): { "auth": encoded.trim() } } })
    };
    std::fs::write(config_dir.join("config.json"), auth("wrong").to_string()).unwrap();
    assert!(store.pull(&target, &quiet()).await.is_err());

    // Inline auth in config.json.
    std::fs::write(config_dir.join("config.json"), auth(creds.password).to_string()).unwrap();
    let image = store.pull(&target, &quiet()).await.unwrap();
    assert!(store.cached_erofs(&image).is_some());

    // A credential helper named in credHelpers.
    let bin = work.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let helper = bin.join("docker-credential-moattest");
    std::fs::write(
        &helper,
        format!("#!/bin/sh\ncat >/dev/null\necho '{{\"ServerURL\":\"{}\",\"Username\":\"moat\",\"Secret\":\"{}\"}}'\n", registry.addr, creds.password),
    )
    .unwrap();
    run(std::process::Command::new("chmod").arg("755").arg(&helper));
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    std::env::set_var("PATH", path);
    std::fs::write(
        config_dir.join("config.json"),
        serde_json::json!({ "credHelpers": { registry.addr.clone(): "moattest" } }).to_string(),
    )
    .unwrap();
    let fresh = Store::open(&work.path().join("root2")).unwrap();
    let via_helper = fresh.pull(&target, &quiet()).await.unwrap();
    assert_eq!(via_helper.config_digest, image.config_digest);
    std::env::remove_var("DOCKER_CONFIG");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_pulls_of_one_image_both_succeed_and_store_it_once() {
    let _env = DOCKER_CONFIG.lock().await;
    let registry = Registry::start(None);
    let work = tempfile::tempdir().unwrap();
    busybox_layout(&work.path().join("layout"));
    let target = registry.push(&work.path().join("layout"), "latest", "busybox", None);
    let root = work.path().join("root");

    let pulls: Vec<_> = (0..2)
        .map(|_| {
            let (root, target) = (root.clone(), target.clone());
            tokio::spawn(async move { Store::open(&root).unwrap().pull(&target, &PullOptions::default()).await })
        })
        .collect();
    let mut configs = Vec::new();
    for pull in pulls {
        configs.push(pull.await.unwrap().unwrap().config_digest);
    }
    assert_eq!(configs[0], configs[1]);
    let store = Store::open(&root).unwrap();
    assert_eq!(store.list().unwrap().len(), 1);
    assert_eq!(std::fs::read_dir(store.base().join("blobs/sha256")).unwrap().count(), 4);
    assert_eq!(std::fs::read_dir(store.base().join("erofs")).unwrap().count(), 1);
    assert_eq!(std::fs::read_dir(store.base().join("tmp")).unwrap().count(), 0);
}
