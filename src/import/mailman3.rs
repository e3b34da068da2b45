//! GNU Mailman 3 through its REST API (3.1): domains, lists and their
//! configuration, rosters, members with delivery mode and status, bans and
//! the footer template, read into a [`Plan`].
//!
//! Reading is bounded: every answer is read up to [`RESPONSE_MAX`] bytes,
//! collections a page of [`PAGE`] entries at a time (Mailman's
//! `count`/`page`), at most [`MAX_PAGES`] pages each, with connect and
//! overall timeouts. The password goes only into the Authorization header
//! and is never logged or shown.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;
use serde_json::Value;

use super::{shorten, ListImport, MemberImport, Mode, Plan};

/// The most bytes read of one REST answer.
pub const RESPONSE_MAX: u64 = 16 * 1024 * 1024;

/// Entries asked for per page of a collection.
pub const PAGE: usize = 500;

/// The most pages read of one collection (5,000,000 entries).
pub const MAX_PAGES: usize = 10_000;

/// The most bytes read of a footer template.
const TEMPLATE_MAX: u64 = 64 * 1024;

/// Where and how to reach Mailman's REST API.
pub struct Source {
    /// The API's root, ending in `/3.1`.
    base: String,
    /// `Basic …`: the only place the password is kept.
    auth: String,
    agent: ureq::Agent,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source").field("base", &self.base).finish()
    }
}

impl Source {
    /// `url` is the REST root (`http://127.0.0.1:8001`, with or without `/3.1`).
    pub fn new(url: &str, user: &str, password: &str) -> Result<Self> {
        let url = url.trim().trim_end_matches('/');
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            bail!(
                "--url {url:?} must start with http:// or https:// (Mailman's [webservice] \
                 hostname and port, e.g. http://127.0.0.1:8001)"
            );
        }
        let base = if url.ends_with("/3.1") || url.ends_with("/3.0") {
            format!("{}/3.1", &url[..url.len() - 4])
        } else {
            format!("{url}/3.1")
        };
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_global(Some(Duration::from_secs(120)))
            .http_status_as_error(false)
            .build()
            .into();
        Ok(Source {
            base,
            auth: format!("Basic {token}"),
            agent,
        })
    }

    /// GETs `path` (under the API root, or an absolute URL) as JSON.
    fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value> {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}/{}", self.base, path.trim_start_matches('/'))
        };
        let mut req = self.agent.get(&url).header("Authorization", &self.auth);
        for (k, v) in query {
            req = req.query(k, v);
        }
        let mut resp = req.call().map_err(|e| {
            anyhow!(
                "cannot reach Mailman's REST API at {url}: {e}; check --url (Mailman's \
                 [webservice] hostname and port, e.g. http://127.0.0.1:8001) and that Mailman runs"
            )
        })?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(RESPONSE_MAX)
            .read_to_vec()
            .map_err(|e| anyhow!("reading Mailman's answer from {url}: {e}"))?;
        match status {
            200 => serde_json::from_slice(&body).map_err(|e| {
                anyhow!(
                    "{url} did not answer JSON ({e}): is --url Mailman's REST API \
                     (its [webservice] port), not Postorius or HyperKitty?"
                )
            }),
            401 | 403 => bail!(
                "Mailman refused the REST user and password ({status}): check --user and \
                 --password against admin_user and admin_pass in mailman.cfg's [webservice]"
            ),
            404 => bail!("{url}: not found (404)"),
            s => bail!(
                "Mailman answered {s} to {url}: {}",
                shorten(&String::from_utf8_lossy(&body), 300)
            ),
        }
    }

    /// Every entry of a paged collection.
    fn collection(&self, path: &str, query: &[(&str, String)]) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        for page in 1..=MAX_PAGES {
            let mut q = query.to_vec();
            q.push(("count", PAGE.to_string()));
            q.push(("page", page.to_string()));
            let v = self.get(path, &q)?;
            let entries = match v.get("entries") {
                Some(Value::Array(a)) => a.clone(),
                _ => Vec::new(),
            };
            let total = v.get("total_size").and_then(Value::as_u64).unwrap_or(0) as usize;
            let last = entries.len() < PAGE;
            out.extend(entries);
            if last || out.len() >= total {
                return Ok(out);
            }
        }
        bail!(
            "{path}: more than {} entries; import it in parts",
            MAX_PAGES * PAGE
        )
    }

    /// Checks URL and credentials with the cheapest call Mailman has.
    fn check(&self) -> Result<()> {
        self.get("system/versions", &[]).map(|_| ()).map_err(|e| {
            if e.to_string().contains("(404)") {
                anyhow!(
                    "{}/system/versions not found: --url must be Mailman's REST root \
                     (e.g. http://127.0.0.1:8001), not a page of Postorius",
                    self.base
                )
            } else {
                e
            }
        })
    }
}

