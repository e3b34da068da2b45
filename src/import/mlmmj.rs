//! mlmmj list directories (mlmmj 1.3, `/usr/share/doc/mlmmj/TUNABLES`):
//! `control/` files and the `subscribers.d`, `digesters.d` and
//! `nomailsubs.d` member files, read into a [`ListImport`].
//!
//! Every file is read within bounds: control files up to [`CONTROL_MAX`]
//! bytes, member files a line at a time ([`super::bounded_lines`]).

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::{bounded_lines, shorten, ListImport, MemberImport, Mode, Plan};

/// The most bytes read of one control file (a footer is the longest).
pub const CONTROL_MAX: u64 = 64 * 1024;

/// Control files this reader maps; every other file in `control/` is
/// reported as having no equivalent, with its value.
const MAPPED: &[&str] = &[
    "listaddress",
    "prefix",
    "footer",
    "owner",
    "moderators",
    "moderated",
    "subonlypost",
    "modnonsubposts",
    "nosubonlydenymails",
    "maxmailsize",
    "notifysub",
    "access",
];

/// What listrelay does about the control files it has no setting for.
fn note_for(file: &str) -> &'static str {
    match file {
        "closedlist" | "closedlistsub" => {
            "listrelay always takes join and leave by email; a closed list needs an MTA rule"
        }
        "submod" => "listrelay has no subscription moderation",
        "modonlypost" => {
            "listrelay has no moderators-only posting; set nonmember_action and moderate members instead"
        }
        "tocc" | "notoccdenymails" => "listrelay does not require the list address in To/Cc",
        "customheaders" | "delheaders" | "addtohdr" => {
            "listrelay does not edit headers beyond the List-* set (it breaks DKIM)"
        }
        "verp" | "maxverprecips" => "listrelay's own VERP: list set verp_percent",
        "digestinterval" | "digestmaxmails" | "nodigesttext" | "nodigestsub" => {
            "digest timing: see the list's digest settings"
        }
        "relayhost" | "smtpport" | "smtphelo" => "listrelay re-injects through [smtp] relay",
        "modreqlife" => "listrelay: list set max_days_to_hold (days)",
        "bouncelife" => "listrelay scores bounces: list set bounce_score_threshold",
        "noarchive" | "noget" | "subonlyget" => "listrelay keeps no archive (list set archive_url)",
        "notmetoo" => "listrelay sends the poster a copy like every member",
        "delimiter" => "listrelay: [intake] recipient_delimiter, site-wide",
        _ => "no listrelay equivalent",
    }
}

/// Reads each directory as one list.
pub fn read(dirs: &[std::path::PathBuf]) -> Result<Plan> {
    let mut plan = Plan {
        source: "mlmmj".into(),
        ..Plan::default()
    };
    for dir in dirs {
        plan.lists.push(read_list(dir)?);
    }
    Ok(plan)
}

/// One mlmmj list directory.
pub fn read_list(dir: &Path) -> Result<ListImport> {
    let control = dir.join("control");
    let Some(addresses) = control_text(&control, "listaddress")? else {
        bail!(
            "{} is not an mlmmj list directory ({}/listaddress is missing): give the list's own \
             directory, e.g. /var/spool/mlmmj/dev",
            dir.display(),
            control.display()
        );
    };
    let mut lines = addresses.lines().map(str::trim).filter(|l| !l.is_empty());
    let Some(address) = lines.next() else {
        bail!(
            "{}/listaddress is empty: its first line must be the list's address",
            control.display()
        );
    };
    let mut l = ListImport {
        address: address.to_string(),
        origin: dir.display().to_string(),
        ..ListImport::default()
    };
    for alias in lines {
        l.unmapped(
            "listaddress",
            alias,
            "another address of the list: route it to the list address in the MTA",
        );
    }
    settings(&control, &mut l)?;
    members(dir, &mut l)?;
    unmapped_controls(&control, &mut l)?;
    Ok(l)
}

/// The mapped control files.
fn settings(control: &Path, l: &mut ListImport) -> Result<()> {
    let first = |name| -> Result<Option<String>> {
        Ok(control_text(control, name)?.map(|t| t.lines().next().unwrap_or("").trim().to_string()))
    };
    // mlmmj puts a space between its prefix and the Subject.
    let prefix = first("prefix")?.unwrap_or_default();
    let value = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix} ")
    };
    l.set("subject_prefix", value, format!("prefix = {prefix:?}"));
    let footer = control_text(control, "footer")?.unwrap_or_default();
    l.set(
        "footer",
        footer.trim_end_matches('\n'),
        format!("footer = {:?}", shorten(&footer, 60)),
    );
    let owners = list_lines(control, "owner")?;
    l.set_addresses("owners", owners, "owner");
    let moderators = list_lines(control, "moderators")?;
    l.set_addresses("moderators", moderators, "moderators");
    let moderated = exists(control, "moderated");
    l.set(
        "emergency",
        moderated.to_string(),
        format!("moderated {}", if moderated { "present" } else { "absent" }),
    );
    // Without subonlypost mlmmj distributes anyone's post.
    let nonmember = if !exists(control, "subonlypost") {
        ("accept", "subonlypost absent")
    } else if exists(control, "modnonsubposts") {
        ("hold", "subonlypost + modnonsubposts")
    } else if exists(control, "nosubonlydenymails") {
        ("discard", "subonlypost + nosubonlydenymails")
    } else {
        ("reject", "subonlypost")
    };
    l.set("nonmember_action", nonmember.0, nonmember.1);
    match first("maxmailsize")? {
        Some(v) => match v.parse::<u64>() {
            Ok(n) => l.set(
                "max_message_size",
                n.to_string(),
                format!("maxmailsize = {n}"),
            ),
            Err(_) => l.unmapped("maxmailsize", &v, "not a number of bytes; ignored"),
        },
        None => l.set("max_message_size", "0", "maxmailsize absent"),
    }
    let notify = exists(control, "notifysub");
    l.set(
        "notify_owner_on_join_leave",
        notify.to_string(),
        format!("notifysub {}", if notify { "present" } else { "absent" }),
    );
    if let Some(rules) = control_text(control, "access")? {
        access(&rules, l);
    }
    Ok(())
}

