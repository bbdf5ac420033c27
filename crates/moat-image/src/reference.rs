//! Image references (`busybox`, `127.0.0.1:5000/app:1`, `repo@sha256:…`) and platforms.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

pub use oci_client::Reference;

#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error("`{value}` is not a valid image reference: {reason}")]
    Invalid { value: String, reason: oci_client::ParseError },
    #[error("`{0}` is not a platform of the form os/arch[/variant]")]
    Platform(String),
}

/// Parses a reference; short names default to `docker.io/library/NAME:latest`.
pub fn parse(value: &str) -> Result<Reference, ReferenceError> {
    Reference::try_from(value).map_err(|reason| ReferenceError::Invalid { value: value.to_owned(), reason })
}

/// The reference as stored and shown: fully qualified, with registry and tag or digest.
pub fn normalized(reference: &Reference) -> String {
    reference.whole()
}

/// True when `registry` (host, optionally with port) names this machine's loopback.
pub fn is_loopback_registry(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => registry.rsplit_once(':').map_or(registry, |(host, _port)| host),
    };
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// An OS/architecture pair (with optional variant) an image index entry is chosen by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// Zones run x86-64 Linux guests.
    pub fn linux_amd64() -> Self {
        Self { os: "linux".into(), architecture: "amd64".into(), variant: None }
    }
}

impl Default for Platform {
    fn default() -> Self {
        Self::linux_amd64()
    }
}

impl FromStr for Platform {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        let valid_part = |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(valid_part) {
            return Err(ReferenceError::Platform(s.to_owned()));
        }
        Ok(Self {
            os: parts[0].to_owned(),
            architecture: parts[1].to_owned(),
            variant: parts.get(2).map(|v| (*v).to_owned()),
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_default_to_docker_library() {
        let r = parse("busybox").expect("valid");
        assert_eq!(normalized(&r), "docker.io/library/busybox:latest");
        let r = parse("127.0.0.1:5000/a/b:1").expect("valid");
        assert_eq!((r.registry(), r.repository(), r.tag()), ("127.0.0.1:5000", "a/b", Some("1")));
        assert!(parse("busybox/UPPER").is_err());
        assert!(parse("").is_err());
    }

    #[test]
    fn loopback_detection() {
        for yes in ["127.0.0.1:5000", "localhost", "localhost:80", "127.3.2.1", "[::1]:5000"] {
            assert!(is_loopback_registry(yes), "{yes}");
        }
        for no in ["docker.io", "10.0.0.1:5000", "localhost.example.com", "[::2]:1"] {
            assert!(!is_loopback_registry(no), "{no}");
        }
    }

    #[test]
    fn platforms_parse() {
        assert_eq!("linux/amd64".parse::<Platform>().expect("valid"), Platform::linux_amd64());
        let arm: Platform = "linux/arm64/v8".parse().expect("valid");
        assert_eq!(arm.to_string(), "linux/arm64/v8");
        for bad in ["linux", "linux/", "a/b/c/d", "linux/amd 64"] {
            assert!(bad.parse::<Platform>().is_err(), "{bad}");
        }
    }
}
