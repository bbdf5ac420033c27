//! The runtime handler's options: a JSON file named by containerd's runtime options for
//! shims other than runc's (`runtimeoptions.v1.Options`, whose `ConfigPath` is set by the CRI
//! runtime's `options = { ConfigPath = "…" }` or `ctr run --runtime-config-path`).

use std::path::{Path, PathBuf};

use containerd_shim::protos::protobuf::rt::WireType;
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::CodedInputStream;
use serde::Deserialize;

/// The type containerd gives the options of a runtime that is not runc.
const RUNTIME_OPTIONS_TYPE: &str = "runtimeoptions.v1.Options";
/// `config_path`'s field number in `runtimeoptions.v1.Options`.
const CONFIG_PATH_FIELD: u32 = 2;
/// Largest options file read: a few settings.
const MAX_OPTIONS_BYTES: u64 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    #[error("the task's runtime options (runtimeoptions.v1.Options) do not decode: {0}")]
    Decode(String),
    #[error("reading the runtime options file {path}: {err}")]
    Read { path: PathBuf, err: std::io::Error },
    #[error("the runtime options file {path}: {err}")]
    Parse { path: PathBuf, err: serde_json::Error },
}

/// What a runtime handler may change.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShimOptions {
    /// Whether an unprivileged container whose spec has no user namespace gets moat's (as
    /// `moat run` gives one); `false` runs such specs as given, as runc would.
    pub user_namespace: bool,
}

impl Default for ShimOptions {
    fn default() -> Self {
        Self { user_namespace: true }
    }
}

impl ShimOptions {
    /// The options a task was created with: the defaults without a file.
    pub fn of_task(options: Option<&Any>) -> Result<Self, OptionsError> {
        match options.filter(|any| any.type_url.trim_start_matches("type.googleapis.com/") == RUNTIME_OPTIONS_TYPE).map(|any| config_path(&any.value)).transpose()?.flatten() {
            Some(path) => Self::read(Path::new(&path)),
            None => Ok(Self::default()),
        }
    }

    fn read(path: &Path) -> Result<Self, OptionsError> {
        let text = moat_zone::state::read_bounded(path, MAX_OPTIONS_BYTES).map_err(|err| OptionsError::Read { path: path.into(), err })?;
        serde_json::from_str(&text).map_err(|err| OptionsError::Parse { path: path.into(), err })
    }
}

/// The `config_path` of an encoded `runtimeoptions.v1.Options`, if set.
fn config_path(encoded: &[u8]) -> Result<Option<String>, OptionsError> {
    let decode = |err: containerd_shim::protos::protobuf::Error| OptionsError::Decode(err.to_string());
    let mut input = CodedInputStream::from_bytes(encoded);
    let mut path = None;
    while let Some(tag) = input.read_raw_tag_or_eof().map_err(decode)? {
        let wire_type = WireType::new(tag & 7).ok_or_else(|| OptionsError::Decode(format!("wire type {}", tag & 7)))?;
        if tag >> 3 == CONFIG_PATH_FIELD && wire_type == WireType::LengthDelimited {
            path = Some(input.read_string().map_err(decode)?);
        } else {
            input.skip_field(wire_type).map_err(decode)?;
        }
    }
    Ok(path.filter(|p| !p.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `runtimeoptions.v1.Options { type_url, config_path }`, as containerd encodes it.
    fn encoded(type_url: &str, config_path: &str) -> Vec<u8> {
        let mut bytes = Vec::new();
        for (field, text) in [(1u8, type_url), (2, config_path)] {
            bytes.push(field << 3 | 2);
            bytes.push(u8::try_from(text.len()).unwrap());
            bytes.extend_from_slice(text.as_bytes());
        }
        bytes
    }

    fn any(value: Vec<u8>) -> Any {
        Any { type_url: RUNTIME_OPTIONS_TYPE.into(), value, ..Default::default() }
    }

    #[test]
    fn the_file_containerd_names_sets_the_options() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("moat.json");
        std::fs::write(&file, r#"{"user_namespace": false}"#).unwrap();
        let options = any(encoded("", file.to_str().unwrap()));
        assert_eq!(ShimOptions::of_task(Some(&options)).unwrap(), ShimOptions { user_namespace: false });
        std::fs::write(&file, "{}").unwrap();
        assert_eq!(ShimOptions::of_task(Some(&options)).unwrap(), ShimOptions::default());
    }

    #[test]
    fn without_options_or_a_path_the_defaults_hold() {
        assert_eq!(ShimOptions::of_task(None).unwrap(), ShimOptions::default());
        assert!(ShimOptions::default().user_namespace);
        assert_eq!(ShimOptions::of_task(Some(&any(encoded("x", "")))).unwrap(), ShimOptions::default());
        let runc = Any { type_url: "containerd.runc.v1.Options".into(), value: vec![0xff], ..Default::default() };
        assert_eq!(ShimOptions::of_task(Some(&runc)).unwrap(), ShimOptions::default(), "another runtime's options are not ours");
    }

    #[test]
    fn bad_options_are_one_typed_error() {
        assert!(matches!(ShimOptions::of_task(Some(&any(vec![0x12, 0x7f]))), Err(OptionsError::Decode(_))), "a length past the end");
        assert!(matches!(ShimOptions::of_task(Some(&any(encoded("", "/no/such/file")))), Err(OptionsError::Read { .. })));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("moat.json");
        for bad in [r#"{"user_namespace": "no"}"#, r#"{"usernamespace": false}"#, "not json"] {
            std::fs::write(&file, bad).unwrap();
            assert!(matches!(ShimOptions::of_task(Some(&any(encoded("", file.to_str().unwrap())))), Err(OptionsError::Parse { .. })), "{bad}");
        }
        std::fs::write(&file, vec![b' '; 5000]).unwrap();
        assert!(matches!(ShimOptions::of_task(Some(&any(encoded("", file.to_str().unwrap())))), Err(OptionsError::Read { .. })), "too large");
    }
}
