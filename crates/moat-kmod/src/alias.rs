//! `modules.alias`: which modules serve a name the kernel requests (`rtnl-link-bridge`,
//! `net-pf-16-proto-12`, `char-major-10-200`, `fs-ext4` …). Patterns are shell globs.

use crate::KmodError;

/// Longest module request accepted. The kernel's own requests are short, but part of one can
/// come from a container (`ip link add x type NAME` asks for `rtnl-link-NAME`).
pub const MAX_REQUEST_LEN: usize = 255;

/// Parsed `modules.alias`: (normalized pattern, module name) in file order.
pub struct Aliases {
    entries: Vec<(String, String)>,
}

impl Aliases {
    /// Lines are `alias PATTERN MODULE`; blank lines and `#` comments are skipped.
    pub fn parse(text: &str) -> Result<Self, KmodError> {
        let mut entries = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let malformed = || KmodError::Malformed { file: "modules.alias", line: index + 1 };
            let mut words = line.split_whitespace();
            let (Some("alias"), Some(pattern), Some(module), None) = (words.next(), words.next(), words.next(), words.next()) else {
                return Err(malformed());
            };
            entries.push((normalize(pattern), module.replace('-', "_")));
        }
        Ok(Self { entries })
    }

    /// The modules whose alias matches `request`, each once, in file order.
    pub fn resolve(&self, request: &str) -> Vec<&str> {
        let request = normalize(request);
        let mut found: Vec<&str> = Vec::new();
        for (pattern, module) in &self.entries {
            if glob_match(pattern.as_bytes(), request.as_bytes()) && !found.contains(&module.as_str()) {
                found.push(module);
            }
        }
        found
    }
}

/// Refuse a request that is empty, too long, or could name a path.
pub fn check_request(request: &str) -> Result<(), KmodError> {
    let plain = !request.is_empty() && request.len() <= MAX_REQUEST_LEN && !request.starts_with('-') && !request.contains(['/', '\0']);
    if plain {
        Ok(())
    } else {
        Err(KmodError::BadRequest(request.chars().take(MAX_REQUEST_LEN).collect()))
    }
}

/// kmod treats `-` and `_` alike in names, except inside a `[...]` class of a pattern.
fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_class = false;
    for c in name.chars() {
        match c {
            '[' => in_class = true,
            ']' => in_class = false,
            '-' if !in_class => {
                out.push('_');
                continue;
            }
            _ => {}
        }
        out.push(c);
    }
    out
}

/// Shell glob match (`*`, `?`, `[abc]`, `[a-z]`, `[!x]`) in O(pattern × text): on a mismatch,
/// only the most recent `*` is retried one byte further.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        let step = match pattern.get(p) {
            Some(b'*') => {
                star = Some((p + 1, t));
                p += 1;
                continue;
            }
            Some(b'?') => Some(p + 1),
            Some(b'[') if has_class_end(pattern, p) => class_match(pattern, p, text[t]),
            Some(&c) if c == text[t] => Some(p + 1),
            _ => None,
        };
        match (step, star) {
            (Some(next), _) => {
                p = next;
                t += 1;
            }
            (None, Some((after_star, from))) => {
                p = after_star;
                t = from + 1;
                star = Some((after_star, from + 1));
            }
            (None, None) => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Whether the `[` at `pattern[open]` is closed; an unclosed one is a literal.
fn has_class_end(pattern: &[u8], open: usize) -> bool {
    let mut first = open + 1;
    if matches!(pattern.get(first), Some(b'!' | b'^')) {
        first += 1;
    }
    pattern.get(first + 1..).is_some_and(|rest| rest.contains(&b']'))
}

/// Match `c` against the class opening at `pattern[open]`; the index past the class if it
/// matches.
fn class_match(pattern: &[u8], open: usize, c: u8) -> Option<usize> {
    let mut i = open + 1;
    let negated = matches!(pattern.get(i), Some(b'!' | b'^'));
    if negated {
        i += 1;
    }
    let first = i;
    let mut matched = false;
    loop {
        let &b = pattern.get(i)?;
        if b == b']' && i > first {
            break;
        }
        if pattern.get(i + 1) == Some(&b'-') && pattern.get(i + 2).is_some_and(|&e| e != b']') {
            let end = pattern[i + 2];
            matched |= (b..=end).contains(&c);
            i += 3;
        } else {
            matched |= b == c;
            i += 1;
        }
    }
    (matched != negated).then_some(i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALIAS: &str = "\
# Aliases extracted from modules themselves.
alias rtnl-link-bridge bridge
alias char-major-10-200 tun
alias net-pf-16-proto-12 nfnetlink
alias nfnetlink-subsys-10 nf_tables
alias fs-fuse fuse
alias pci:v00001AF4d00001000sv*sd*bc*sc*i* virtio_pci
alias of:N*T*Cvirtio,mmio* virtio_mmio
alias crypto-crc32c-[0-9] libcrc32c
alias rtnl-link-veth veth
alias net_pf_16_proto_12 nfnetlink
";

    #[test]
    fn requests_resolve_to_their_modules() {
        let aliases = Aliases::parse(ALIAS).unwrap();
        for (request, module) in [
            ("rtnl-link-bridge", "bridge"),
            ("rtnl-link-veth", "veth"),
            ("char-major-10-200", "tun"),
            ("nfnetlink-subsys-10", "nf_tables"),
            ("pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00", "virtio_pci"),
            ("of:NvirtioTmmioCvirtio,mmio", "virtio_mmio"),
            ("crypto-crc32c-7", "libcrc32c"),
        ] {
            assert_eq!(aliases.resolve(request), [module], "{request}");
        }
        assert_eq!(aliases.resolve("net-pf-16-proto-12"), ["nfnetlink"], "dash and underscore match, once");
        assert!(aliases.resolve("rtnl-link-bridgex").is_empty());
        assert!(aliases.resolve("crypto-crc32c-x").is_empty());
        assert!(aliases.resolve("").is_empty());
    }

    #[test]
    fn globs() {
        for (pattern, text, expected) in [
            ("a*b", "ab", true),
            ("a*b", "axxb", true),
            ("a*b", "axxbc", false),
            ("*", "", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("[!a]x", "bx", true),
            ("[!a]x", "ax", false),
            ("[]]", "]", true),
            ("[a", "[a", true),
            ("x[0-9]*y", "x5zzy", true),
        ] {
            assert_eq!(glob_match(pattern.as_bytes(), text.as_bytes()), expected, "{pattern} {text}");
        }
        // Many stars against a long miss stay quick: each star is retried, never nested.
        let pattern = "*a".repeat(50);
        assert!(!glob_match(pattern.as_bytes(), "b".repeat(MAX_REQUEST_LEN).as_bytes()));
    }

    #[test]
    fn malformed_lines_are_refused() {
        for bad in ["alias onlyone", "options x y", "alias a b c"] {
            assert!(matches!(Aliases::parse(bad), Err(KmodError::Malformed { line: 1, .. })), "{bad}");
        }
    }

    #[test]
    fn requests_are_plain_bounded_names() {
        assert!(check_request("rtnl-link-bridge").is_ok());
        for bad in ["", "../../tmp/x", "a/b", "-r", &"x".repeat(MAX_REQUEST_LEN + 1)] {
            assert!(matches!(check_request(bad), Err(KmodError::BadRequest(_))), "{bad:?}");
        }
    }
}
