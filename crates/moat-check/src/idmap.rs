//! Parser for `/proc/self/uid_map` and `gid_map`: lines of `inside outside count`.

/// The kernel accepts at most 340 extents per map (5.x and later); more means the file is
/// not what it claims to be.
pub const MAX_EXTENTS: usize = 340;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMap {
    pub extents: Vec<Extent>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdMapError {
    #[error("id map line {line} is malformed: {text:?}")]
    Malformed { line: usize, text: String },
    #[error("id map line {line} overflows: {inside}+{count} or {outside}+{count} exceeds 2^32")]
    Overflow { line: usize, inside: u32, outside: u32, count: u32 },
    #[error("id map has more than {MAX_EXTENTS} extents")]
    TooMany,
}

impl IdMap {
    /// The identity map over all 2^32-1 ids: what the initial user namespace shows.
    pub fn is_full_identity(&self) -> bool {
        matches!(self.extents.as_slice(), [Extent { inside: 0, outside: 0, count: u32::MAX }])
    }

    /// The id in the parent namespace that `inside` maps to, if it is mapped.
    pub fn to_outside(&self, inside: u32) -> Option<u32> {
        self.extents.iter().find_map(|e| {
            let offset = inside.checked_sub(e.inside)?;
            (offset < e.count).then(|| e.outside + offset)
        })
    }

    pub fn mapped_ids(&self) -> u64 {
        self.extents.iter().map(|e| u64::from(e.count)).sum()
    }

    pub fn describe(&self) -> String {
        if self.extents.is_empty() {
            return "empty (no ids mapped)".to_string();
        }
        self.extents.iter().map(|e| format!("{}->{} x{}", e.inside, e.outside, e.count)).collect::<Vec<_>>().join(", ")
    }
}

pub fn parse(text: &str) -> Result<IdMap, IdMapError> {
    let mut extents = Vec::new();
    for (index, raw) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let line = index + 1;
        if extents.len() == MAX_EXTENTS {
            return Err(IdMapError::TooMany);
        }
        let malformed = || IdMapError::Malformed { line, text: raw.chars().take(80).collect() };
        let numbers: Vec<u32> = raw.split_whitespace().map(str::parse).collect::<Result<_, _>>().map_err(|_| malformed())?;
        let [inside, outside, count] = numbers[..] else { return Err(malformed()) };
        let fits = |start: u32| u64::from(start) + u64::from(count) <= u64::from(u32::MAX);
        if !fits(inside) || !fits(outside) {
            return Err(IdMapError::Overflow { line, inside, outside, count });
        }
        extents.push(Extent { inside, outside, count });
    }
    Ok(IdMap { extents })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_namespace_is_full_identity() {
        let map = parse("         0          0 4294967295\n").expect("parse");
        assert!(map.is_full_identity());
        assert_eq!(map.to_outside(0), Some(0));
        assert_eq!(map.to_outside(u32::MAX), None, "4294967295 itself is never mapped");
    }

    #[test]
    fn container_map_shifts_root() {
        let map = parse("0 100000 65536\n").expect("parse");
        assert!(!map.is_full_identity());
        assert_eq!(map.to_outside(0), Some(100_000));
        assert_eq!(map.to_outside(65_535), Some(165_535));
        assert_eq!(map.to_outside(65_536), None);
        assert_eq!(map.mapped_ids(), 65_536);
    }

    #[test]
    fn several_extents_and_root_mapped_to_root() {
        let map = parse("0 0 1\n1 100000 65535\n").expect("parse");
        assert_eq!(map.to_outside(0), Some(0));
        assert_eq!(map.to_outside(2), Some(100_001));
        assert_eq!(map.describe(), "0->0 x1, 1->100000 x65535");
    }

    #[test]
    fn empty_map_maps_nothing() {
        let map = parse("").expect("parse");
        assert_eq!(map.to_outside(0), None);
        assert_eq!(map.describe(), "empty (no ids mapped)");
    }

    #[test]
    fn rejects_malformed_and_overflowing_lines() {
        assert!(matches!(parse("0 100000\n"), Err(IdMapError::Malformed { line: 1, .. })));
        assert!(matches!(parse("0 0 1\n0 x 1\n"), Err(IdMapError::Malformed { line: 2, .. })));
        assert!(matches!(parse("-1 0 1\n"), Err(IdMapError::Malformed { .. })));
        assert!(matches!(parse("1 0 4294967295\n"), Err(IdMapError::Overflow { line: 1, .. })));
        let many = "0 0 1\n".repeat(MAX_EXTENTS + 1);
        assert_eq!(parse(&many), Err(IdMapError::TooMany));
    }
}
