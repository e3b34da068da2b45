//! A small, forgiving parser for RFC 822-style header blocks, as found in
//! `message/delivery-status` and `message/feedback-report` parts.

/// Normalises CRLF and CR-only line endings to LF.
pub fn normalize_newlines(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b == b'\r' {
            out.push(b'\n');
            if raw.get(i + 1) == Some(&b'\n') {
                i += 1;
            }
        } else {
            out.push(b);
        }
        i += 1;
    }
    out
}

/// The start of `raw` that holds at most `max_bytes` bytes and
/// `max_lines` lines: what the parser examines of a message.
pub fn clip(raw: &[u8], max_bytes: usize, max_lines: usize) -> &[u8] {
    let raw = &raw[..raw.len().min(max_bytes)];
    match raw
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'\n')
        .nth(max_lines.saturating_sub(1))
    {
        Some((i, _)) => &raw[..=i],
        None => raw,
    }
}

/// The largest char boundary of `s` at or before `i` (`s.len()` at most).
pub fn floor_char(s: &str, i: usize) -> usize {
    let mut i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// One parsed block: (lower-cased name, unfolded trimmed value) in order.
pub type Block = Vec<(String, String)>;

/// Splits text on blank lines and parses each chunk as a header block.
/// Lines that are not `Name: value` nor continuations are ignored.
pub fn parse_blocks(text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut cur: Block = Vec::new();
    for line in text.split('\n') {
        if line.trim().is_empty() {
            if !cur.is_empty() {
                blocks.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(last) = cur.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = split_field(line) {
            cur.push((name, value.trim().to_string()));
        }
    }
    if !cur.is_empty() {
        blocks.push(cur);
    }
    blocks
}

/// Splits `Name: value` when `Name` is a plausible field name.
pub fn split_field(line: &str) -> Option<(String, &str)> {
    let colon = line.find(':')?;
    let name = &line[..colon];
    if name.is_empty()
        || name.len() > 40
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return None;
    }
    Some((name.to_ascii_lowercase(), &line[colon + 1..]))
}

/// First value of a field in a block.
pub fn get<'a>(block: &'a Block, name: &str) -> Option<&'a str> {
    block
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// Strips an RFC 3464 type prefix (`rfc822;`, `smtp;`, `dns;`) from a value.
pub fn strip_type(value: &str) -> &str {
    match value.find(';') {
        Some(i)
            if i < 20
                && value[..i]
                    .trim()
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-') =>
        {
            value[i + 1..].trim()
        }
        _ => value.trim(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newlines() {
        for (inp, out) in [
            ("a\r\nb", "a\nb"),
            ("a\rb\r", "a\nb\n"),
            ("a\nb", "a\nb"),
            ("\r\r\n", "\n\n"),
        ] {
            assert_eq!(normalize_newlines(inp.as_bytes()), out.as_bytes());
        }
    }

    #[test]
    fn blocks() {
        let b = parse_blocks("Reporting-MTA: dns; x\n\nFinal-Recipient: rfc822; a@b.c\nDiagnostic-Code: smtp; 550\n  5.1.1 nope\n");
        assert_eq!(b.len(), 2);
        assert_eq!(get(&b[1], "diagnostic-code"), Some("smtp; 550 5.1.1 nope"));
        assert_eq!(strip_type("rfc822; a@b.c"), "a@b.c");
        assert_eq!(strip_type("a@b.c"), "a@b.c");
    }

    #[test]
    fn clipping() {
        assert_eq!(clip(b"a\nb\nc\n", 100, 2), b"a\nb\n");
        assert_eq!(clip(b"a\nb\nc\n", 3, 100), b"a\nb");
        assert_eq!(clip(b"abc", 100, 1), b"abc");
        assert_eq!(floor_char("aé", 2), 1);
        assert_eq!(floor_char("aé", 9), 3);
    }
}
