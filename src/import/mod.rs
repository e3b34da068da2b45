//! Importers: lists, settings and members from GNU Mailman 3 (its REST API,
//! [`mailman3`]) and mlmmj (its list directories, [`mlmmj`]).
//!
//! Each reader turns its source into the same source-neutral [`Plan`]:
//! per list, the listrelay settings it maps to (as `list set` names and
//! spells them), owners, moderators, members with their delivery mode and
//! flags, bans, and the source settings that have no equivalent. [`apply`]
//! then compares the plan with what listrelay holds and sends only the
//! admin requests that change something, list by list, so a second run
//! changes nothing and a site can move one list at a time
//! (docs/migrating.md).

pub mod apply;
pub mod mailman3;
pub mod mlmmj;

use std::io::{BufRead, Read};

use serde::Serialize;

/// A member's delivery mode, as `member set … delivery_mode` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Every post as it comes.
    Regular,
    /// Subscribed, but the member asked for no mail.
    Nomail,
    /// MIME digests (each post attached).
    DigestMime,
    /// Plain-text (RFC 1153) digests.
    DigestPlain,
}

impl Mode {
    /// The name `member set … delivery_mode` takes.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Regular => "regular",
            Mode::Nomail => "nomail",
            Mode::DigestMime => "digest_mime",
            Mode::DigestPlain => "digest_plain",
        }
    }
}

/// Everything one run would bring across.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    /// Where it was read from (a REST URL, or "mlmmj"), for the report.
    pub source: String,
    /// Domains to create when listrelay lacks them (a list's own domain is
    /// created with it anyway; Mailman also has domains without lists).
    pub domains: Vec<String>,
    /// The lists, in the order they are applied.
    pub lists: Vec<ListImport>,
}

/// One list as the source has it, in listrelay's terms.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ListImport {
    /// The posting address.
    pub address: String,
    /// Where in the source it is (Mailman list id, mlmmj directory), so the
    /// report names what the operator knows.
    pub origin: String,
    /// listrelay settings, in the text form `list set` takes; owners and
    /// moderators are among them (`owners`, `moderators`).
    pub settings: Vec<Setting>,
    /// The members; one entry per address.
    pub members: Vec<MemberImport>,
    /// Senders refused on this list: exact addresses or `^` patterns.
    pub bans: Vec<String>,
    /// Source settings with no equivalent in listrelay, with their values:
    /// the operator decides what to do about each.
    pub unmapped: Vec<Unmapped>,
}

/// One listrelay setting and the source setting it comes from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Setting {
    /// The listrelay key (`list set LIST KEY VALUE`).
    pub key: String,
    /// The value in `list set`'s text form.
    pub value: String,
    /// The source's setting and value it was derived from, for the report.
    pub from: String,
}

/// One member as the source has it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemberImport {
    /// The address as the source spells it.
    pub address: String,
    /// How the member gets posts.
    pub mode: Mode,
    /// Whether delivery is on (off: disabled by bounces or by a moderator in
    /// the source; a member's own "no mail" is [`Mode::Nomail`] instead).
    pub delivery_enabled: bool,
    /// Whether the member's posts are held for the moderators.
    pub moderated: bool,
}

impl MemberImport {
    /// A regular member with delivery on, not moderated (listrelay's default
    /// for a new member).
    pub fn regular(address: &str) -> Self {
        MemberImport {
            address: address.to_string(),
            mode: Mode::Regular,
            delivery_enabled: true,
            moderated: false,
        }
    }
}

/// A source setting listrelay has no equivalent for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unmapped {
    /// The source's name for it.
    pub setting: String,
    /// Its value there (shortened when long).
    pub value: String,
    /// What listrelay does instead, or what the operator can do.
    pub note: String,
}

impl Unmapped {
    pub fn new(setting: &str, value: &str, note: &str) -> Self {
        Unmapped {
            setting: setting.to_string(),
            value: shorten(value, 200),
            note: note.to_string(),
        }
    }
}

impl ListImport {
    /// Adds a listrelay setting derived from the source's `from`.
    pub fn set(&mut self, key: &str, value: impl Into<String>, from: impl Into<String>) {
        self.settings.push(Setting {
            key: key.to_string(),
            value: value.into(),
            from: from.into(),
        });
    }

    /// Records a source setting that has no equivalent.
    pub fn unmapped(&mut self, setting: &str, value: &str, note: &str) {
        self.unmapped.push(Unmapped::new(setting, value, note));
    }

    /// Sets the owners or moderators (`key`), sorted and deduplicated so a
    /// second run compares equal whatever order the source lists them in.
    pub fn set_addresses(&mut self, key: &str, mut addresses: Vec<String>, from: &str) {
        addresses.sort_by_key(|a| a.to_lowercase());
        addresses.dedup_by_key(|a| a.to_lowercase());
        self.set(key, addresses.join(", "), from);
    }
}

/// `text` cut to `max` characters with an ellipsis, on one line.
pub fn shorten(text: &str, max: usize) -> String {
    let one_line = text.replace('\n', "\\n");
    match one_line.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}

/// The longest line read from a source file; a longer one is skipped (an
/// address is at most 320 bytes, a setting line far less).
pub const MAX_LINE: usize = 4096;

/// Reads `input` line by line without ever holding more than [`MAX_LINE`]
/// bytes of one line: `each` gets every line (trimmed of `\r\n`) that fits,
/// as lossy UTF-8; the number of lines skipped as too long is returned.
pub fn bounded_lines(
    input: impl Read,
    mut each: impl FnMut(&str) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let mut reader = std::io::BufReader::new(input);
    let mut line = Vec::with_capacity(256);
    let mut skipped = 0;
    loop {
        line.clear();
        let n = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(skipped);
        }
        if line.last() != Some(&b'\n') && line.len() > MAX_LINE {
            // Too long: drop the rest of it, a buffer at a time.
            skipped += 1;
            loop {
                let buf = reader.fill_buf()?;
                if buf.is_empty() {
                    break;
                }
                match buf.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        reader.consume(i + 1);
                        break;
                    }
                    None => {
                        let len = buf.len();
                        reader.consume(len);
                    }
                }
            }
            continue;
        }
        let text = String::from_utf8_lossy(&line);
        each(text.trim_end_matches(['\n', '\r']))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_skipped_without_being_held() {
        let mut input = b"a@x.org\r\n".to_vec();
        input.extend(std::iter::repeat_n(b'z', 3 * MAX_LINE));
        input.extend(b"\nb@x.org");
        let mut seen = Vec::new();
        let skipped = bounded_lines(&input[..], |l| {
            seen.push(l.to_string());
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, ["a@x.org", "b@x.org"]);
        assert_eq!(skipped, 1);
    }

    #[test]
    fn owners_are_sorted_once() {
        let mut l = ListImport::default();
        l.set_addresses(
            "owners",
            vec!["b@x.org".into(), "A@x.org".into(), "a@x.org".into()],
            "owner",
        );
        assert_eq!(l.settings[0].value, "A@x.org, b@x.org");
        assert_eq!(shorten("abcdef", 3), "abc…");
    }
}
