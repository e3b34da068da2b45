//! Commands in a mail to `LIST-request`: one per line, in the Subject or the
//! body. Reading stops at a signature (`-- `), a quoted line, `end`, or after
//! [`MAX_LINES`] non-empty lines, so a reply quoting a long message cannot
//! run commands from it.

use crate::model::DeliveryMode;

/// Most non-empty lines read from a body.
pub const MAX_LINES: usize = 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `subscribe [ADDRESS]` / `join`
    Subscribe(Option<String>),
    /// `unsubscribe [ADDRESS]` / `leave`
    Unsubscribe(Option<String>),
    Help,
    /// `set regular`, `set nomail`, `set digest mime`, `set digest plain`:
    /// the sender's own delivery mode, after a confirmation.
    SetDelivery(DeliveryMode),
    /// `approve|reject|discard <MESSAGE-ID> SIG`
    Moderate {
        action: crate::moderation::Action,
        message_id: String,
        sig: String,
    },
    /// A line that is not a command.
    Unknown(String),
}

/// Parses one line; `None` for an empty line.
pub fn parse_line(line: &str) -> Option<Command> {
    let line = line.trim();
    // "Re: subscribe" in a subject
    let line = line
        .strip_prefix("Re:")
        .or_else(|| line.strip_prefix("RE:"))
        .unwrap_or(line)
        .trim();
    let mut words = line.split_whitespace();
    let verb = words.next()?.to_ascii_lowercase();
    let arg = words.next().map(str::to_string);
    Some(match verb.as_str() {
        "subscribe" | "join" => Command::Subscribe(arg),
        "unsubscribe" | "leave" => Command::Unsubscribe(arg),
        "help" => Command::Help,
        // `set digest mime` → `digest_mime`; `set digest_mime` works too.
        "set" => match arg
            .into_iter()
            .chain(words.map(str::to_string))
            .collect::<Vec<_>>()
            .join("_")
            .parse()
        {
            Ok(mode) => Command::SetDelivery(mode),
            Err(_) => Command::Unknown(line.to_string()),
        },
        v => match (crate::moderation::Action::parse(v), arg, words.next()) {
            (Some(action), Some(mid), Some(sig)) => Command::Moderate {
                action,
                message_id: mid
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string(),
                sig: sig.to_string(),
            },
            _ => Command::Unknown(line.to_string()),
        },
    })
}

/// The commands of a message: the Subject, then the body's first lines.
pub fn parse(subject: &str, body: &str) -> Vec<Command> {
    let mut out = Vec::new();
    if let Some(c) = parse_line(subject) {
        if !matches!(c, Command::Unknown(_)) {
            out.push(c);
        }
    }
    let mut lines = 0;
    for line in body.lines() {
        let t = line.trim_end();
        if t == "--" || t == "-- " || line.starts_with("-- ") || t.starts_with('>') {
            break;
        }
        if t.trim().eq_ignore_ascii_case("end") || t.trim().eq_ignore_ascii_case("stop") {
            break;
        }
        let Some(c) = parse_line(t) else { continue };
        lines += 1;
        if lines > MAX_LINES {
            break;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::moderation::Action;

    #[test]
    fn lines() {
        let table: &[(&str, Option<Command>)] = &[
            ("", None),
            ("   ", None),
            ("subscribe", Some(Command::Subscribe(None))),
            (
                "SUBSCRIBE bob@x.org",
                Some(Command::Subscribe(Some("bob@x.org".into()))),
            ),
            ("join", Some(Command::Subscribe(None))),
            ("unsubscribe", Some(Command::Unsubscribe(None))),
            (
                "leave a@b.org",
                Some(Command::Unsubscribe(Some("a@b.org".into()))),
            ),
            ("help", Some(Command::Help)),
            ("Re: help", Some(Command::Help)),
            (
                "approve <abc@x.org> SIG",
                Some(Command::Moderate {
                    action: Action::Approve,
                    message_id: "abc@x.org".into(),
                    sig: "SIG".into(),
                }),
            ),
            (
                "Discard abc@x.org s",
                Some(Command::Moderate {
                    action: Action::Discard,
                    message_id: "abc@x.org".into(),
                    sig: "s".into(),
                }),
            ),
            (
                "reject <abc@x.org>",
                Some(Command::Unknown("reject <abc@x.org>".into())),
            ),
            ("hello there", Some(Command::Unknown("hello there".into()))),
            (
                "set digest mime",
                Some(Command::SetDelivery(DeliveryMode::DigestMime)),
            ),
            (
                "SET Digest Plain",
                Some(Command::SetDelivery(DeliveryMode::DigestPlain)),
            ),
            (
                "set nomail",
                Some(Command::SetDelivery(DeliveryMode::Nomail)),
            ),
            (
                "Re: set regular",
                Some(Command::SetDelivery(DeliveryMode::Regular)),
            ),
            (
                "set digest_mime",
                Some(Command::SetDelivery(DeliveryMode::DigestMime)),
            ),
            ("set digest", Some(Command::Unknown("set digest".into()))),
            ("set", Some(Command::Unknown("set".into()))),
            (
                "set nomail please",
                Some(Command::Unknown("set nomail please".into())),
            ),
        ];
        for (line, want) in table {
            assert_eq!(&parse_line(line), want, "{line:?}");
        }
    }

    #[test]
    fn messages() {
        assert_eq!(parse("subscribe", ""), vec![Command::Subscribe(None)]);
        assert_eq!(
            parse("what?", "help\n\nunsubscribe\n"),
            vec![Command::Help, Command::Unsubscribe(None)]
        );
        assert_eq!(parse("", "help\n-- \nsubscribe\n"), vec![Command::Help]);
        assert_eq!(
            parse("", "help\n> unsubscribe\nsubscribe"),
            vec![Command::Help]
        );
        assert_eq!(parse("", "help\nend\nsubscribe"), vec![Command::Help]);
        let long = "x\n".repeat(50) + "subscribe\n";
        assert_eq!(parse("", &long).len(), MAX_LINES);
    }
}
