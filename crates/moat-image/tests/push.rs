//! Pushing to a real `docker-registry` on loopback with htpasswd auth: the manifest digest is
//! kept, a second push uploads nothing, another repository of the registry mounts its blobs,
//! and what was pushed pulls back.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use moat_image::{Error, PullOptions, PushOptions, Store, StoreError};

#[tokio::test(flavor = "multi_thread")]
async fn push_sends_what_the_registry_lacks_and_keeps_the_manifest_digest() {
    let creds = Credentials { user: "moat", password: "push-pass" };
    let registry = Registry::start(Some(&creds));
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let second = TarBuilder::new().file("etc/motd", b"pushed\n", 0o644).finish();
    let built = layout_with(&layout, &[(busybox_layer(), Compression::Gzip), (second, Compression::Zstd)]);
    let root = work.path().join("root");
    let store = Store::open(&root).unwrap();
    let target = format!("{}/team/app:1", registry.addr);
    let opts = moat_image::ImportOptions { name: Some(target.clone()), ..Default::default() };
    store.import(&layout, &opts).unwrap();

    // No credentials: one clear refusal.
    let config_dir = work.path().join("docker");
    std::fs::create_dir(&config_dir).unwrap();
    std::env::set_var("DOCKER_CONFIG", &config_dir);
    let refused = one_line(&store.push(&target, &PushOptions::default()).await.unwrap_err());
    assert!(refused.contains("refused access") && refused.contains("HTTP 401"), "{refused}");

    let encoded = run(std::process::Command::new("sh").arg("-c").arg(format!("printf %s '{}:{}' | base64 -w0", creds.user, creds.password)));
    let auth = serde_json::json!({ "auths": { registry.addr.clone(): { "auth": encoded.trim() } } });
    std::fs::write(config_dir.join("config.json"), auth.to_string()).unwrap();

    let first = store.push(&target, &PushOptions::default()).await.unwrap();
    assert_eq!(first.manifest_digest.to_string(), built.manifest_digest);
    assert_eq!((first.uploaded, first.mounted, first.present), (3, 0, 0), "two layers and the config");
    let raw = run(std::process::Command::new("skopeo").args(["inspect", "--raw", "--tls-verify=false"]).arg(format!("--creds={}:{}", creds.user, creds.password)).arg(format!("docker://{target}")));
    assert_eq!(sha256(raw.as_bytes()), built.manifest_digest, "the registry serves the stored manifest");

    let second = store.push(&target, &PushOptions::default()).await.unwrap();
    assert_eq!((second.uploaded, second.uploaded_bytes, second.present), (0, 0, 3), "a second push uploads no blob");

    // Removed and pruned, then pulled back: the same image.
    assert!(store.remove(&target).unwrap());
    store.prune().unwrap();
    let pulled = store.pull(&target, &PullOptions::default()).await.unwrap();
    assert_eq!(pulled.manifest_digest.to_string(), built.manifest_digest);
    assert_eq!(pulled.config_digest.to_string(), built.config_digest);
    let view = ErofsView::open(&store.erofs(&pulled).unwrap());
    assert_eq!(std::fs::read(view.path("etc/motd")).unwrap(), b"pushed\n");

    // Another repository of the same registry: the blobs are mounted, not sent again.
    let other = format!("{}/elsewhere/app:2", registry.addr);
    store.tag(&target, &other).unwrap();
    let mounted = store.push(&other, &PushOptions::default()).await.unwrap();
    assert_eq!((mounted.uploaded, mounted.mounted), (0, 3));
    assert_eq!(mounted.manifest_digest, first.manifest_digest);

    let missing = store.push(&format!("{}/team/none:1", registry.addr), &PushOptions::default()).await.unwrap_err();
    assert!(matches!(missing, Error::Store(StoreError::NotStored(_))), "{}", one_line(&missing));
    std::env::remove_var("DOCKER_CONFIG");
}
