//! Streaming dot-stuffing and line-ending normalisation for the DATA phase.
//!
//! The message arrives as several slices (per-copy headers, then the shared
//! body); the line state is carried across slices so a `.` that begins a line
//! is doubled even when it is the first byte of a slice. Bare LF becomes CRLF;
//! a CR LF pair split across two slices is recognised. A bare CR (not followed
//! by LF) is passed through unchanged.

/// Incremental encoder. Feed it with [`DotStuffer::push`], then call
/// [`DotStuffer::finish`] once to get the terminating sequence.
#[derive(Debug, Clone)]
pub struct DotStuffer {
    /// The next byte begins a line.
    at_line_start: bool,
    /// The last byte seen was CR (so an LF that follows ends a CRLF pair).
    last_was_cr: bool,
}

impl Default for DotStuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl DotStuffer {
    pub fn new() -> Self {
        DotStuffer {
            at_line_start: true,
            last_was_cr: false,
        }
    }

    /// Appends the encoded form of `input` to `out`. `out` grows by at most
    /// `2 * input.len()` bytes.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let mut rest = input;
        while let Some(&first) = rest.first() {
            if self.at_line_start && first == b'.' {
                out.push(b'.');
            }
            match rest.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    let cr_before = if i > 0 {
                        rest[i - 1] == b'\r'
                    } else {
                        self.last_was_cr
                    };
                    out.extend_from_slice(&rest[..i]);
                    if !cr_before {
                        out.push(b'\r');
                    }
                    out.push(b'\n');
                    self.at_line_start = true;
                    self.last_was_cr = false;
                    rest = &rest[i + 1..];
                }
                None => {
                    out.extend_from_slice(rest);
                    self.at_line_start = false;
                    self.last_was_cr = rest.last() == Some(&b'\r');
                    rest = &[];
                }
            }
        }
    }

    /// Appends the end of the data: a CRLF if the content did not end with
    /// one, then `.` CRLF.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.end_line(out);
        out.extend_from_slice(b".\r\n");
    }

    /// Ends the current line (a CRLF, or the LF after a CR) unless the next
    /// byte already begins one.
    pub fn end_line(&mut self, out: &mut Vec<u8>) {
        if !self.at_line_start {
            if self.last_was_cr {
                out.push(b'\n');
            } else {
                out.extend_from_slice(b"\r\n");
            }
        }
        self.at_line_start = true;
        self.last_was_cr = false;
    }
}

/// A body stuffed once and sent by many transactions after their own
/// header lines: the shared copy of a post. Stuffing a 10 KiB copy again
/// for each of its members was a tenth of the fan-out's CPU (perf, issue 9).
#[derive(Debug, Clone)]
pub struct Stuffed {
    /// The encoded body, ending at a line start (a CRLF added when the body
    /// did not end with one), without the final `.` line.
    bytes: Vec<u8>,
    /// The body's size as given: the SIZE parameter counts the message.
    raw_len: usize,
}

impl Stuffed {
    /// Encodes `raw` as it will be sent after whole header lines.
    pub fn new(raw: &[u8]) -> Stuffed {
        let mut s = DotStuffer::new();
        let mut bytes = Vec::with_capacity(raw.len() + raw.len() / 32 + 2);
        s.push(raw, &mut bytes);
        s.end_line(&mut bytes);
        Stuffed {
            bytes,
            raw_len: raw.len(),
        }
    }

    /// The body's size before encoding.
    pub fn len(&self) -> usize {
        self.raw_len
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.raw_len == 0
    }

    /// The encoded bytes.
    pub fn encoded(&self) -> &[u8] {
        &self.bytes
    }
}

