//! Fixtures for the integration tests: layer tarballs built entry by entry (hostile ones
//! included), OCI layouts written by hand, a real `docker-registry` on loopback, skopeo to move
//! images between formats, and a way to read an EROFS image back.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Runs a command, panicking with its output if it fails.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The error chain on one line, as the CLI prints it.
pub fn one_line(err: &dyn std::error::Error) -> String {
    let mut line = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        line.push_str(": ");
        line.push_str(&s.to_string());
        source = s.source();
    }
    line
}

// ---------------------------------------------------------------------------------------------
// Layer tarballs

/// Builds a layer tarball entry by entry, with raw names so hostile entries can be written.
#[derive(Default)]
pub struct TarBuilder {
    out: Vec<u8>,
}

fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body_len = 1 + key.len() + 1 + value.len() + 1; // ' ' key '=' value '\n'
    let mut len = body_len + 1;
    while len != body_len + len.to_string().len() {
        len = body_len + len.to_string().len();
    }
    let mut rec = format!("{len} {key}=").into_bytes();
    rec.extend_from_slice(value);
    rec.push(b'\n');
    rec
}

impl TarBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    fn header(name: &[u8], kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        assert!(name.len() < 100, "test names stay short");
        let bytes = h.as_mut_bytes();
        bytes[..100].fill(0);
        bytes[..name.len()].copy_from_slice(name);
        h
    }

    fn push(&mut self, mut h: tar::Header, data: &[u8]) {
        h.set_cksum();
        self.out.extend_from_slice(h.as_bytes());
        self.out.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.out.extend(std::iter::repeat_n(0u8, pad));
    }

    fn pax(&mut self, records: &[(&str, &[u8])]) {
        let body: Vec<u8> = records.iter().flat_map(|(k, v)| pax_record(k, v)).collect();
        let h = Self::header(b"././@PaxHeader", tar::EntryType::XHeader, 0o644, body.len() as u64);
        self.push(h, &body);
    }

    pub fn dir(mut self, name: &str, mode: u32) -> Self {
        let h = Self::header(name.as_bytes(), tar::EntryType::Directory, mode, 0);
        self.push(h, &[]);
        self
    }

    pub fn file(self, name: &str, data: &[u8], mode: u32) -> Self {
        self.file_owned(name, data, mode, 0, 0)
    }

    pub fn file_owned(mut self, name: &str, data: &[u8], mode: u32, uid: u64, gid: u64) -> Self {
        let mut h = Self::header(name.as_bytes(), tar::EntryType::Regular, mode, data.len() as u64);
        h.set_uid(uid);
        h.set_gid(gid);
        self.push(h, data);
        self
    }

    /// A regular file carrying extended attributes in a PAX header.
    pub fn file_xattrs(mut self, name: &str, data: &[u8], mode: u32, xattrs: &[(&str, &[u8])]) -> Self {
        let keys: Vec<String> = xattrs.iter().map(|(k, _)| format!("SCHILY.xattr.{k}")).collect();
        let records: Vec<(&str, &[u8])> = keys.iter().zip(xattrs).map(|(k, (_, v))| (k.as_str(), *v)).collect();
        self.pax(&records);
        self.file(name, data, mode)
    }

    /// Any name, even one no honest tool writes (`../x`, `/abs`).
    pub fn raw_file(mut self, name: &[u8], data: &[u8]) -> Self {
        let h = Self::header(name, tar::EntryType::Regular, 0o644, data.len() as u64);
        self.push(h, data);
        self
    }

    fn link(mut self, name: &str, target: &str, kind: tar::EntryType) -> Self {
        let mut h = Self::header(name.as_bytes(), kind, 0o777, 0);
        let bytes = h.as_mut_bytes();
        bytes[157..257].fill(0);
        bytes[157..157 + target.len()].copy_from_slice(target.as_bytes());
        self.push(h, &[]);
        self
    }

    pub fn symlink(self, name: &str, target: &str) -> Self {
        self.link(name, target, tar::EntryType::Symlink)
    }

    pub fn hardlink(self, name: &str, target: &str) -> Self {
        self.link(name, target, tar::EntryType::Link)
    }

    /// A header that declares `size` bytes of data it does not carry.
    pub fn bare_header(mut self, name: &str, kind: tar::EntryType, size: u64) -> Self {
        let h = Self::header(name.as_bytes(), kind, 0o644, size);
        self.push(h, &[]);
        self
    }

    pub fn fifo(mut self, name: &str) -> Self {
        let h = Self::header(name.as_bytes(), tar::EntryType::Fifo, 0o600, 0);
        self.push(h, &[]);
        self
    }

    pub fn char_device(mut self, name: &str, major: u32, minor: u32) -> Self {
        let mut h = Self::header(name.as_bytes(), tar::EntryType::Char, 0o666, 0);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.push(h, &[]);
        self
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.out.extend(std::iter::repeat_n(0u8, 1024));
        self.out
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn apply(self, tar: &[u8]) -> Vec<u8> {
        match self {
            Compression::None => tar.to_vec(),
            Compression::Gzip => {
                let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                enc.write_all(tar).unwrap();
                enc.finish().unwrap()
            }
            Compression::Zstd => zstd::encode_all(tar, 3).unwrap(),
        }
    }

    pub fn media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

/// Incompressible bytes (xorshift), so compressed layers keep their size.
pub fn noise(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_u32;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state.to_le_bytes()[0]
        })
        .collect()
}