/// Reads the lists named in `only` (posting addresses; all when empty).
pub fn read(src: &Source, only: &[String]) -> Result<Plan> {
    src.check()?;
    let lists = src.collection("lists", &[])?;
    let wanted: Vec<String> = only.iter().map(|a| a.trim().to_lowercase()).collect();
    let mut chosen = Vec::new();
    for l in &lists {
        let fqdn = text(l, "fqdn_listname").to_lowercase();
        if wanted.is_empty() || wanted.contains(&fqdn) {
            chosen.push(l.clone());
        }
    }
    for w in &wanted {
        if !chosen
            .iter()
            .any(|l| text(l, "fqdn_listname").eq_ignore_ascii_case(w))
        {
            let known: Vec<String> = lists.iter().map(|l| text(l, "fqdn_listname")).collect();
            bail!(
                "Mailman has no list {w} (its lists: {}); give --list as the posting address",
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            );
        }
    }
    let mut domains: Vec<String> = if wanted.is_empty() {
        src.collection("domains", &[])?
            .iter()
            .map(|d| text(d, "mail_host").to_lowercase())
            .collect()
    } else {
        chosen
            .iter()
            .map(|l| text(l, "mail_host").to_lowercase())
            .collect()
    };
    domains.sort();
    domains.dedup();
    let site_bans: Vec<String> = src
        .collection("bans", &[])?
        .iter()
        .map(|b| text(b, "email"))
        .collect();
    let mut plan = Plan {
        source: src.base.clone(),
        domains,
        lists: Vec::new(),
    };
    for l in &chosen {
        plan.lists
            .push(read_list(src, &text(l, "list_id"), &site_bans)?);
    }
    Ok(plan)
}

/// One list.
fn read_list(src: &Source, list_id: &str, site_bans: &[String]) -> Result<ListImport> {
    let config = src
        .get(&format!("lists/{list_id}/config"), &[])
        .with_context(|| format!("reading the configuration of {list_id}"))?;
    let mut l = ListImport {
        address: text(&config, "fqdn_listname"),
        origin: format!("mailman3 {list_id}"),
        ..ListImport::default()
    };
    map_config(&config, &mut l);
    let roster = |role: &str| -> Result<Vec<String>> {
        Ok(src
            .collection(&format!("lists/{list_id}/roster/{role}"), &[])?
            .iter()
            .map(|m| text(m, "email"))
            .collect())
    };
    l.set_addresses("owners", roster("owner")?, "owner roster");
    l.set_addresses("moderators", roster("moderator")?, "moderator roster");
    footer(src, &config, list_id, &mut l)?;
    members(src, &config, list_id, &mut l)?;
    l.bans = src
        .collection(&format!("lists/{list_id}/bans"), &[])?
        .iter()
        .map(|b| text(b, "email"))
        .collect();
    for b in site_bans {
        if !l.bans.contains(b) {
            l.bans.push(b.clone());
        }
    }
    Ok(l)
}