/// Convenience for tests and small messages: the whole encoded form.
pub fn stuff_all(slices: &[&[u8]]) -> Vec<u8> {
    let mut s = DotStuffer::new();
    let mut out = Vec::new();
    for slice in slices {
        s.push(slice, &mut out);
    }
    s.finish(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Head slices then a body stuffed once encode as the whole message
    /// stuffed at once.
    #[test]
    fn stuffed_body_after_whole_lines_is_the_same_encoding() {
        for body in [&b".a\nb\r\n..c"[..], b"", b"x\r", b"line\r\n.\r\n"] {
            let head: &[u8] = b"H: 1\r\n";
            let body_once = Stuffed::new(body);
            let mut s = DotStuffer::new();
            let mut out = Vec::new();
            s.push(head, &mut out);
            out.extend_from_slice(body_once.encoded());
            out.extend_from_slice(b".\r\n");
            assert_eq!(out, stuff_all(&[head, body]), "{body:?}");
            assert_eq!(body_once.len(), body.len());
        }
    }

    #[test]
    fn table() {
        let cases: &[(&[&[u8]], &[u8])] = &[
            // empty message
            (&[], b".\r\n"),
            (&[b""], b".\r\n"),
            (&[b"", b""], b".\r\n"),
            // ends with / without CRLF
            (&[b"a\r\n"], b"a\r\n.\r\n"),
            (&[b"a"], b"a\r\n.\r\n"),
            (&[b"a\r\n\r\n"], b"a\r\n\r\n.\r\n"),
            // bare LF
            (&[b"a\nb\n"], b"a\r\nb\r\n.\r\n"),
            (&[b"a\nb"], b"a\r\nb\r\n.\r\n"),
            (&[b"\n\n"], b"\r\n\r\n.\r\n"),
            (&[b"a\r\nb\nc\r\n"], b"a\r\nb\r\nc\r\n.\r\n"),
            // leading dot
            (&[b".a\r\n"], b"..a\r\n.\r\n"),
            (&[b"."], b"..\r\n.\r\n"),
            (&[b".\r\n"], b"..\r\n.\r\n"),
            (&[b"..\r\n"], b"...\r\n.\r\n"),
            // dot after CRLF / LF
            (&[b"a\r\n.b\r\n"], b"a\r\n..b\r\n.\r\n"),
            (&[b"a\n.\nb"], b"a\r\n..\r\nb\r\n.\r\n"),
            // dot not at line start is untouched
            (&[b"a.b\r\n a.\r\n"], b"a.b\r\n a.\r\n.\r\n"),
            // dot at the start of a slice that begins a line
            (&[b"H: v\r\n", b".body\r\n"], b"H: v\r\n..body\r\n.\r\n"),
            (&[b"H: v\n", b".body"], b"H: v\r\n..body\r\n.\r\n"),
            // dot at the start of a slice that does NOT begin a line
            (&[b"abc", b".def\r\n"], b"abc.def\r\n.\r\n"),
            // CRLF split across slices: no extra CR, dot after it stuffed
            (&[b"a\r", b"\n.b"], b"a\r\n..b\r\n.\r\n"),
            (&[b"a\r", b"\n"], b"a\r\n.\r\n"),
            // bare CR passes through; trailing bare CR completed to CRLF
            (&[b"a\rb\r\n"], b"a\rb\r\n.\r\n"),
            (&[b"a\r"], b"a\r\n.\r\n"),
            (&[b"a\r", b"b"], b"a\rb\r\n.\r\n"),
            // empty slices in between do not change the line state
            (&[b"a\r\n", b"", b".x"], b"a\r\n..x\r\n.\r\n"),
            (&[b"a\r", b"", b"\n"], b"a\r\n.\r\n"),
            // a line that is only "." inside the message
            (&[b"a\r\n.\r\nb\r\n"], b"a\r\n..\r\nb\r\n.\r\n"),
        ];
        for (i, (input, want)) in cases.iter().enumerate() {
            let got = stuff_all(input);
            assert_eq!(
                got,
                *want,
                "case {i}: {:?} -> {:?}, want {:?}",
                input
                    .iter()
                    .map(|s| String::from_utf8_lossy(s))
                    .collect::<Vec<_>>(),
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(want)
            );
        }
    }

    /// Splitting the input at every possible point gives the same output.
    #[test]
    fn split_invariance() {
        let msg: &[u8] = b".From: a\nSubject: x\r\n\r\n.line\r\n..two\n\r\nend.\r.\n.";
        let whole = stuff_all(&[msg]);
        for i in 0..=msg.len() {
            for j in i..=msg.len() {
                let got = stuff_all(&[&msg[..i], &msg[i..j], &msg[j..]]);
                assert_eq!(got, whole, "split at {i},{j}");
            }
        }
    }

    #[test]
    fn output_bound() {
        let mut s = DotStuffer::new();
        let mut out = Vec::new();
        s.push(b"\n\n\n", &mut out);
        assert_eq!(out.len(), 6);
        out.clear();
        s.push(b".\n.\n", &mut out);
        assert_eq!(out, b"..\r\n..\r\n");
    }
}
