//! The texts people receive. Every one is a named template with a built-in
//! default, overridable by a file `NAME.txt` under `DATA_DIR/templates/`, at
//! site level, domain level (`domains/DOMAIN/`) or list level
//! (`lists/LIST@DOMAIN/`); the most specific file wins.
//!
//! A template starts with a `Subject:` line, then an empty line, then the
//! body. `{name}` is replaced by the value given for `name`; `{{` and `}}`
//! write braces; unknown placeholders are left as they are.

use std::path::{Path, PathBuf};

use crate::model::List;

/// The built-in defaults: (name, text). An indented line starts with `\x20`:
/// a `\` line continuation also eats the next line's leading spaces.
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "bounce-disabled",
        "Subject: Your delivery from {list} is disabled\n\n\
Mail from the list {list} to your address {member} has been bouncing\n\
(last reason: {reason}), so we stopped sending it. You are still\n\
subscribed. This is warning {warning} of {warnings}; after the last one\n\
your address will be removed from the list.\n\n\
To get mail again, ask the list owner ({owner}) to re-enable delivery.\n",
    ),
    (
        "bounce-owner-removed",
        "Subject: {member} removed from {list} for bouncing\n\n\
The address {member} was removed from the list {list} because mail to it\n\
kept bouncing (score {score}, last reason: {reason}, status {status}).\n",
    ),
    (
        "bounce-policy-alert",
        "Subject: Policy rejections of a post to {list}\n\n\
{count} of {recipients} recipients of the post {post} to {list} were\n\
refused for policy reasons (spam, DMARC, blocking), such as {member}:\n\n\
\x20 {diagnostic}\n\n\
This is usually a problem of the sender's domain or of the list, not of\n\
the members, so bounce scoring for this post is suspended.\n",
    ),
    (
        "moderator-notice",
        "Subject: {list}: post from {sender} awaits approval\n\n\
A post to {list} is held for approval ({reason}).\n\n\
\x20 From:       {sender}\n\
\x20 Subject:    {subject}\n\
\x20 Message-ID: <{message_id}>\n\
\x20 Size:       {size} bytes\n\
\x20 Checks:     {checks}\n\n\
The post is attached. To act on it, send any message to one of:\n\n\
\x20 approve: {approve}\n\
\x20 reject:  {reject}\n\
\x20 discard: {discard}\n\n\
or write from your moderator address to {request} a line such as\n\n\
\x20 approve <{message_id}> {approve_sig}\n\
\x20 reject <{message_id}> {reject_sig}\n\
\x20 discard <{message_id}> {discard_sig}\n\n\
Unless someone acts, it expires in {days} days ({expiry}).\n",
    ),
    (
        "held-sender",
        "Subject: Your post to {list} awaits approval\n\n\
Your message \"{subject}\" to the list {list} is held until a moderator\n\
looks at it: {reason}. You will hear again if it is rejected.\n",
    ),
    (
        "post-rejected",
        "Subject: Your post to {list} was rejected\n\n\
Your message \"{subject}\" (Message-ID <{message_id}>) to the list {list}\n\
was not distributed: {reason}.\n\n\
Questions go to the list owners at {owner}.\n",
    ),
    (
        "held-expired-sender",
        "Subject: Your post to {list} expired\n\n\
Your message \"{subject}\" to the list {list} waited {days} days for a\n\
moderator and was not distributed ({action}).\n",
    ),
    (
        "held-expired-moderators",
        "Subject: {list}: a held post expired\n\n\
The post \"{subject}\" from {sender} (Message-ID <{message_id}>) waited\n\
{days} days without a decision and was handled as the list says: {action}.\n",
    ),
    (
        "confirm-join",
        "Subject: Confirm your subscription to {list}\n\n\
Someone (perhaps you) asked to subscribe {address} to the list {list}.\n\n\
To confirm, reply to this message or send any message to\n\n\
\x20 {confirm}\n\n\
within {hours} hours. If you did not ask, ignore this message: nothing\n\
happens without your reply.\n",
    ),
    (
        "confirm-leave",
        "Subject: Confirm leaving {list}\n\n\
Someone (perhaps you) asked to unsubscribe {address} from the list {list}.\n\n\
To confirm, reply to this message or send any message to\n\n\
\x20 {confirm}\n\n\
within {hours} hours. If you did not ask, ignore this message.\n",
    ),
    (
        "confirm-set-delivery",
        "Subject: Confirm your delivery change on {list}\n\n\
Someone (perhaps you) asked to change how {address} receives the list\n\
{list}: {mode}.\n\n\
To confirm, reply to this message or send any message to\n\n\
\x20 {confirm}\n\n\
within {hours} hours. If you did not ask, ignore this message.\n",
    ),
    (
        "login-link",
        "Subject: Your login link for {list}\n\n\
Someone (perhaps you) asked to log in to the list pages as an owner or\n\
moderator of {list}. Open this link within {minutes} minutes; it works once:\n\n\
\x20 {link}\n\n\
If you did not ask, ignore this message: nobody can log in without it.\n",
    ),
    (
        "options-link",
        "Subject: Your options for {list}\n\n\
Someone (perhaps you) asked for the options page of {address} on the list\n\
{list}. There you can stop or resume delivery, or leave. Open it within\n\
{hours} hours:\n\n\
\x20 {link}\n\n\
If you did not ask, ignore this message.\n",
    ),
    (
        "welcome",
        "Subject: Welcome to {list}\n\n\
{address} is now subscribed to {list}. Write to {list} to post.\n\n\
To leave, send a message to {leave}; for help, write \"help\" to {request}.\n",
    ),
    (
        "goodbye",
        "Subject: You have left {list}\n\n\
{address} is no longer subscribed to {list}. To join again, send a\n\
message to {join}.\n",
    ),
    (
        "help",
        "Subject: Help for {list}\n\n\
Commands go to {request}, one per line, in the subject or the body:\n\n\
\x20 subscribe [ADDRESS]     join the list (a confirmation is sent)\n\
\x20 unsubscribe [ADDRESS]   leave the list\n\
\x20 set regular             get every post\n\
\x20 set nomail              get nothing, stay subscribed\n\
\x20 set digest mime|plain   get digests instead of posts\n\
\x20 help                    this text\n\n\
Moderators can also write\n\n\
\x20 approve|reject|discard <MESSAGE-ID> SIGNATURE\n\n\
with the signature from the moderation notice.\n\n\
Shortcuts: {join} joins, {leave} leaves. The owners are at {owner}.\n",
    ),
    (
        "owner-join",
        "Subject: {address} joined {list}\n\n{address} has subscribed to {list} ({how}).\n",
    ),
    (
        "owner-leave",
        "Subject: {address} left {list}\n\n{address} has unsubscribed from {list} ({how}).\n",
    ),
];

