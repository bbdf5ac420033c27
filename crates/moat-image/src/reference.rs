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
///
/// The grammar is distribution's, as `Reference::try_from` accepts it, checked by hand: that
/// function compiles a large regular expression first, which cost every command naming an image
/// about 115 ms. The tests hold the two to the same answers.
pub fn parse(value: &str) -> Result<Reference, ReferenceError> {
    grammar::parse(value).map_err(|reason| ReferenceError::Invalid { value: value.to_owned(), reason })
}

mod grammar {
    use oci_client::{ParseError, Reference};

    const NAME_TOTAL_LENGTH_MAX: usize = 255;
    const TAG_MAX: usize = 128;

    pub fn parse(value: &str) -> Result<Reference, ParseError> {
        if value.is_empty() {
            return Err(ParseError::NameEmpty);
        }
        let (rest, digest) = match value.split_once('@') {
            Some((rest, digest)) => (rest, Some(digest)),
            None => (value, None),
        };
        let (name, tag) = match rest.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => (name, Some(tag)),
            _ => (rest, None),
        };
        let valid = is_name(name) && tag.is_none_or(is_tag) && digest.is_none_or(is_digest_form);
        if !valid {
            return Err(ParseError::ReferenceInvalidFormat);
        }
        let (registry, repository) = split_domain(name);
        if repository.len() > NAME_TOTAL_LENGTH_MAX {
            return Err(ParseError::NameTooLong);
        }
        if let Some(digest) = digest {
            check_digest_length(digest)?;
        }
        Ok(match (tag, digest) {
            (Some(tag), Some(digest)) => Reference::with_tag_and_digest(registry, repository, tag.into(), digest.into()),
            (None, Some(digest)) => Reference::with_digest(registry, repository, digest.into()),
            (tag, None) => Reference::with_tag(registry, repository, tag.unwrap_or("latest").into()),
        })
    }

    /// `[domain/]path`: a first component that is a host (with an optional port) may be the
    /// domain; every other component is a path component.
    fn is_name(name: &str) -> bool {
        let as_path = || name.split('/').all(is_path_component);
        match name.split_once('/') {
            Some((domain, path)) if is_domain(domain) && path.split('/').all(is_path_component) => true,
            _ => as_path(),
        }
    }

    /// Lowercase letters and digits in runs joined by `.`, `_`, `__` or any number of `-`.
    fn is_path_component(component: &str) -> bool {
        let bytes = component.as_bytes();
        let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        if !bytes.first().is_some_and(alnum) || !bytes.last().is_some_and(alnum) {
            return false;
        }
        bytes
            .split(alnum)
            .filter(|separator| !separator.is_empty())
            .all(|separator| matches!(separator, b"." | b"_" | b"__") || separator.iter().all(|&b| b == b'-'))
    }

    /// `label(.label)*(:port)?`, labels of letters, digits and inner `-`.
    fn is_domain(domain: &str) -> bool {
        let (host, port) = match domain.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (domain, None),
        };
        let is_label = |label: &str| {
            let bytes = label.as_bytes();
            !bytes.is_empty()
                && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
                && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
                && bytes.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-')
        };
        host.split('.').all(is_label) && port.is_none_or(|port| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
    }

    /// `[\w][\w.-]{0,127}`.
    fn is_tag(tag: &str) -> bool {
        let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
        let bytes = tag.as_bytes();
        bytes.len() <= TAG_MAX && bytes.first().is_some_and(|&b| word(b)) && bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-')
    }

    /// `algorithm:hex` with 32 or more hex digits; the algorithm's components start with a letter.
    fn is_digest_form(digest: &str) -> bool {
        let Some((algorithm, hex)) = digest.split_once(':') else { return false };
        let component = |c: &str| c.as_bytes().first().is_some_and(u8::is_ascii_alphabetic) && c.bytes().all(|b| b.is_ascii_alphanumeric());
        hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()) && algorithm.split(['-', '_', '+', '.']).all(component)
    }

    fn check_digest_length(digest: &str) -> Result<(), ParseError> {
        let (algorithm, hex) = digest.split_once(':').ok_or(ParseError::DigestInvalidFormat)?;
        let expected = match algorithm {
            "sha256" => 64,
            "sha384" => 96,
            "sha512" => 128,
            _ => return Err(ParseError::DigestUnsupported),
        };
        if hex.len() == expected {
            Ok(())
        } else {
            Err(ParseError::DigestInvalidLength)
        }
    }

    /// Docker's normalisation: a first component with a `.` or `:`, or `localhost`, is the
    /// registry; otherwise the registry is Docker Hub, whose one-component names are `library/`'s.
    fn split_domain(name: &str) -> (String, String) {
        let (mut domain, mut remainder) = match name.split_once('/') {
            Some((left, right)) if left.contains(['.', ':']) || left == "localhost" => (left.to_string(), right.to_string()),
            _ => ("docker.io".to_string(), name.to_string()),
        };
        if domain == "index.docker.io" {
            domain = "docker.io".into();
        }
        if domain == "docker.io" && !remainder.contains('/') {
            remainder = format!("library/{remainder}");
        }
        (domain, remainder)
    }
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

    /// The hand-written grammar against `Reference::try_from`'s regular expression.
    fn same_as_the_regex(value: &str) {
        let ours = grammar::parse(value).map(|r| r.whole());
        let theirs = Reference::try_from(value).map(|r| r.whole());
        assert_eq!(ours, theirs, "{value:?}");
    }

    #[test]
    fn the_grammar_agrees_with_the_regex() {
        let sha = "a".repeat(64);
        let cases = [
            "busybox", "busybox:1.36", "library/busybox", "docker.io/busybox", "index.docker.io/busybox", "docker.io/library/busybox:latest",
            "localhost/app", "localhost:5000/app:1", "127.0.0.1:5000/a/b:1", "test.com:5000", "test.com:tag", "test.com/repo:tag",
            "a.b.c/d/e/f", "UPPER/lower", "Foo/bar", "busybox/UPPER", "a__b", "a___b", "a--b", "a-", "-a", "a..b", "a._b", "a/b/", "/a",
            "a//b", "a:b:c", "a:", ":a", "a@", "a@b", "host:/x", "host:abc/x", "ho_st.com/x", "-host.com/x", "host-.com/x", "h.com:1:2/x",
            "a:.tag", "a:_tag", "a:tag-1.2_3", "é", "a/b:c/d", "x.y/z:", "@sha256:abc", "a b",
        ];
        for case in cases {
            same_as_the_regex(case);
        }
        for digest in [format!("sha256:{sha}"), format!("sha256:{}", &sha[..40]), format!("sha512:{sha}"), format!("md5:{sha}"), format!("sha256+x.y:{sha}"), "sha256:xyz".into(), format!("sha256:{sha}@x")] {
            same_as_the_regex(&format!("busybox@{digest}"));
            same_as_the_regex(&format!("reg.io:5000/a/b:t@{digest}"));
        }
        // The one difference: tags are ASCII, as in Docker's grammar (the regex's `\w` is Unicode).
        assert!(grammar::parse("a:tagé").is_err() && Reference::try_from("a:tagé").is_ok());
        same_as_the_regex(&format!("a:{}", "t".repeat(128)));
        same_as_the_regex(&format!("a:{}", "t".repeat(129)));
        same_as_the_regex(&"a".repeat(246));
        same_as_the_regex(&"a".repeat(247));
    }

    proptest::proptest! {
        #[test]
        fn random_references_agree_with_the_regex(value in "[a-cA-C0-9._:/@-]{1,24}") {
            same_as_the_regex(&value);
        }

        #[test]
        fn random_digest_references_agree_with_the_regex(name in "[a-c0-9._/:-]{1,12}", algorithm in "[a-z0-9+._-]{1,8}", hex in "[0-9a-fA-Fg]{30,66}") {
            same_as_the_regex(&format!("{name}@{algorithm}:{hex}"));
        }
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