/// The list configuration keys that map, and those reported.
fn map_config(c: &Value, l: &mut ListImport) {
    let from = |key: &str| format!("{key} = {}", shorten(&c[key].to_string(), 60));
    for (mm, ours) in [
        ("description", "description"),
        ("subject_prefix", "subject_prefix"),
    ] {
        l.set(ours, text(c, mm), from(mm));
    }
    // What Mailman does with a non-member's post; `defer` passes it on to
    // the later rules, which accept it.
    let nonmember = text(c, "default_nonmember_action");
    let ours = match nonmember.as_str() {
        "hold" | "reject" | "discard" | "accept" => nonmember.as_str(),
        _ => "accept",
    };
    l.set("nonmember_action", ours, from("default_nonmember_action"));
    if let Some(kb) = c["max_message_size"].as_u64() {
        l.set(
            "max_message_size",
            (kb * 1024).to_string(),
            from("max_message_size"),
        );
    }
    if let Some(v) = c["emergency"].as_bool() {
        l.set("emergency", v.to_string(), from("emergency"));
    }
    if let Some(v) = c["max_days_to_hold"].as_u64() {
        l.set("max_days_to_hold", v.to_string(), from("max_days_to_hold"));
    }
    if let Some(v) = c["admin_notify_mchanges"].as_bool() {
        l.set(
            "notify_owner_on_join_leave",
            v.to_string(),
            from("admin_notify_mchanges"),
        );
    }
    let unsub = text(c, "unsubscription_policy");
    if !unsub.is_empty() {
        l.set(
            "confirm_leave",
            (unsub == "confirm" || unsub == "confirm_then_moderate").to_string(),
            from("unsubscription_policy"),
        );
        if unsub.contains("moderate") {
            l.unmapped(
                "unsubscription_policy",
                &unsub,
                "listrelay does not moderate leaving",
            );
        }
    }
    bounce_settings(c, l);
    dmarc(c, l);
    reported(c, l);
}

/// Mailman's bounce processing maps one to one onto listrelay's.
fn bounce_settings(c: &Value, l: &mut ListImport) {
    let from = |key: &str| format!("{key} = {}", c[key]);
    if let Some(v) = c["bounce_score_threshold"].as_f64() {
        l.set(
            "bounce_score_threshold",
            v.to_string(),
            from("bounce_score_threshold"),
        );
    }
    if let Some(v) = c["bounce_you_are_disabled_warnings"].as_u64() {
        l.set(
            "bounce_warnings",
            v.to_string(),
            from("bounce_you_are_disabled_warnings"),
        );
    }
    if let Some(v) = c["bounce_notify_owner_on_removal"].as_bool() {
        l.set(
            "bounce_notify_owner_on_removal",
            v.to_string(),
            from("bounce_notify_owner_on_removal"),
        );
    }
    for (mm, ours) in [
        ("bounce_info_stale_after", "bounce_info_stale_after_secs"),
        (
            "bounce_you_are_disabled_warnings_interval",
            "bounce_warning_interval_secs",
        ),
    ] {
        let v = text(c, mm);
        match duration_secs(&v) {
            Some(secs) => l.set(ours, secs.to_string(), from(mm)),
            None if v.is_empty() => {}
            None => l.unmapped(mm, &v, "not a duration listrelay reads; set it by hand"),
        }
    }
}

/// `dmarc_mitigate_action` and `dmarc_mitigate_unconditionally`.
fn dmarc(c: &Value, l: &mut ListImport) {
    let action = text(c, "dmarc_mitigate_action");
    let from = format!("dmarc_mitigate_action = {action}");
    match action.as_str() {
        "munge_from" => l.set("dmarc_mitigation", "munge_from", from),
        "wrap_message" => l.set("dmarc_mitigation", "wrap", from),
        "no_mitigation" => l.set("dmarc_mitigation", "none", from),
        "reject" | "discard" => {
            l.set("dmarc_mitigation", "none", from.clone());
            l.set("auth_fail_action", action.as_str(), from);
        }
        "" => {}
        other => l.unmapped("dmarc_mitigate_action", other, "unknown to this importer"),
    }
    // Only a mitigation has a "when"; listrelay's default stays otherwise.
    let mitigates = matches!(action.as_str(), "munge_from" | "wrap_message");
    if let Some(always) = c["dmarc_mitigate_unconditionally"]
        .as_bool()
        .filter(|_| mitigates)
    {
        l.set(
            "dmarc_mitigate_when",
            if always { "always" } else { "policy" },
            format!("dmarc_mitigate_unconditionally = {always}"),
        );
    }
}