/// A rendered template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub body: String,
}

/// Where templates are looked up.
#[derive(Debug, Clone, Default)]
pub struct Templates {
    /// `DATA_DIR/templates`; `None` = built-in defaults only.
    root: Option<PathBuf>,
}

impl Templates {
    pub fn new(data_dir: &Path) -> Self {
        Templates {
            root: Some(data_dir.join("templates")),
        }
    }

    pub fn builtin() -> Self {
        Templates { root: None }
    }

    /// The text of template `name` for `list` (site level without a list):
    /// the most specific override, else the built-in default.
    pub fn text(&self, name: &str, list: Option<&List>) -> Option<String> {
        if let Some(root) = &self.root {
            let file = format!("{name}.txt");
            let mut candidates = Vec::new();
            if let Some(l) = list {
                candidates.push(root.join("lists").join(l.key()).join(&file));
                candidates.push(root.join("domains").join(l.address.domain()).join(&file));
            }
            candidates.push(root.join(&file));
            for c in candidates {
                if let Ok(t) = std::fs::read_to_string(&c) {
                    return Some(t);
                }
            }
        }
        BUILTIN
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| t.to_string())
    }

    /// Renders template `name` with `vars`; `None` for an unknown name.
    pub fn render(
        &self,
        name: &str,
        list: Option<&List>,
        vars: &[(&str, &str)],
    ) -> Option<Rendered> {
        let text = self.text(name, list)?;
        let text = substitute(&text.replace("\r\n", "\n"), vars);
        let (subject, body) = match text.strip_prefix("Subject:") {
            Some(rest) => {
                let (s, b) = rest.split_once('\n').unwrap_or((rest, ""));
                (
                    s.trim().to_string(),
                    b.strip_prefix('\n').unwrap_or(b).to_string(),
                )
            }
            None => (name.to_string(), text),
        };
        Some(Rendered { subject, body })
    }
}

/// Replaces `{name}` placeholders.
pub fn substitute(text: &str, vars: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
            continue;
        }
        if tail.starts_with('{') {
            if let Some(end) = tail.find('}') {
                let key = &tail[1..end];
                if let Some((_, v)) = vars.iter().find(|(k, _)| *k == key) {
                    out.push_str(v);
                    rest = &tail[end + 1..];
                    continue;
                }
            }
        }
        out.push_str(&tail[..1]);
        rest = &tail[1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::Address;

    #[test]
    fn placeholders() {
        assert_eq!(
            substitute("a {x} {{x}} {y} }} {", &[("x", "1")]),
            "a 1 {x} {y} } {"
        );
    }

    #[test]
    fn overrides_list_then_domain_then_site_then_builtin() {
        let dir = tempfile::tempdir().unwrap();
        let t = Templates::new(dir.path());
        let list = List::new(Address::parse("dev@x.org").unwrap());
        let other = List::new(Address::parse("ops@x.org").unwrap());
        let vars = [("list", "dev@x.org"), ("member", "bob@y.org")];
        let r = t.render("bounce-disabled", Some(&list), &vars).unwrap();
        assert_eq!(r.subject, "Your delivery from dev@x.org is disabled");
        assert!(r.body.contains("bob@y.org"), "{}", r.body);
        let root = dir.path().join("templates");
        std::fs::create_dir_all(root.join("domains/x.org")).unwrap();
        std::fs::create_dir_all(root.join("lists/dev@x.org")).unwrap();
        std::fs::write(
            root.join("bounce-disabled.txt"),
            "Subject: site {list}\n\nS",
        )
        .unwrap();
        assert_eq!(
            t.render("bounce-disabled", Some(&list), &vars)
                .unwrap()
                .subject,
            "site dev@x.org"
        );
        std::fs::write(
            root.join("domains/x.org/bounce-disabled.txt"),
            "Subject: dom\n\nD",
        )
        .unwrap();
        std::fs::write(
            root.join("lists/dev@x.org/bounce-disabled.txt"),
            "Subject: lst\n\nL {member}",
        )
        .unwrap();
        let r = t.render("bounce-disabled", Some(&list), &vars).unwrap();
        assert_eq!(
            (r.subject.as_str(), r.body.as_str()),
            ("lst", "L bob@y.org")
        );
        assert_eq!(
            t.render("bounce-disabled", Some(&other), &vars)
                .unwrap()
                .subject,
            "dom"
        );
        assert_eq!(
            t.render("bounce-disabled", None, &vars).unwrap().subject,
            "site dev@x.org"
        );
        assert!(t.render("no-such-template", None, &vars).is_none());
    }
}
