//! Content digests (`sha256:<hex>`) and the streaming hashers that check them while data moves.

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    #[error("`{0}` is not a digest of the form sha256:<64 hex digits>")]
    Malformed(String),
    #[error("digest algorithm of `{0}` is not supported (only sha256 is)")]
    Unsupported(String),
}

/// A validated sha256 digest. Its hex part is safe to use as a file name.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest {
    hex: String,
}

impl Digest {
    const PREFIX: &'static str = "sha256:";

    /// The digest of a byte slice held in memory.
    pub fn of(bytes: &[u8]) -> Self {
        Self::from_hasher(Sha256::new_with_prefix(bytes))
    }

    fn from_hasher(hasher: Sha256) -> Self {
        Self { hex: hex::encode(hasher.finalize()) }
    }

    /// The 64 lowercase hex digits, without the algorithm prefix.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The first 12 hex digits, as image IDs are shown to people.
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }

    /// Parses a bare 64-digit hex string (as used in file names inside archives).
    pub fn from_hex(hex: &str) -> Result<Self, DigestError> {
        let valid = hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if valid {
            Ok(Self { hex: hex.to_owned() })
        } else {
            Err(DigestError::Malformed(hex.to_owned()))
        }
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some(("sha256", hex)) => Self::from_hex(hex).map_err(|_| DigestError::Malformed(s.to_owned())),
            Some((algorithm, _)) if !algorithm.is_empty() => Err(DigestError::Unsupported(s.to_owned())),
            _ => Err(DigestError::Malformed(s.to_owned())),
        }
    }
}

impl TryFrom<String> for Digest {
    type Error = DigestError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl TryFrom<&oci_spec::image::Digest> for Digest {
    type Error = DigestError;

    fn try_from(d: &oci_spec::image::Digest) -> Result<Self, Self::Error> {
        d.as_ref().parse()
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> Self {
        d.to_string()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", Self::PREFIX, self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Hashes and counts bytes as they pass, refusing to pass more than `limit`.
pub struct Meter {
    hasher: Sha256,
    count: u64,
    limit: u64,
}

impl Meter {
    pub fn new(limit: u64) -> Self {
        Self { hasher: Sha256::new(), count: 0, limit }
    }

    /// Accounts for `bytes`; fails once the running total passes the limit.
    pub fn update(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.count = self.count.saturating_add(bytes.len() as u64);
        if self.count > self.limit {
            return Err(io::Error::new(io::ErrorKind::FileTooLarge, LimitExceeded(self.limit)));
        }
        self.hasher.update(bytes);
        Ok(())
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn finish(self) -> (Digest, u64) {
        (Digest::from_hasher(self.hasher), self.count)
    }
}

/// The io error payload a [`Meter`] uses, so callers can tell a limit from a disk failure.
#[derive(Debug, thiserror::Error)]
#[error("more than {0} bytes")]
pub struct LimitExceeded(pub u64);

/// Returns the limit if `err` came from a [`Meter`].
pub fn limit_exceeded(err: &io::Error) -> Option<u64> {
    err.get_ref().and_then(|inner| inner.downcast_ref::<LimitExceeded>()).map(|l| l.0)
}

/// A reader that meters everything read through it.
pub struct MeteredReader<R> {
    inner: R,
    meter: Meter,
}

impl<R: Read> MeteredReader<R> {
    pub fn new(inner: R, limit: u64) -> Self {
        Self { inner, meter: Meter::new(limit) }
    }

    pub fn count(&self) -> u64 {
        self.meter.count()
    }

    /// Reads whatever is left (tar leaves trailing padding unread), then returns the digest.
    pub fn drain_and_finish(mut self) -> io::Result<(Digest, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok(self.meter.finish())
    }
}

impl<R: Read> Read for MeteredReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.meter.update(&buf[..n])?;
        Ok(n)
    }
}

/// A writer that meters everything written through it.
pub struct MeteredWriter<W> {
    inner: W,
    meter: Meter,
}

impl<W: Write> MeteredWriter<W> {
    pub fn new(inner: W, limit: u64) -> Self {
        Self { inner, meter: Meter::new(limit) }
    }

    pub fn finish(self) -> (W, Digest, u64) {
        let (digest, size) = self.meter.finish();
        (self.inner, digest, size)
    }
}

impl<W: Write> Write for MeteredWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.meter.update(buf)?;
        self.inner.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_and_prints_sha256() {
        let d: Digest = EMPTY.parse().expect("valid digest");
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(d, Digest::of(b""));
        assert_eq!(d.short(), "e3b0c44298fc");
    }

    #[test]
    fn rejects_bad_digests() {
        for bad in ["", "sha256:", "sha256:E3B0", "sha256:../../etc/passwd", "e3b0c442", &EMPTY.to_uppercase()] {
            assert!(bad.parse::<Digest>().is_err(), "{bad:?} accepted");
        }
        assert!(matches!("sha512:abcd".parse::<Digest>(), Err(DigestError::Unsupported(_))));
    }

    #[test]
    fn meter_hashes_and_enforces_limit() {
        let (d, n) = MeteredReader::new(&b"hello"[..], 5).drain_and_finish().expect("within limit");
        assert_eq!((d, n), (Digest::of(b"hello"), 5));

        let err = MeteredReader::new(&b"hello!"[..], 5).drain_and_finish().expect_err("limit must trip");
        assert_eq!(limit_exceeded(&err), Some(5));
    }
}