/// Settings with no equivalent, reported when they do something.
fn reported(c: &Value, l: &mut ListImport) {
    let mut note = |key: &str, unless: &[&str], why: &str| {
        let v = match &c[key] {
            Value::String(s) => s.clone(),
            Value::Null => return,
            other => other.to_string(),
        };
        if !unless.contains(&v.as_str()) {
            l.unmapped(key, &v, why);
        }
    };
    note(
        "display_name",
        &[""],
        "listrelay names a list by its address and List-Id",
    );
    note("info", &[""], "listrelay has no list information page");
    note(
        "reply_goes_to_list",
        &["no_munging"],
        "listrelay does not rewrite Reply-To",
    );
    note(
        "reply_to_address",
        &[""],
        "listrelay does not rewrite Reply-To",
    );
    note(
        "anonymous_list",
        &["false"],
        "listrelay has no anonymous lists",
    );
    note(
        "personalize",
        &["none"],
        "listrelay builds one copy per post",
    );
    note(
        "archive_policy",
        &["never"],
        "listrelay keeps no archive; point list set archive_url at the old archive",
    );
    note(
        "subscription_policy",
        &["confirm"],
        "listrelay confirms every join by email; it has no approval step",
    );
    note(
        "digests_enabled",
        &["false"],
        "digests: see the list's digest settings",
    );
    note(
        "digest_volume_frequency",
        &[],
        "digests: see the list's digest settings",
    );
    note(
        "digest_size_threshold",
        &[],
        "digests: see the list's digest settings",
    );
    note(
        "require_explicit_destination",
        &["false"],
        "listrelay does not require the list address in To/Cc",
    );
    note(
        "max_num_recipients",
        &["0"],
        "listrelay does not count a post's recipients",
    );
    note(
        "filter_content",
        &["false"],
        "listrelay does not filter MIME parts",
    );
    note(
        "collapse_alternatives",
        &["false"],
        "listrelay does not change MIME structure",
    );
    note(
        "convert_html_to_plaintext",
        &["false"],
        "listrelay does not change MIME structure",
    );
    note(
        "acceptable_aliases",
        &["[]"],
        "route those addresses in the MTA",
    );
    for key in [
        "accept_these_nonmembers",
        "hold_these_nonmembers",
        "reject_these_nonmembers",
        "discard_these_nonmembers",
    ] {
        note(
            key,
            &["[]"],
            "listrelay has no per-sender non-member rules: make them members (moderated) or ban them",
        );
    }
    note(
        "default_member_action",
        &["defer", "accept", "hold"],
        "listrelay holds a moderated member's posts (it does not reject or discard them)",
    );
    note(
        "send_welcome_message",
        &["true"],
        "listrelay always welcomes a confirmed member",
    );
    note(
        "send_goodbye_message",
        &["true"],
        "listrelay always confirms a leave",
    );
    note(
        "gateway_to_news",
        &["false"],
        "listrelay has no NNTP gateway",
    );
    note(
        "gateway_to_mail",
        &["false"],
        "listrelay has no NNTP gateway",
    );
    note(
        "autorespond_postings",
        &["none"],
        "listrelay has no autoresponder",
    );
    note(
        "autorespond_requests",
        &["none"],
        "listrelay has no autoresponder",
    );
    note(
        "autorespond_owner",
        &["none"],
        "listrelay has no autoresponder",
    );
    let nonmember = text(c, "default_nonmember_action");
    if nonmember == "defer" {
        l.unmapped(
            "default_nonmember_action",
            "defer",
            "imported as accept: Mailman passes such posts on to its later rules, which accept them",
        );
    }
}

