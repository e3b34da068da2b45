//! An issue's bytes, from its cut record and its posts, in either form.
//! Deterministic: the same issue and posts give the same bytes, so an issue
//! recomposed after a crash is the same message to the Message-ID window.

use sha2::{Digest, Sha256};

use super::summary::Summary;
use super::{Form, Issue, Post, MAX_ISSUE_BYTES, MAX_POSTS, MAX_TEMPLATE_BYTES};
use crate::address::Suffix;

/// RFC 1153: the line between the table of contents and the first post.
pub const TOC_SEPARATOR: &str =
    "----------------------------------------------------------------------";
/// RFC 1153: the line between two posts (and after the last one).
pub const POST_SEPARATOR: &str = "------------------------------";
/// A body line longer than this (bytes) is broken: SMTP allows 998.
const MAX_LINE_BYTES: usize = 990;
/// Column the table of contents wraps at.
const TOC_WIDTH: usize = 72;
/// An upper bound of a post's stand-in (the section or part of a post that
/// did not fit): its fields are capped, so it never exceeds this.
pub const STUB_MAX_BYTES: usize = 3 * 1024;
/// Room kept for the issue's own header block and the MIME delimiters of a
/// part (each part adds one delimiter line besides its bytes).
const HEADER_RESERVE: usize = 2 * 1024;
const DELIMITER_BYTES: usize = 160;

/// A composed issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Composed {
    /// The message, CRLF line ends, at most [`MAX_ISSUE_BYTES`].
    pub bytes: Vec<u8>,
    /// Its Message-ID (without brackets): the queue's window key.
    pub message_id: String,
    /// How many posts it holds (in full or as a stand-in).
    pub posts: usize,
    /// How many of them only by a stand-in, because the issue was full:
    /// logged and counted by the caller.
    pub stubbed: usize,
}

/// The issue's Message-ID (without brackets): from the list, volume, issue,
/// cut time and form, so a recomposed issue has the same one. The cut time
/// keeps two issues apart when an owner sets the counters back.
pub fn message_id(issue: &Issue<'_>, form: Form) -> String {
    let list_id = issue.list.list_id();
    let label = list_id.split('.').next().unwrap_or("list");
    format!(
        "{label}.digest-{}.v{}.i{}.{}@{}",
        form.name(),
        issue.volume,
        issue.number,
        issue.cut_at,
        issue.list.address.domain()
    )
}

/// `LIST Digest, Vol V, Issue N`.
pub fn subject(issue: &Issue<'_>) -> String {
    format!(
        "{} Digest, Vol {}, Issue {}",
        issue.list.address.local(),
        issue.volume,
        issue.number
    )
}

/// The placeholders a digest header or footer may use.
fn vars(issue: &Issue<'_>, posts: usize) -> Vec<(&'static str, String)> {
    let l = issue.list;
    vec![
        ("list", l.address.to_string()),
        ("name", l.address.local().to_string()),
        ("volume", issue.volume.to_string()),
        ("issue", issue.number.to_string()),
        ("date", crate::notice::rfc5322_date(issue.cut_at)),
        ("posts", posts.to_string()),
        ("request", l.suffix_address(Suffix::Request)),
        ("owner", l.suffix_address(Suffix::Owner)),
        ("join", l.suffix_address(Suffix::Join)),
        ("leave", l.suffix_address(Suffix::Leave)),
        ("list_id", l.list_id()),
        ("archive", l.settings.archive_url.clone()),
    ]
}

/// A header or footer template with its placeholders filled, bounded, with
/// `\n` line ends and no trailing blank lines.
fn render_template(template: &str, vars: &[(&str, String)]) -> String {
    let template = cut(template, MAX_TEMPLATE_BYTES);
    let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let text = crate::templates::substitute(template, &pairs);
    let text: String = text.chars().filter(|c| *c != '\r' && *c != '\0').collect();
    text.trim_end().to_string()
}

fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Appends `text` as body lines with CRLF ends: a line that a digest reader
/// would take for a separator (it starts with 30 hyphens) is stuffed with
/// `- ` as RFC 934 does, and a line too long for SMTP is broken.
fn push_lines(out: &mut String, text: &str) {
    for line in text.split('\n') {
        let mut line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with(POST_SEPARATOR) {
            out.push_str("- ");
        }
        while line.len() > MAX_LINE_BYTES {
            let head = cut(line, MAX_LINE_BYTES);
            // A line of one huge character cannot happen (chars are ≤ 4 bytes).
            out.push_str(head);
            out.push_str("\r\n");
            line = &line[head.len()..];
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
}

/// The table of contents: `   N. Subject (Author)`, wrapped.
fn toc(summaries: &[Summary]) -> String {
    let mut out = String::from("Today's Topics:\r\n\r\n");
    if summaries.is_empty() {
        out.push_str("   (There were no posts in this period.)\r\n");
    }
    for (i, s) in summaries.iter().enumerate() {
        let entry = format!("{:>4}. {} ({})", i + 1, s.subject, s.author);
        let mut col = 0;
        for (k, word) in entry.split(' ').enumerate() {
            let w = word.chars().count();
            if k > 0 && col + 1 + w > TOC_WIDTH && col > 6 {
                out.push_str("\r\n      ");
                col = 6;
            } else if k > 0 {
                out.push(' ');
                col += 1;
            }
            out.push_str(word);
            col += w;
        }
        out.push_str("\r\n");
    }
    out
}

/// An RFC 2047 encoded word for a header value that is not ASCII.
fn header_value(value: &str) -> String {
    use base64::Engine;
    if value.is_ascii() {
        value.to_string()
    } else {
        format!(
            "=?utf-8?b?{}?=",
            base64::engine::general_purpose::STANDARD.encode(value)
        )
    }
}

/// The issue's own header block, without its Content-Type lines.
fn head(issue: &Issue<'_>, form: Form) -> String {
    let list = issue.list.address.to_string();
    format!(
        "From: {list}\r\nTo: {list}\r\nSubject: {}\r\nDate: {}\r\nMessage-ID: <{}>\r\n\
         MIME-Version: 1.0\r\n",
        header_value(&subject(issue)),
        crate::notice::rfc5322_date(issue.cut_at),
        message_id(issue, form)
    )
}

/// What stands for a post that did not fit: who, when, what, where.
pub(super) fn stub_text(s: &Summary, size: usize) -> String {
    format!(
        "[This post ({size} bytes) did not fit in this digest issue.\n\
         Subject: {}\nFrom: {}\nMessage-ID: <{}>\n\
         The list's archive or its owner can provide it.]",
        s.subject,
        s.from,
        s.message_id.as_deref().unwrap_or("none")
    )
}

/// Composes the issue in `form` from `posts` (in list order). At most
/// [`MAX_POSTS`] posts (what [`super::take`] hands out); the result never
/// exceeds [`MAX_ISSUE_BYTES`]: a post that does not fit in what is left
/// is replaced by a stand-in naming it. Linear in the posts' size.
pub fn compose(issue: &Issue<'_>, form: Form, posts: &[Post<'_>]) -> Composed {
    debug_assert!(
        posts.len() <= MAX_POSTS,
        "take() hands out at most MAX_POSTS"
    );
    let summaries: Vec<Summary> = posts.iter().map(Summary::of).collect();
    let vars = vars(issue, posts.len());
    let header = render_template(issue.header, &vars);
    let footer = render_template(issue.footer, &vars);
    let mut contents = String::new();
    if !header.is_empty() {
        push_lines(&mut contents, &header);
        contents.push_str("\r\n");
    }
    contents.push_str(&toc(&summaries));
    let (bytes, stubbed) = match form {
        Form::Plain => plain(issue, &contents, &footer, posts, &summaries),
        Form::Mime => mime(issue, &contents, &footer, posts, &summaries),
    };
    Composed {
        bytes,
        message_id: message_id(issue, form),
        posts: posts.len(),
        stubbed,
    }
}

/// Picks each post's rendering against the size left: `full` if it fits
/// with room for a stand-in for every later post, else `stub`.
struct Budget {
    /// Bytes still free for posts.
    room: usize,
    /// Posts still to place.
    left: usize,
    /// How many were stand-ins.
    stubbed: usize,
}

impl Budget {
    fn new(used: usize, posts: usize) -> Budget {
        Budget {
            room: MAX_ISSUE_BYTES.saturating_sub(used + HEADER_RESERVE),
            left: posts,
            stubbed: 0,
        }
    }

    /// Whether a post of `estimate` bytes is worth rendering in full.
    fn may_fit(&self, estimate: usize) -> bool {
        estimate + self.reserve_after() <= self.room
    }

    fn reserve_after(&self) -> usize {
        self.left.saturating_sub(1) * (STUB_MAX_BYTES + DELIMITER_BYTES)
    }

    /// Takes `full` if it fits, else the stand-in `stub()`.
    fn place<T: AsRef<[u8]>>(&mut self, full: Option<T>, stub: impl FnOnce() -> T) -> T {
        let chosen = match full {
            Some(f) if f.as_ref().len() + DELIMITER_BYTES + self.reserve_after() <= self.room => f,
            _ => {
                self.stubbed += 1;
                stub()
            }
        };
        self.room = self
            .room
            .saturating_sub(chosen.as_ref().len() + DELIMITER_BYTES);
        self.left = self.left.saturating_sub(1);
        chosen
    }
}

/// RFC 1153: contents, the 70-hyphen line, each post as Date/From/Subject/
/// Message-ID and its text between 30-hyphen lines, the footer as a last
/// section, then `End of … Digest…` over a line of asterisks.
fn plain(
    issue: &Issue<'_>,
    contents: &str,
    footer: &str,
    posts: &[Post<'_>],
    summaries: &[Summary],
) -> (Vec<u8>, usize) {
    let end = format!("End of {}", subject(issue));
    let mut tail = String::new();
    if !footer.is_empty() {
        tail.push_str("Subject: Digest Footer\r\n\r\n");
        push_lines(&mut tail, footer);
        tail.push_str("\r\n");
        tail.push_str(POST_SEPARATOR);
        tail.push_str("\r\n\r\n");
    }
    tail.push_str(&end);
    tail.push_str("\r\n");
    tail.push_str(&"*".repeat(end.chars().count()));
    tail.push_str("\r\n");
    let mut body = String::with_capacity(contents.len() + tail.len());
    body.push_str(contents);
    body.push_str("\r\n");
    body.push_str(TOC_SEPARATOR);
    body.push_str("\r\n\r\n");
    let mut budget = Budget::new(body.len() + tail.len(), posts.len());
    for (post, s) in posts.iter().zip(summaries) {
        let section = |text: &str, omitted: &str| {
            let mut out = format!(
                "Date: {}\r\nFrom: {}\r\nSubject: {}\r\n",
                s.date, s.from, s.subject
            );
            if let Some(id) = &s.message_id {
                out.push_str(&format!("Message-ID: <{id}>\r\n"));
            }
            out.push_str("\r\n");
            push_lines(&mut out, text);
            if !omitted.is_empty() {
                out.push_str("\r\n");
                push_lines(&mut out, omitted);
            }
            out.push_str("\r\n");
            out.push_str(POST_SEPARATOR);
            out.push_str("\r\n\r\n");
            out
        };
        let full = budget
            .may_fit(s.text.len() + s.omitted.len())
            .then(|| section(&s.text, &s.omitted));
        let chosen = budget.place(full, || section(&stub_text(s, post.raw.len()), ""));
        body.push_str(&chosen);
    }
    body.push_str(&tail);
    let cte = if body.is_ascii() { "7bit" } else { "8bit" };
    let mut out = head(issue, Form::Plain);
    out.push_str(&format!(
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: {cte}\r\n\r\n"
    ));
    out.push_str(&body);
    (out.into_bytes(), budget.stubbed)
}

/// One part of a MIME issue: its header lines and its content.
struct Part {
    headers: String,
    body: Vec<u8>,
}

impl AsRef<[u8]> for Part {
    fn as_ref(&self) -> &[u8] {
        // Only the size is asked for (Budget): the body dominates it and
        // the headers are counted in DELIMITER_BYTES.
        &self.body
    }
}

fn text_part(text: &str) -> Part {
    let mut body = String::new();
    push_lines(&mut body, text.trim_end_matches(['\r', '\n']));
    let cte = if body.is_ascii() { "7bit" } else { "8bit" };
    Part {
        headers: format!(
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: {cte}\r\n"
        ),
        body: body.into_bytes(),
    }
}

/// The post as received, with CRLF line ends throughout (bare LF or CR
/// would not survive SMTP unchanged) and a final line end.
fn rfc822_part(raw: &[u8]) -> Part {
    let mut body = Vec::with_capacity(raw.len() + 2);
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'\r' if raw.get(i + 1) == Some(&b'\n') => {
                body.extend_from_slice(b"\r\n");
                i += 2;
                continue;
            }
            b'\r' | b'\n' => body.extend_from_slice(b"\r\n"),
            b => body.push(b),
        }
        i += 1;
    }
    if !body.ends_with(b"\r\n") {
        body.extend_from_slice(b"\r\n");
    }
    let cte = if body.is_ascii() {
        ""
    } else {
        "Content-Transfer-Encoding: 8bit\r\n"
    };
    Part {
        headers: format!("Content-Type: message/rfc822\r\n{cte}"),
        body,
    }
}

