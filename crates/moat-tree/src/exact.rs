//! A reader of exactly the bytes a tar header announced: a source that ends early is an error
//! rather than a short entry (the tar crate pads an entry to what it copied, not to what its
//! header says, so a short one misaligns every entry after it), and a source with more is cut.

use std::io::{self, Read};

pub struct Exact<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Exact<R> {
    pub fn new(inner: R, len: u64) -> Self {
        Self { inner, left: len }
    }
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let room = usize::try_from(self.left).unwrap_or(usize::MAX).min(buf.len());
        let n = self.inner.read(&mut buf[..room])?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the data ended before the length its header announced"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(source: &[u8], len: u64) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        Exact::new(source, len).read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn exactly_the_announced_bytes() {
        assert_eq!(read_all(b"abcdef", 6).unwrap(), b"abcdef");
        assert_eq!(read_all(b"abcdef", 3).unwrap(), b"abc", "a source that grew is cut");
        assert_eq!(read_all(b"ab", 3).unwrap_err().kind(), io::ErrorKind::UnexpectedEof, "one that shrank is an error");
        assert_eq!(read_all(b"", 0).unwrap(), b"");
    }
}