/// The footer: Mailman's `list:member:regular:footer` template, looked up
/// on the list, then its domain, then the site, as Mailman does. Its
/// list-wide placeholders are filled in; a footer with per-member ones
/// (`$user_email`…) cannot be, since listrelay builds one copy per post,
/// and is reported rather than imported.
fn footer(src: &Source, c: &Value, list_id: &str, l: &mut ListImport) -> Result<()> {
    let name = "list:member:regular:footer";
    let lookups = [
        format!("lists/{list_id}/uris"),
        format!("domains/{}/uris", text(c, "mail_host")),
        "uris".to_string(),
    ];
    let mut uri = None;
    for path in &lookups {
        let entries = match src.collection(path, &[]) {
            Ok(e) => e,
            Err(e) if e.to_string().contains("(404)") => continue,
            Err(e) => return Err(e),
        };
        if let Some(e) = entries.iter().find(|e| text(e, "name") == name) {
            uri = Some(text(e, "uri"));
            break;
        }
    }
    for header in ["list:member:regular:header", "list:member:digest:header"] {
        let set = src
            .collection(&format!("lists/{list_id}/uris"), &[])
            .unwrap_or_default()
            .iter()
            .any(|e| text(e, "name") == header);
        if set {
            l.unmapped(header, "set", "listrelay adds no header text to posts");
        }
    }
    let Some(uri) = uri else {
        l.set("footer", "", "no footer template (Mailman's built-in one)");
        l.unmapped(
            name,
            "Mailman's built-in footer",
            "not imported: listrelay's List-Unsubscribe header does its job without breaking DKIM",
        );
        return Ok(());
    };
    let template = match fetch_template(src, &uri) {
        Ok(t) => t,
        Err(e) => {
            l.unmapped(
                name,
                &uri,
                &format!("{e}; copy it by hand with list set footer"),
            );
            return Ok(());
        }
    };
    let (expanded, unknown) = expand(&template, c);
    if unknown.is_empty() {
        l.set(
            "footer",
            expanded.trim_end_matches('\n'),
            format!("{name} = {uri}"),
        );
    } else {
        l.unmapped(
            name,
            &template,
            &format!(
                "not imported: listrelay sends one copy per post and cannot fill {}",
                unknown.join(", ")
            ),
        );
    }
    Ok(())
}

/// A template's text: over HTTP(S) without Mailman's credentials, or a
/// `file:` URI read here (the importer usually runs on Mailman's host).
fn fetch_template(src: &Source, uri: &str) -> Result<String> {
    use std::io::Read;
    if let Some(path) = uri.strip_prefix("file://") {
        let f = std::fs::File::open(path)
            .with_context(|| format!("{uri} is not readable on this host"))?;
        let mut bytes = Vec::new();
        f.take(TEMPLATE_MAX).read_to_end(&mut bytes)?;
        return Ok(String::from_utf8_lossy(&bytes).into_owned());
    }
    if uri.starts_with("http://") || uri.starts_with("https://") {
        let mut resp = src
            .agent
            .get(uri)
            .call()
            .map_err(|e| anyhow!("fetching {uri}: {e}"))?;
        if resp.status().as_u16() != 200 {
            bail!("fetching {uri}: {}", resp.status());
        }
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(TEMPLATE_MAX)
            .read_to_vec()
            .map_err(|e| anyhow!("reading {uri}: {e}"))?;
        return Ok(String::from_utf8_lossy(&bytes).into_owned());
    }
    bail!("{uri}: a template URI this importer cannot read")
}

/// Fills Mailman's list-wide placeholders (`utilities/string.py` `expand`);
/// returns the text and the placeholders left unfilled.
fn expand(template: &str, c: &Value) -> (String, Vec<String>) {
    let address = text(c, "fqdn_listname");
    let known: HashMap<&str, String> = [
        ("listname", address.clone()),
        ("list_id", text(c, "list_id")),
        ("display_name", text(c, "display_name")),
        ("short_listname", text(c, "list_name")),
        ("domain", text(c, "mail_host")),
        ("description", text(c, "description")),
        ("info", text(c, "info")),
        ("request_email", text(c, "request_address")),
        ("owner_email", text(c, "owner_address")),
        ("language", text(c, "preferred_language")),
    ]
    .into_iter()
    .collect();
    let mut out = String::with_capacity(template.len());
    let mut unknown = Vec::new();
    let mut rest = template;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
            continue;
        }
        let (name, consumed) = match after.strip_prefix('{') {
            Some(inner) => match inner.find('}') {
                Some(end) => (&inner[..end], end + 2),
                None => ("", 0),
            },
            None => {
                let end = after
                    .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
                    .unwrap_or(after.len());
                (&after[..end], end)
            }
        };
        if name.is_empty() {
            out.push('$');
            rest = after;
            continue;
        }
        match known.get(name) {
            Some(v) => out.push_str(v),
            None => {
                out.push_str(&rest[i..i + 1 + consumed]);
                if !unknown.iter().any(|u| u == &format!("${name}")) {
                    unknown.push(format!("${name}"));
                }
            }
        }
        rest = &after[consumed..];
    }
    out.push_str(rest);
    (out, unknown)
}

