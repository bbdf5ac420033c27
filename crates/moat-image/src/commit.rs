//! `moat commit`: a new image from a stored one and a layer a container's zone wrote. The layer
//! is hostile: it is rewritten under the unpack rules as it is stored ([`crate::unpack::retar`]),
//! and the image is converted like any other before its reference is recorded.
//!
//! `--change` takes the subset of Dockerfile instructions `docker commit` takes that change the
//! configuration: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER and WORKDIR.

use std::io::Read;

use oci_spec::image::{Config, HistoryBuilder, ImageConfiguration};

use crate::limits::MAX_CONFIG_BYTES;
use crate::manifest::{self, BlobRef};
use crate::store::{blobs, Fetched, Store, StoreError, StoredImage};
use crate::unpack::{retar, RetarError};
use crate::{reference, Error};

const SUPPORTED: &str = "CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER and WORKDIR";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChangeError {
    #[error("--change {0:?}: {1} is not an instruction moat commit applies (it takes {SUPPORTED})")]
    Unsupported(String, String),
    #[error("--change {0:?}: {1}")]
    Bad(String, &'static str),
}

/// One `--change`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigChange {
    Cmd(Vec<String>),
    Entrypoint(Vec<String>),
    /// `KEY=VALUE` pairs, replacing the same keys.
    Env(Vec<(String, String)>),
    /// Ports as `PORT/PROTO`.
    Expose(Vec<String>),
    Label(Vec<(String, String)>),
    User(String),
    Workdir(String),
}

impl ConfigChange {
    /// Parse one instruction as a Dockerfile line: a keyword (any case), then its arguments.
    pub fn parse(text: &str) -> Result<Self, ChangeError> {
        let bad = |why| ChangeError::Bad(text.to_string(), why);
        let trimmed = text.trim();
        let (keyword, rest) = trimmed.split_once(char::is_whitespace).unwrap_or((trimmed, ""));
        let rest = rest.trim();
        let keyword = keyword.to_ascii_uppercase();
        if rest.is_empty() && !keyword.is_empty() && is_supported(&keyword) {
            return Err(bad("the instruction has no arguments"));
        }
        match keyword.as_str() {
            "CMD" => command(rest).map(ConfigChange::Cmd).map_err(bad),
            "ENTRYPOINT" => command(rest).map(ConfigChange::Entrypoint).map_err(bad),
            "ENV" => pairs(rest, true).map(ConfigChange::Env).map_err(bad),
            "LABEL" => pairs(rest, false).map(ConfigChange::Label).map_err(bad),
            "EXPOSE" => rest.split_whitespace().map(port).collect::<Result<_, _>>().map(ConfigChange::Expose).map_err(bad),
            "USER" if rest.split_whitespace().count() == 1 => Ok(ConfigChange::User(rest.to_string())),
            "USER" => Err(bad("USER takes one user[:group]")),
            "WORKDIR" => Ok(ConfigChange::Workdir(rest.to_string())),
            _ => Err(ChangeError::Unsupported(text.to_string(), keyword)),
        }
    }

    fn apply(&self, config: &mut Config) {
        match self {
            ConfigChange::Cmd(cmd) => {
                config.set_cmd(Some(cmd.clone()));
            }
            ConfigChange::Entrypoint(entrypoint) => {
                config.set_entrypoint(Some(entrypoint.clone()));
                // As Docker: a new entrypoint drops the image's command unless CMD is given too.
                config.set_cmd(None);
            }
            ConfigChange::Env(vars) => {
                let mut env = config.env().clone().unwrap_or_default();
                for (key, value) in vars {
                    env.retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != key);
                    env.push(format!("{key}={value}"));
                }
                config.set_env(Some(env));
            }
            ConfigChange::Expose(ports) => {
                let mut exposed = config.exposed_ports().clone().unwrap_or_default();
                exposed.extend(ports.iter().filter(|p| !exposed.contains(p)).cloned().collect::<Vec<_>>());
                config.set_exposed_ports(Some(exposed));
            }
            ConfigChange::Label(labels) => {
                config.labels_mut().get_or_insert_with(Default::default).extend(labels.iter().cloned());
            }
            ConfigChange::User(user) => {
                config.set_user(Some(user.clone()));
            }
            ConfigChange::Workdir(dir) => {
                // A relative WORKDIR is taken from the one before, as in a Dockerfile.
                let dir = match config.working_dir() {
                    _ if dir.starts_with('/') => dir.clone(),
                    Some(base) => format!("{}/{dir}", base.trim_end_matches('/')),
                    None => format!("/{dir}"),
                };
                config.set_working_dir(Some(dir));
            }
        }
    }
}