/// A small, runnable base layer: busybox-static as /bin/busybox, with /bin/sh linked to it.
pub fn busybox_layer() -> Vec<u8> {
    let busybox = std::fs::read("/bin/busybox").expect("busybox-static is installed");
    TarBuilder::new()
        .dir("bin/", 0o755)
        .file("bin/busybox", &busybox, 0o755)
        .symlink("bin/sh", "busybox")
        .dir("etc/", 0o755)
        .file("etc/hostname", b"moat\n", 0o644)
        .finish()
}

// ---------------------------------------------------------------------------------------------
// OCI layouts

/// An OCI image layout directory written by hand.
pub struct OciLayout {
    pub dir: PathBuf,
    entries: Vec<Value>,
}

pub struct BuiltImage {
    /// The manifest's descriptor, for an index.
    pub descriptor: Value,
    pub manifest_digest: String,
    pub config_digest: String,
}

impl OciLayout {
    pub fn new(dir: &Path) -> Self {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Self { dir: dir.to_owned(), entries: Vec::new() }
    }

    pub fn blob(&self, bytes: &[u8], media_type: &str) -> Value {
        let digest = sha256(bytes);
        std::fs::write(self.dir.join("blobs/sha256").join(&digest[7..]), bytes).unwrap();
        json!({ "mediaType": media_type, "digest": digest, "size": bytes.len() })
    }

    /// Writes config, layers and manifest for an image of `arch` made of `layers` (tarballs).
    pub fn image(&self, arch: &str, layers: &[(Vec<u8>, Compression)]) -> BuiltImage {
        let diff_ids: Vec<String> = layers.iter().map(|(tar, _)| sha256(tar)).collect();
        self.image_with_diff_ids(arch, layers, diff_ids)
    }

    pub fn image_with_diff_ids(&self, arch: &str, layers: &[(Vec<u8>, Compression)], diff_ids: Vec<String>) -> BuiltImage {
        let config = json!({
            "architecture": arch,
            "os": "linux",
            "config": { "Cmd": ["/bin/sh"], "Env": ["PATH=/bin"] },
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
        });
        let config_bytes = serde_json::to_vec(&config).unwrap();
        let config_desc = self.blob(&config_bytes, "application/vnd.oci.image.config.v1+json");
        let layer_descs: Vec<Value> =
            layers.iter().map(|(tar, c)| self.blob(&c.apply(tar), c.media_type())).collect();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config_desc,
            "layers": layer_descs,
        });
        let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
        let mut descriptor = self.blob(&manifest_bytes, "application/vnd.oci.image.manifest.v1+json");
        descriptor["platform"] = json!({ "os": "linux", "architecture": arch });
        BuiltImage {
            manifest_digest: sha256(&manifest_bytes),
            config_digest: sha256(&config_bytes),
            descriptor,
        }
    }

    /// Writes an image index over `manifests` as a blob and returns its descriptor.
    pub fn index(&self, manifests: &[&BuiltImage]) -> Value {
        let index = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests.iter().map(|m| m.descriptor.clone()).collect::<Vec<_>>(),
        });
        self.blob(&serde_json::to_vec(&index).unwrap(), "application/vnd.oci.image.index.v1+json")
    }

    /// Lists `descriptor` in index.json under `tag`.
    pub fn tag(&mut self, mut descriptor: Value, tag: &str) -> &mut Self {
        descriptor["annotations"] = json!({ "org.opencontainers.image.ref.name": tag });
        self.entries.push(descriptor);
        let index = json!({ "schemaVersion": 2, "manifests": self.entries });
        std::fs::write(self.dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
        self
    }
}

