//! Walking the members of a tar stream with every extension header bounded. The tar crate's
//! own processing reads GNU long names and PAX headers whole into memory, however large the
//! header claims to be; here they are read raw and refused past a limit.

use std::io::{self, Read};

use tar::EntryType;

/// Largest GNU long-name/long-link or PAX extension header read. Threat: a layer declaring a
/// multi-gigabyte extension header that would be buffered in host memory.
pub const MAX_EXTENSION_BYTES: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    #[error("tar extension header of {0} bytes is over the {MAX_EXTENSION_BYTES}-byte limit")]
    ExtensionTooLarge(u64),
    #[error("GNU sparse files are not supported")]
    Sparse,
    #[error("PAX size records that differ from the header are not supported")]
    PaxSize,
    #[error("malformed PAX extension header")]
    Pax,
    #[error("extension headers at the end of the stream describe no member")]
    Dangling,
    #[error("reading the tar stream")]
    Read(#[source] io::Error),
}

/// A member's names and PAX records, with extension headers applied.
#[derive(Debug, Default)]
pub struct Member {
    pub path: Vec<u8>,
    pub link: Option<Vec<u8>>,
    /// PAX records as (key, value); keys that are not UTF-8 are dropped.
    pub pax: Vec<(String, Vec<u8>)>,
}

#[derive(Default)]
struct Pending {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax: Option<Vec<u8>>,
}

fn read_extension<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Vec<u8>, MemberError> {
    let size = entry.size();
    if size > MAX_EXTENSION_BYTES {
        return Err(MemberError::ExtensionTooLarge(size));
    }
    let mut bytes = Vec::new();
    entry.take(MAX_EXTENSION_BYTES).read_to_end(&mut bytes).map_err(MemberError::Read)?;
    Ok(bytes)
}

fn without_nul(mut bytes: Vec<u8>) -> Vec<u8> {
    if let Some(end) = bytes.iter().position(|&b| b == 0) {
        bytes.truncate(end);
    }
    bytes
}

fn pax_records(bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>, MemberError> {
    let mut records = Vec::new();
    for record in tar::PaxExtensions::new(bytes) {
        let record = record.map_err(|_| MemberError::Pax)?;
        if let Ok(key) = record.key() {
            records.push((key.to_owned(), record.value_bytes().to_vec()));
        }
    }
    Ok(records)
}

/// Calls `visit` for each member that is not itself an extension header, in stream order.
pub fn walk<R: Read, E: From<MemberError>>(
    archive: &mut tar::Archive<R>,
    mut visit: impl FnMut(Member, &mut tar::Entry<'_, R>) -> Result<(), E>,
) -> Result<(), E> {
    let mut pending = Pending::default();
    for entry in archive.entries().map_err(MemberError::Read)?.raw(true) {
        let mut entry = entry.map_err(MemberError::Read)?;
        match entry.header().entry_type() {
            EntryType::GNULongName => pending.long_name = Some(without_nul(read_extension(&mut entry)?)),
            EntryType::GNULongLink => pending.long_link = Some(without_nul(read_extension(&mut entry)?)),
            EntryType::XHeader => pending.pax = Some(read_extension(&mut entry)?),
            EntryType::XGlobalHeader => drop(read_extension(&mut entry)?),
            EntryType::GNUSparse => return Err(MemberError::Sparse.into()),
            _ => {
                let done = std::mem::take(&mut pending);
                let pax = done.pax.as_deref().map(pax_records).transpose()?.unwrap_or_default();
                let record = |key: &str| pax.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
                if let Some(size) = record("size") {
                    if std::str::from_utf8(&size).ok().and_then(|s| s.parse::<u64>().ok()) != Some(entry.size()) {
                        return Err(MemberError::PaxSize.into());
                    }
                }
                let member = Member {
                    path: record("path").or(done.long_name).unwrap_or_else(|| entry.header().path_bytes().into_owned()),
                    link: record("linkpath")
                        .or(done.long_link)
                        .or_else(|| entry.header().link_name_bytes().map(|l| l.into_owned())),
                    pax,
                };
                visit(member, &mut entry)?;
            }
        }
    }
    if pending.long_name.is_some() || pending.long_link.is_some() || pending.pax.is_some() {
        return Err(MemberError::Dangling.into());
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn header(name: &str, kind: EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h.as_mut_bytes()[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        h
    }

    /// A tar stream of `parts`, each padded, with the end-of-archive blocks.
    pub(crate) fn stream(parts: &[(tar::Header, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (h, data) in parts {
            out.extend_from_slice(h.as_bytes());
            out.extend_from_slice(data);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
        out.resize(out.len() + 1024, 0);
        out
    }

    fn names(bytes: &[u8]) -> Result<Vec<Vec<u8>>, MemberError> {
        let mut archive = tar::Archive::new(bytes);
        let mut seen = Vec::new();
        walk(&mut archive, |m, _| {
            seen.push(m.path);
            Ok::<_, MemberError>(())
        })?;
        Ok(seen)
    }

    #[test]
    fn applies_long_names_and_pax_paths() {
        let long = "d/".repeat(80) + "file";
        let pax = b"21 path=pax/override\n";
        let bytes = stream(&[
            (header("././@LongLink", EntryType::GNULongName, long.len() as u64 + 1), format!("{long}\0").as_bytes()),
            (header("short", EntryType::Regular, 0), b""),
            (header("././@PaxHeader", EntryType::XHeader, pax.len() as u64), pax),
            (header("ignored", EntryType::Regular, 0), b""),
        ]);
        let seen = names(&bytes).expect("valid stream");
        assert_eq!(seen[0], long.as_bytes());
        assert_eq!(seen[1], b"pax/override");
    }

    #[test]
    fn refuses_huge_extension_headers_before_reading_them() {
        let mut h = header("././@PaxHeader", EntryType::XHeader, 8 << 30);
        h.set_cksum();
        let mut bytes = h.as_bytes().to_vec();
        bytes.resize(4096, b'x');
        assert!(matches!(names(&bytes), Err(MemberError::ExtensionTooLarge(_))));
    }
}