/// The members with mode, status and moderation. The member resource has
/// no delivery status, so the few disabled members are found with one
/// search per status (`members/find?delivery_status=…`), not one request
/// per member.
fn members(src: &Source, c: &Value, list_id: &str, l: &mut ListImport) -> Result<()> {
    let default_action = text(c, "default_member_action");
    let fields = ["email", "delivery_mode", "moderation_action"];
    let mut query: Vec<(&str, String)> =
        vec![("list_id", list_id.to_string()), ("role", "member".into())];
    query.extend(fields.iter().map(|f| ("fields", f.to_string())));
    let found = src.collection("members/find", &query)?;
    let mut index = HashMap::new();
    let mut summaries = 0;
    for m in &found {
        let email = text(m, "email");
        let mode = match text(m, "delivery_mode").as_str() {
            "plaintext_digests" => Mode::DigestPlain,
            "mime_digests" => Mode::DigestMime,
            "summary_digests" => {
                summaries += 1;
                Mode::DigestPlain
            }
            _ => Mode::Regular,
        };
        let action = match text(m, "moderation_action") {
            a if a.is_empty() => default_action.clone(),
            a => a,
        };
        index.insert(email.to_lowercase(), l.members.len());
        l.members.push(MemberImport {
            mode,
            moderated: matches!(action.as_str(), "hold" | "reject" | "discard"),
            ..MemberImport::regular(&email)
        });
    }
    if summaries > 0 {
        l.unmapped(
            "delivery_mode",
            &format!("summary_digests ({summaries} member(s))"),
            "imported as digest_plain (listrelay has no summary-only digest)",
        );
    }
    for status in ["by_user", "by_bounces", "by_moderator", "unknown"] {
        let q = vec![
            ("list_id", list_id.to_string()),
            ("role", "member".to_string()),
            ("delivery_status", status.to_string()),
            ("fields", "email".to_string()),
        ];
        for m in src.collection("members/find", &q)? {
            let Some(&i) = index.get(&text(&m, "email").to_lowercase()) else {
                continue;
            };
            let member = &mut l.members[i];
            // The member's own choice is listrelay's `nomail`; the others
            // turn delivery off, as bounces or an owner do in listrelay.
            if status == "by_user" {
                member.mode = Mode::Nomail;
            } else {
                member.delivery_enabled = false;
            }
        }
    }
    Ok(())
}

/// A Mailman duration (`7d`, `1w`, `12h`, `30m`, `45s`, or combinations).
fn duration_secs(v: &str) -> Option<u64> {
    let mut total = 0u64;
    let mut num = String::new();
    for ch in v.trim().chars() {
        if ch.is_ascii_digit() {
            num.push(ch);
            continue;
        }
        let n: u64 = num.parse().ok()?;
        num.clear();
        let per = match ch {
            'w' => 7 * 86_400,
            'd' => 86_400,
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(per)?)?;
    }
    if !num.is_empty() {
        total = total.checked_add(num.parse::<u64>().ok()? * 86_400)?;
    }
    Some(total)
}

/// A string field ("" when absent or not a string).
fn text(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn list_placeholders_are_filled_member_ones_reported() {
        let c = json!({"fqdn_listname": "dev@x.org", "display_name": "Dev", "list_name": "dev",
                       "mail_host": "x.org"});
        let (t, unknown) = expand("$display_name: ${listname} $$5 $short_listname", &c);
        assert_eq!(t, "Dev: dev@x.org $5 dev");
        assert!(unknown.is_empty());
        let (_, unknown) = expand("to $user_email at $domain", &c);
        assert_eq!(unknown, ["$user_email"]);
    }

    #[test]
    fn mailman_durations() {
        assert_eq!(duration_secs("7d"), Some(7 * 86_400));
        assert_eq!(duration_secs("1w2h"), Some(7 * 86_400 + 7200));
        assert_eq!(duration_secs("x"), None);
    }

    #[test]
    fn the_password_is_not_in_debug() {
        let s = Source::new("http://127.0.0.1:1", "u", "s3cret").unwrap();
        assert!(!format!("{s:?}").contains("s3cret"));
        assert!(format!("{s:?}").contains("http://127.0.0.1:1/3.1"));
    }
}