/// `control/access`: a rule that refuses one sender address becomes a ban;
/// every other rule is reported. The rules are POSIX regexps on whole
/// header lines; listrelay's bans match the sender's address.
fn access(rules: &str, l: &mut ListImport) {
    for rule in rules.lines().map(str::trim).filter(|r| !r.is_empty()) {
        let (action, regexp) = rule.split_once(' ').unwrap_or((rule, ""));
        let regexp = regexp.trim();
        let banned = matches!(action, "deny" | "discard")
            .then(|| from_address(regexp))
            .flatten();
        match banned {
            Some(address) => l.bans.push(address),
            None if action == "allow" && regexp.is_empty() => {} // the usual last rule
            None => l.unmapped(
                "access",
                rule,
                "only `deny|discard ^From:.*ADDRESS` rules map (to bans); handle this one in the MTA or by moderation",
            ),
        }
    }
}

/// The address a `^From:.*ADDRESS` regexp names, if it names exactly one.
fn from_address(regexp: &str) -> Option<String> {
    let rest = regexp.strip_prefix("^From:")?;
    let rest = rest.trim_start_matches(' ');
    let rest = rest.strip_prefix(".*").unwrap_or(rest);
    let unescaped = rest.replace("\\.", ".");
    let plain = !unescaped.contains(['*', '[', '(', '|', '^', '$', '\\', '+', '?', '{', ' ']);
    (plain && crate::address::Address::parse(&unescaped).is_ok()).then_some(unescaped)
}

/// The member files. An address in more than one of them (mlmmj keeps the
/// three sets apart) gets the mode that delivers most: regular, then
/// digest, then no mail.
fn members(dir: &Path, l: &mut ListImport) -> Result<()> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let sets = [
        ("subscribers.d", Mode::Regular),
        ("digesters.d", Mode::DigestMime),
        ("nomailsubs.d", Mode::Nomail),
    ];
    let mut both = 0u64;
    let mut skipped = 0u64;
    for (sub, mode) in sets {
        let path = dir.join(sub);
        let Ok(entries) = std::fs::read_dir(&path) else {
            continue; // an absent set has no members
        };
        let mut files: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        files.sort();
        for file in files.iter().filter(|f| f.is_file()) {
            let f = std::fs::File::open(file)
                .with_context(|| format!("reading {}: check its permissions", file.display()))?;
            skipped += bounded_lines(f, |line| {
                let address = line.trim();
                if address.is_empty() {
                    return Ok(());
                }
                match seen.get(&address.to_lowercase()) {
                    Some(_) => both += 1,
                    None => {
                        seen.insert(address.to_lowercase(), l.members.len());
                        l.members.push(MemberImport {
                            mode,
                            ..MemberImport::regular(address)
                        });
                    }
                }
                Ok(())
            })?;
        }
    }
    if both > 0 {
        l.unmapped(
            "subscribers.d/digesters.d/nomailsubs.d",
            &format!("{both} address(es) in more than one set"),
            "listrelay gives a member one mode: kept the first of regular, digest, no mail",
        );
    }
    if skipped > 0 {
        l.unmapped(
            "subscribers.d",
            &format!("{skipped} line(s) over {} bytes", super::MAX_LINE),
            "not addresses; skipped",
        );
    }
    Ok(())
}

/// Every control file this reader does not map, with its first line.
fn unmapped_controls(control: &Path, l: &mut ListImport) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(control) else {
        return Ok(());
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !MAPPED.contains(&n.as_str()))
        .collect();
    names.sort();
    for name in names {
        let text = control_text(control, &name)?.unwrap_or_default();
        let value = match text.lines().next() {
            Some(v) if !v.trim().is_empty() => v.trim().to_string(),
            _ => "present".to_string(),
        };
        l.unmapped(&name, &value, note_for(&name));
    }
    Ok(())
}

fn exists(control: &Path, name: &str) -> bool {
    control.join(name).is_file()
}

/// A control file's text (at most [`CONTROL_MAX`] bytes), `None` if absent.
fn control_text(control: &Path, name: &str) -> Result<Option<String>> {
    let path = control.join(name);
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(e).with_context(|| {
                format!(
                    "reading {}: run the import as a user who can read the list directory",
                    path.display()
                )
            })
        }
    };
    let mut bytes = Vec::new();
    file.take(CONTROL_MAX)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// The non-empty lines of a list control file (`owner`, `moderators`).
fn list_lines(control: &Path, name: &str) -> Result<Vec<String>> {
    Ok(control_text(control, name)?
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_rules_that_name_one_sender_become_bans() {
        let mut l = ListImport::default();
        access(
            "deny ^From:.*spam@x\\.org\ndiscard ^From: troll@y.org\ndeny ^Subject:.*BUY\nallow\n",
            &mut l,
        );
        assert_eq!(l.bans, ["spam@x.org", "troll@y.org"]);
        assert_eq!(l.unmapped.len(), 1);
        assert_eq!(l.unmapped[0].value, "deny ^Subject:.*BUY");
        assert_eq!(from_address("^From:.*@x\\.org"), None);
    }
}