fn is_supported(keyword: &str) -> bool {
    ["CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "USER", "WORKDIR"].contains(&keyword)
}

/// The exec form (a JSON array of strings) or the shell form (`/bin/sh -c TEXT`).
fn command(text: &str) -> Result<Vec<String>, &'static str> {
    if text.starts_with('[') {
        return serde_json::from_str(text).map_err(|_| "the exec form must be a JSON array of strings");
    }
    Ok(vec!["/bin/sh".into(), "-c".into(), text.into()])
}

/// `K=V K2="V 2"` pairs; for ENV also the old `KEY VALUE…` form.
fn pairs(text: &str, legacy: bool) -> Result<Vec<(String, String)>, &'static str> {
    let first = text.split_whitespace().next().unwrap_or_default();
    if legacy && !first.contains('=') {
        let value = text[first.len()..].trim();
        return Ok(vec![(first.to_string(), value.to_string())]);
    }
    let mut found = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(found);
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=' && !c.is_whitespace())).collect();
        if chars.next() != Some('=') || key.is_empty() {
            return Err("each argument must be KEY=VALUE");
        }
        let mut value = String::new();
        let mut quote = None;
        while let Some(c) = chars.next_if(|c| quote.is_some() || !c.is_whitespace()) {
            match (quote, c) {
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (_, '\\') => value.extend(chars.next()),
                (_, c) => value.push(c),
            }
        }
        if quote.is_some() {
            return Err("a quote is not closed");
        }
        found.push((key, value));
    }
}

/// `80`, `80/tcp`, `53/udp`, `9/sctp`, as the image config writes them.
fn port(text: &str) -> Result<String, &'static str> {
    let (number, proto) = text.split_once('/').unwrap_or((text, "tcp"));
    let proto = proto.to_ascii_lowercase();
    match (number.parse::<u16>(), proto.as_str()) {
        (Ok(n), "tcp" | "udp" | "sctp") if n > 0 => Ok(format!("{n}/{proto}")),
        _ => Err("EXPOSE takes ports as PORT or PORT/tcp, udp or sctp"),
    }
}

/// What a commit records besides the layer.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// The new image's reference.
    pub reference: String,
    pub changes: Vec<ConfigChange>,
    /// `-m`: the history entry's comment.
    pub comment: Option<String>,
    pub author: Option<String>,
    /// When, as RFC 3339.
    pub created: String,
    /// The history entry's `created_by`, and where the store says the image came from.
    pub created_by: String,
}

impl Store {
    /// Store `base` plus the layer tar `layer` (hostile: rewritten under the unpack rules, at
    /// most the store's layer limit) as a new image under `options.reference`, converted to EROFS.
    pub fn commit_layer(&self, base: &StoredImage, layer: impl Read, options: &CommitOptions) -> Result<StoredImage, Error> {
        let target = reference::parse(&options.reference)?;
        if target.digest().is_some() {
            return Err(StoreError::DigestTag(options.reference.clone()).into());
        }
        let _store = self.lock_shared()?;
        let limit = self.limits.max_layer_bytes;
        let mut writer = blobs::BlobWriter::begin(&self.layout, None, limit).map_err(StoreError::from)?;
        retar(layer, &mut writer, limit).map_err(StoreError::from)?;
        let stored = writer.commit(&self.layout, manifest::OCI_LAYER_TAR).map_err(StoreError::from)?;
        // An uncompressed layer's digest is its diff ID.
        let config = committed_config(&base.config, &stored.digest.to_string(), options);
        let config_bytes = serde_json::to_vec(&config).map_err(|e| StoreError::Manifest(manifest::ManifestError::Json { what: "image config", reason: e }))?;
        if config_bytes.len() as u64 > MAX_CONFIG_BYTES {
            return Err(StoreError::Manifest(manifest::ManifestError::TooLarge { what: "image config", size: config_bytes.len() as u64, limit: MAX_CONFIG_BYTES }).into());
        }
        let config_blob = blobs::put_bytes(&self.layout, &config_bytes, manifest::OCI_CONFIG).map_err(StoreError::from)?;
        let layers: Vec<BlobRef> = base.layers.iter().cloned().chain([stored]).collect();
        let manifest_bytes = manifest::image_manifest(&config_blob, &layers);
        let manifest_blob = blobs::put_bytes(&self.layout, &manifest_bytes, manifest::OCI_MANIFEST).map_err(StoreError::from)?;
        let manifest::Manifest::Image(image) = manifest::parse(&manifest_bytes).map_err(StoreError::from)? else {
            return Err(StoreError::NotAnImage(manifest_blob.digest).into());
        };
        let config = manifest::parse_config(&config_bytes, layers.len()).map_err(StoreError::from)?;
        let fetched = Fetched { reference: reference::normalized(&target), manifest: manifest_blob.digest, index: None, image: *image, config, source: options.created_by.clone() };
        Ok(self.commit(fetched)?)
    }
}

impl From<RetarError> for StoreError {
    fn from(err: RetarError) -> Self {
        StoreError::Layer(err)
    }
}