/// `multipart/digest`: the contents as text/plain first, each post as
/// `message/rfc822` (a stand-in as text/plain), the footer as text/plain last.
fn mime(
    issue: &Issue<'_>,
    contents: &str,
    footer: &str,
    posts: &[Post<'_>],
    summaries: &[Summary],
) -> (Vec<u8>, usize) {
    let mut parts = vec![text_part(contents)];
    let footer_part = (!footer.is_empty()).then(|| text_part(footer));
    let used = parts[0].body.len() + footer_part.as_ref().map_or(0, |p| p.body.len());
    let mut budget = Budget::new(used, posts.len());
    for (post, s) in posts.iter().zip(summaries) {
        let full = budget
            .may_fit(post.raw.len())
            .then(|| rfc822_part(post.raw));
        parts.push(budget.place(full, || text_part(&stub_text(s, post.raw.len()))));
    }
    parts.extend(footer_part);
    let boundary = boundary(&message_id(issue, Form::Mime), &parts);
    let eight_bit = parts.iter().any(|p| !p.body.is_ascii());
    let mut out = head(issue, Form::Mime).into_bytes();
    out.extend_from_slice(
        format!(
            "Content-Type: multipart/digest; boundary=\"{boundary}\"\r\n\
             Content-Transfer-Encoding: {}\r\n\r\n\
             This is a MIME digest: each post is attached as a message.\r\n",
            if eight_bit { "8bit" } else { "7bit" }
        )
        .as_bytes(),
    );
    for p in &parts {
        out.extend_from_slice(format!("\r\n--{boundary}\r\n").as_bytes());
        out.extend_from_slice(p.headers.as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&p.body);
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (out, budget.stubbed)
}

const BOUNDARY_PREFIX: &[u8] = b"=_listrelay_digest_";

/// A boundary no part contains: derived from the issue's Message-ID (so it
/// is the same when the issue is recomposed) and a counter, skipping every
/// candidate a part already holds. One pass over the parts collects the
/// candidates present, so a post full of guessed boundaries costs no more
/// than any other post.
fn boundary(seed: &str, parts: &[Part]) -> String {
    let mut present = std::collections::HashSet::new();
    for p in parts {
        let hay = &p.body;
        let mut i = 0;
        while let Some(off) = find(&hay[i..], BOUNDARY_PREFIX) {
            let start = i + off + BOUNDARY_PREFIX.len();
            let token: Vec<u8> = hay[start..]
                .iter()
                .take(16)
                .copied()
                .take_while(u8::is_ascii_hexdigit)
                .collect();
            present.insert(token);
            i = start;
        }
    }
    (0u64..)
        .map(|n| {
            let h = Sha256::digest(format!("{seed}/{n}").as_bytes());
            hex::encode(&h[..8])
        })
        .find(|t| !present.contains(t.as_bytes()))
        .map(|t| format!("{}{t}", String::from_utf8_lossy(BOUNDARY_PREFIX)))
        .unwrap_or_default()
}

/// The first position of `needle` in `hay`. Linear for this needle: it
/// starts with `=_`, which cannot overlap itself further in.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let first = needle[0];
    let mut i = 0;
    while i + needle.len() <= hay.len() {
        if hay[i] == first && hay[i..].starts_with(needle) {
            return Some(i);
        }
        i += 1;
    }
    None
}