/// A single-image OCI layout at `dir`, tagged `latest`.
pub fn layout_with(dir: &Path, layers: &[(Vec<u8>, Compression)]) -> BuiltImage {
    let mut layout = OciLayout::new(dir);
    let image = layout.image("amd64", layers);
    layout.tag(image.descriptor.clone(), "latest");
    image
}

// ---------------------------------------------------------------------------------------------
// skopeo

pub fn skopeo_copy(from: &str, to: &str, extra: &[&str]) {
    let mut cmd = Command::new("skopeo");
    cmd.args(["--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false"]).args(extra).args([from, to]);
    run(&mut cmd);
}

// ---------------------------------------------------------------------------------------------
// A real registry on loopback

mod registry;
pub use registry::{Credentials, Registry};

impl Registry {
    /// Pushes `layout_dir:tag` as `name:tag` (with `--all` for indexes).
    pub fn push(&self, layout_dir: &Path, tag: &str, name: &str, creds: Option<&Credentials>) -> String {
        let target = format!("{}/{name}:{tag}", self.addr);
        let mut extra = vec!["--all".to_owned()];
        if let Some(c) = creds {
            extra.push(format!("--dest-creds={}:{}", c.user, c.password));
        }
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        skopeo_copy(&format!("oci:{}:{tag}", layout_dir.display()), &format!("docker://{target}"), &extra);
        target
    }

    /// The on-disk file holding blob `digest` (for tampering tests).
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = &digest[7..];
        self.dir.path().join("data/docker/registry/v2/blobs/sha256").join(&hex[..2]).join(hex).join("data")
    }
}

// ---------------------------------------------------------------------------------------------
// Fake registries that misbehave

/// Serves every connection with `respond` on a background thread until the test ends.
pub fn fake_server(respond: impl Fn(&mut TcpStream, &str) + Send + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut request = [0u8; 4096];
            let n = stream.read(&mut request).unwrap_or(0);
            let head = String::from_utf8_lossy(&request[..n]).into_owned();
            let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
            respond(&mut stream, &path);
        }
    });
    addr
}

// ---------------------------------------------------------------------------------------------
// Reading an EROFS image back

/// An EROFS image mounted read-only (loop), or extracted with fsck.erofs where mounting fails.
pub struct ErofsView {
    pub root: PathBuf,
    mounted: bool,
    _dir: tempfile::TempDir,
}

impl ErofsView {
    pub fn open(image: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "erofs", "-o", "loop,ro"])
            .arg(image)
            .arg(&root)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            run(Command::new("fsck.erofs").arg(format!("--extract={}", root.display())).arg("--overwrite").arg(image));
        }
        Self { root, mounted, _dir: dir }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
}

impl Drop for ErofsView {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg(&self.root).status();
        }
    }
}

/// Reads one extended attribute without following a final symlink.
pub fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 4096];
    // SAFETY: both strings are NUL-terminated and `buf` is a live buffer of the given length.
    let len = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    buf.truncate(usize::try_from(len).ok()?);
    Some(buf)
}

/// A directory outside any store that a successful escape would write into.
pub struct Outside {
    pub dir: tempfile::TempDir,
}

impl Outside {
    pub fn new() -> Self {
        Self { dir: tempfile::Builder::new().prefix("moat-escape-").tempdir_in("/tmp").unwrap() }
    }

    /// The directory as an absolute path without its leading '/'.
    pub fn rel(&self) -> String {
        self.dir.path().display().to_string().trim_start_matches('/').to_owned()
    }

    pub fn assert_untouched(&self) {
        let entries: Vec<_> = std::fs::read_dir(self.dir.path()).unwrap().collect();
        assert!(entries.is_empty(), "something escaped into {}: {entries:?}", self.dir.path().display());
    }
}

/// Everything a failed pull or import may leave: no references, no EROFS, empty tmp.
pub fn assert_store_clean(store_root: &Path) {
    let images = store_root.join("images");
    for sub in ["refs", "erofs", "tmp"] {
        let entries: Vec<_> = std::fs::read_dir(images.join(sub)).unwrap().collect();
        assert!(entries.is_empty(), "{sub} is not empty after a failure: {entries:?}");
    }
}