/// `base` with the new layer's diff ID, a history entry for it, and the changes applied.
fn committed_config(base: &ImageConfiguration, diff_id: &str, options: &CommitOptions) -> ImageConfiguration {
    let mut config = base.clone();
    config.rootfs_mut().diff_ids_mut().push(diff_id.to_string());
    let mut history = HistoryBuilder::default().created(options.created.clone()).created_by(options.created_by.clone()).empty_layer(false);
    if let Some(comment) = &options.comment {
        history = history.comment(comment.clone());
    }
    if let Some(author) = &options.author {
        history = history.author(author.clone());
        config.set_author(Some(author.clone()));
    }
    // The builder fails only on a missing required field, and History has none.
    if let Ok(entry) = history.build() {
        config.history_mut().get_or_insert_with(Vec::new).push(entry);
    }
    config.set_created(Some(options.created.clone()));
    let mut run = config.config().clone().unwrap_or_default();
    for change in &options.changes {
        change.apply(&mut run);
    }
    config.set_config(Some(run));
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> ConfigChange {
        ConfigChange::parse(text).unwrap()
    }

    #[test]
    fn changes_parse_as_dockerfile_instructions() {
        assert_eq!(parse(r#"CMD ["cat","/new"]"#), ConfigChange::Cmd(vec!["cat".into(), "/new".into()]));
        assert_eq!(parse("cmd echo hi"), ConfigChange::Cmd(vec!["/bin/sh".into(), "-c".into(), "echo hi".into()]));
        assert_eq!(parse(r#"ENTRYPOINT ["/bin/app"]"#), ConfigChange::Entrypoint(vec!["/bin/app".into()]));
        assert_eq!(parse("ENV A=b"), ConfigChange::Env(vec![("A".into(), "b".into())]));
        assert_eq!(parse(r#"ENV A="x y" B=c\ d"#), ConfigChange::Env(vec![("A".into(), "x y".into()), ("B".into(), "c d".into())]));
        assert_eq!(parse("ENV PATH /usr/bin:/bin"), ConfigChange::Env(vec![("PATH".into(), "/usr/bin:/bin".into())]));
        assert_eq!(parse("LABEL a=1 b=2"), ConfigChange::Label(vec![("a".into(), "1".into()), ("b".into(), "2".into())]));
        assert_eq!(parse("EXPOSE 80 53/UDP"), ConfigChange::Expose(vec!["80/tcp".into(), "53/udp".into()]));
        assert_eq!(parse("USER app:app"), ConfigChange::User("app:app".into()));
        assert_eq!(parse("WORKDIR /srv"), ConfigChange::Workdir("/srv".into()));
    }

    #[test]
    fn bad_changes_are_refused_with_the_instruction() {
        let err = ConfigChange::parse("RUN rm -rf /").unwrap_err();
        assert_eq!(err, ChangeError::Unsupported("RUN rm -rf /".into(), "RUN".into()));
        assert!(err.to_string().contains("CMD, ENTRYPOINT"), "{err}");
        for bad in ["CMD", "CMD [\"a\",1]", "ENV", "LABEL novalue", "EXPOSE 0", "EXPOSE 80/icmp", "EXPOSE http", "USER a b", "ENV A=\"open", ""] {
            assert!(ConfigChange::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn changes_apply_over_the_base_config() {
        let base: ImageConfiguration = serde_json::from_str(
            r#"{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin","A=old"],"Cmd":["sh"],"WorkingDir":"/srv"},
                "rootfs":{"type":"layers","diff_ids":["sha256:aa"]},"history":[{"created_by":"base"}]}"#,
        )
        .unwrap();
        let changes = ["ENV A=b", r#"CMD ["cat","/new"]"#, "WORKDIR data", "EXPOSE 80", "LABEL k=v"].map(parse).to_vec();
        let options = CommitOptions { changes, comment: Some("msg".into()), author: Some("me".into()), created: "2026-01-01T00:00:00Z".into(), created_by: "moat commit c1".into(), ..Default::default() };
        let config = committed_config(&base, "sha256:bb", &options);
        let run = config.config().clone().unwrap();
        assert_eq!(run.env().clone().unwrap(), ["PATH=/bin", "A=b"]);
        assert_eq!(run.cmd().clone().unwrap(), ["cat", "/new"]);
        assert_eq!(run.working_dir().as_deref(), Some("/srv/data"));
        assert_eq!(run.exposed_ports().clone().unwrap(), ["80/tcp"]);
        assert_eq!(run.labels().clone().unwrap()["k"], "v");
        assert_eq!(config.rootfs().diff_ids(), &["sha256:aa", "sha256:bb"]);
        let history = config.history().clone().unwrap();
        assert_eq!((history.len(), history[1].comment().as_deref(), history[1].author().as_deref()), (2, Some("msg"), Some("me")));
    }
}
