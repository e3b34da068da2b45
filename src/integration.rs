//! Configuration snippets for Postfix and Exim (`listrelay integration`).
//!
//! The snippets are templates under `integrations/` (compiled in with
//! `include_str!`), so the `listrelay integration postfix|exim` command and the
//! real-MTA test harness (`tests/support/`) print and use exactly the same text.
//!
//! Template language (deliberately tiny):
//! * `{{NAME}}` is replaced by a value (see [`postfix`] and [`exim`] for the names);
//! * a line holding only `{{#each domain}}`, `{{#each local_part}}`,
//!   `{{#if tcp}}` or `{{#if unix}}` opens a block that a line holding only
//!   `{{/}}` closes; `each` repeats the block per domain / per local part of
//!   the current domain, `if` keeps it for that kind of LMTP target.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Where the MTA reaches listrelay's LMTP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LmtpTarget {
    /// `host:port`, e.g. `127.0.0.1:8024` or `[::1]:8024`.
    Tcp(String),
    /// A Unix-domain socket path.
    Unix(PathBuf),
}

/// Everything the snippets depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    pub domains: Vec<DomainParams>,
    pub lmtp: LmtpTarget,
    /// The MTA's re-injection SMTP listener, `host:port` (e.g. `127.0.0.1:10025`).
    pub reinject: String,
    /// Recipient delimiter of the VERP addresses (`+`).
    pub delimiter: char,
}

/// One list domain and every valid local part at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainParams {
    pub name: String,
    /// Every valid local part (`dev`, `dev-bounces`, `dev-request`, ...),
    /// already expanded by the caller.
    pub local_parts: Vec<String>,
}

/// One rendered configuration file (or fragment of one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snippet {
    /// File name under `integrations/<mta>/`.
    pub file: &'static str,
    /// Where it goes, in one line.
    pub description: &'static str,
    pub contents: String,
}

const PF_MAIN: &str = include_str!("../integrations/postfix/main.cf.snippet");
const PF_MASTER: &str = include_str!("../integrations/postfix/master.cf.snippet");
const PF_TRANSPORT: &str = include_str!("../integrations/postfix/transport");
const PF_RELAY_RCPTS: &str = include_str!("../integrations/postfix/relay_recipients");
const EX_MAIN: &str = include_str!("../integrations/exim/main.conf.snippet");
const EX_ACL: &str = include_str!("../integrations/exim/acl.conf.snippet");
const EX_ROUTER: &str = include_str!("../integrations/exim/router.conf.snippet");
const EX_TRANSPORT: &str = include_str!("../integrations/exim/transport.conf.snippet");

/// Splits `host:port`, `[v6]:port` or `v6-without-brackets:port`
/// into (host without brackets, port).
fn split_host_port(s: &str) -> (String, String) {
    if let Some(rest) = s.strip_prefix('[') {
        if let Some((host, port)) = rest.split_once("]:") {
            return (host.to_string(), port.to_string());
        }
    }
    match s.rsplit_once(':') {
        Some((h, p)) => (h.trim_matches(['[', ']']).to_string(), p.to_string()),
        None => (s.to_string(), String::new()),
    }
}

fn is_v6(host: &str) -> bool {
    matches!(host.parse::<IpAddr>(), Ok(IpAddr::V6(_)))
}

/// `host:port` as Postfix writes it (IPv6 in brackets).
fn postfix_host_port(s: &str) -> String {
    let (h, p) = split_host_port(s);
    if is_v6(&h) {
        format!("[{h}]:{p}")
    } else {
        format!("{h}:{p}")
    }
}

/// The transport table's next hop. A Unix socket goes through the snippet's
/// own `listrelay` service (never chrooted), not the stock `lmtp` one: Debian
/// runs `lmtp` chrooted in /var/spool/postfix, where the socket's path does
/// not exist.
fn postfix_nexthop(t: &LmtpTarget) -> String {
    match t {
        LmtpTarget::Tcp(hp) => format!("lmtp:inet:{}", postfix_host_port(hp)),
        LmtpTarget::Unix(path) => format!("{POSTFIX_UNIX_SERVICE}:unix:{}", path.display()),
    }
}

/// The master.cf service name of the Unix-socket LMTP client (the snippet
/// defines it; main.cf's per-transport limits are named after it).
const POSTFIX_UNIX_SERVICE: &str = "listrelay";

/// A route_list host for Exim: IPv6 colons doubled, names resolved `byname`.
fn exim_route_host(host: &str) -> String {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(_)) => host.replace(':', "::"),
        Ok(IpAddr::V4(_)) => host.to_string(),
        Err(_) => format!("{host} byname"),
    }
}

/// A router name fragment: `lists.example.org` -> `lists_example_org`.
fn domain_id(d: &str) -> String {
    d.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

struct Ctx<'a> {
    p: &'a Params,
    vars: Vec<(&'static str, String)>,
}

impl Ctx<'_> {
    fn render(&self, template: &str) -> String {
        let lines: Vec<&str> = template.lines().collect();
        let mut out = String::new();
        self.block(&lines, None, None, &mut out);
        out
    }

    fn block(
        &self,
        lines: &[&str],
        dom: Option<&DomainParams>,
        lp: Option<&str>,
        out: &mut String,
    ) {
        let mut i = 0;
        while i < lines.len() {
            let t = lines[i].trim();
            if t.starts_with("{{#") {
                let end = matching_close(lines, i);
                let body = &lines[i + 1..end];
                match t {
                    "{{#each domain}}" => {
                        for d in &self.p.domains {
                            self.block(body, Some(d), None, out);
                        }
                    }
                    "{{#each local_part}}" => {
                        let d = dom.expect("{{#each local_part}} outside {{#each domain}}");
                        for l in &d.local_parts {
                            self.block(body, Some(d), Some(l), out);
                        }
                    }
                    "{{#if tcp}}" => {
                        if matches!(self.p.lmtp, LmtpTarget::Tcp(_)) {
                            self.block(body, dom, lp, out);
                        }
                    }
                    "{{#if unix}}" => {
                        if matches!(self.p.lmtp, LmtpTarget::Unix(_)) {
                            self.block(body, dom, lp, out);
                        }
                    }
                    other => panic!("unknown template block {other}"),
                }
                i = end + 1;
                continue;
            }
            out.push_str(&self.subst(lines[i], dom, lp));
            out.push('\n');
            i += 1;
        }
    }

    fn subst(&self, line: &str, dom: Option<&DomainParams>, lp: Option<&str>) -> String {
        if !line.contains("{{") {
            return line.to_string();
        }
        let mut s = line.to_string();
        for (k, v) in &self.vars {
            s = s.replace(&format!("{{{{{k}}}}}"), v);
        }
        if let Some(d) = dom {
            s = s
                .replace("{{DOMAIN}}", &d.name)
                .replace("{{DOMAIN_ID}}", &domain_id(&d.name))
                .replace("{{LOCAL_PARTS}}", &d.local_parts.join(" : "));
        }
        if let Some(l) = lp {
            s = s.replace("{{LOCAL_PART}}", l);
        }
        assert!(!s.contains("{{"), "unrendered placeholder in: {s}");
        s
    }
}

fn matching_close(lines: &[&str], open: usize) -> usize {
    let mut depth = 0;
    for (j, l) in lines.iter().enumerate().skip(open) {
        let t = l.trim();
        if t.starts_with("{{#") {
            depth += 1;
        } else if t == "{{/}}" {
            depth -= 1;
            if depth == 0 {
                return j;
            }
        }
    }
    panic!("template block opened by {:?} is not closed", lines[open]);
}

/// Postfix's `verp_delimiter_filter`: its default `-=+`, plus the site's
/// delimiter when it is another one (XVERP with `#` is refused otherwise).
fn verp_filter(delimiter: char) -> String {
    let mut f = String::from("-=+");
    if !f.contains(delimiter) {
        f.push(delimiter);
    }
    f
}

/// Renders the Postfix snippets: `main.cf.snippet`, `master.cf.snippet`,
/// `transport`, `relay_recipients`.
pub fn postfix(p: &Params) -> Vec<Snippet> {
    let ctx = Ctx {
        p,
        vars: vec![
            (
                "DOMAINS",
                p.domains
                    .iter()
                    .map(|d| d.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            ("DELIMITER", p.delimiter.to_string()),
            ("VERP_FILTER", verp_filter(p.delimiter)),
            ("REINJECT", postfix_host_port(&p.reinject)),
            ("LMTP_NEXTHOP", postfix_nexthop(&p.lmtp)),
        ],
    };
    vec![
        Snippet {
            file: "main.cf.snippet",
            description: "merge into main.cf",
            contents: ctx.render(PF_MAIN),
        },
        Snippet {
            file: "master.cf.snippet",
            description: "append to master.cf (the re-injection smtpd)",
            contents: ctx.render(PF_MASTER),
        },
        Snippet {
            file: "transport",
            description: "install as $config_directory/listrelay/transport",
            contents: ctx.render(PF_TRANSPORT),
        },
        Snippet {
            file: "relay_recipients",
            description: "install as $config_directory/listrelay/relay_recipients",
            contents: ctx.render(PF_RELAY_RCPTS),
        },
    ]
}

/// Renders the Exim snippets: `main.conf.snippet`, `acl.conf.snippet`,
/// `router.conf.snippet`, `transport.conf.snippet`.
pub fn exim(p: &Params) -> Vec<Snippet> {
    let (rhost, rport) = split_host_port(&p.reinject);
    let (lhost, lport, lsock) = match &p.lmtp {
        LmtpTarget::Tcp(hp) => {
            let (h, port) = split_host_port(hp);
            (exim_route_host(&h), port, String::new())
        }
        LmtpTarget::Unix(path) => (String::new(), String::new(), path.display().to_string()),
    };
    let ctx = Ctx {
        p,
        vars: vec![
            (
                "DOMAIN_LIST",
                p.domains
                    .iter()
                    .map(|d| d.name.as_str())
                    .collect::<Vec<_>>()
                    .join(" : "),
            ),
            ("DELIMITER", p.delimiter.to_string()),
            ("REINJECT", p.reinject.clone()),
            ("REINJECT_PORT", rport.clone()),
            ("REINJECT_IFACE", format!("{rhost}.{rport}")),
            ("LMTP_ROUTE_HOST", lhost),
            ("LMTP_PORT", lport),
            ("LMTP_SOCKET", lsock),
        ],
    };
    vec![
        Snippet {
            file: "main.conf.snippet",
            description: "main section, before the first \"begin\"",
            contents: ctx.render(EX_MAIN),
        },
        Snippet {
            file: "acl.conf.snippet",
            description: "top of the RCPT ACL (acl_smtp_rcpt)",
            contents: ctx.render(EX_ACL),
        },
        Snippet {
            file: "router.conf.snippet",
            description: "routers section, before dnslookup",
            contents: ctx.render(EX_ROUTER),
        },
        Snippet {
            file: "transport.conf.snippet",
            description: "transports section",
            contents: ctx.render(EX_TRANSPORT),
        },
    ]
}

/// All snippets as one stream, each under a header naming its file and where
/// it goes (`listrelay integration MTA` without `--out`).
pub fn one_stream(snippets: &[Snippet]) -> String {
    snippets
        .iter()
        .map(|s| format!("# ===== {} — {}\n{}\n", s.file, s.description, s.contents))
        .collect()
}

/// Writes each snippet as its own file in `dir` (created if needed) and
/// returns the shell commands that apply them to `mta` (`postfix` or `exim`),
/// for the operator to review and run.
pub fn write_files(mta: &str, snippets: &[Snippet], dir: &Path) -> std::io::Result<String> {
    let context = |e: std::io::Error, what: &Path| {
        std::io::Error::new(
            e.kind(),
            format!(
                "writing {}: {e} (choose a writable --out directory)",
                what.display()
            ),
        )
    };
    std::fs::create_dir_all(dir).map_err(|e| context(e, dir))?;
    let dir = std::path::absolute(dir)?;
    for s in snippets {
        let path = dir.join(s.file);
        std::fs::write(&path, &s.contents).map_err(|e| context(e, &path))?;
    }
    Ok(match mta {
        "postfix" => postfix_commands(snippets, &dir),
        _ => exim_commands(&dir),
    })
}

/// A word quoted for sh(1).
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The `name = value` settings of a rendered main.cf snippet, in order.
fn main_cf_settings(contents: &str) -> Vec<(&str, &str)> {
    contents
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with(char::is_whitespace))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect()
}

/// The commands that install the Postfix files written to `dir`: the two
/// tables, main.cf with `postconf -e` (one line per setting of the snippet),
/// the re-injection service appended to master.cf once, then check and reload.
fn postfix_commands(snippets: &[Snippet], dir: &Path) -> String {
    let file = |name: &str| sh_quote(&dir.join(name).display().to_string());
    let mut out = format!(
        "# Apply the files in {} to Postfix (as root). If a main.cf parameter below\n\
         # is already set for other domains, append to it instead (integrations/postfix/README.md).\n\
         conf=$(postconf -h config_directory)\n\
         install -d \"$conf/listrelay\"\n\
         install -m 644 {} \"$conf/listrelay/transport\"\n\
         install -m 644 {} \"$conf/listrelay/relay_recipients\"\n",
        dir.display(),
        file("transport"),
        file("relay_recipients"),
    );
    if let Some(main) = snippets.iter().find(|s| s.file == "main.cf.snippet") {
        for (name, value) in main_cf_settings(&main.contents) {
            out.push_str(&format!(
                "postconf -e {}\n",
                sh_quote(&format!("{name} = {value}"))
            ));
        }
    }
    out.push_str(&format!(
        "grep -q listrelay-reinject \"$conf/master.cf\" || cat {} >> \"$conf/master.cf\"\n\
         postfix check && postfix reload\n",
        file("master.cf.snippet")
    ));
    out
}

/// Where the Exim files written to `dir` go, for Debian's split configuration
/// (`dc_use_split_config='true'`); the ACL statements are merged by hand.
fn exim_commands(dir: &Path) -> String {
    let file = |name: &str| sh_quote(&dir.join(name).display().to_string());
    format!(
        "# Apply the files in {} to Exim, Debian split configuration (as root);\n\
         # for a single exim4.conf paste each file into its section instead.\n\
         install -m 644 {} /etc/exim4/conf.d/main/00_listrelay\n\
         install -m 644 {} /etc/exim4/conf.d/router/150_listrelay\n\
         install -m 644 {} /etc/exim4/conf.d/transport/30_listrelay\n\
         # By hand: put the statements of {} at the top of acl_check_rcpt\n\
         # (conf.d/acl/30_exim4-config_check_rcpt), and add +listrelay_domains to\n\
         # dc_relay_domains in /etc/exim4/update-exim4.conf.conf. Then:\n\
         update-exim4.conf && systemctl restart exim4\n",
        dir.display(),
        file("main.conf.snippet"),
        file("router.conf.snippet"),
        file("transport.conf.snippet"),
        file("acl.conf.snippet"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(lmtp: LmtpTarget) -> Params {
        Params {
            domains: vec![
                DomainParams {
                    name: "lists.example.org".into(),
                    local_parts: vec!["dev".into(), "dev-bounces".into(), "dev-request".into()],
                },
                DomainParams {
                    name: "ml.example.net".into(),
                    local_parts: vec!["ann".into(), "ann-bounces".into()],
                },
            ],
            lmtp,
            reinject: "127.0.0.1:10025".into(),
            delimiter: '+',
        }
    }

    fn file<'a>(s: &'a [Snippet], name: &str) -> &'a str {
        &s.iter()
            .find(|x| x.file == name)
            .unwrap_or_else(|| panic!("no {name}"))
            .contents
    }

    fn tcp() -> LmtpTarget {
        LmtpTarget::Tcp("127.0.0.1:8024".into())
    }

    fn unix() -> LmtpTarget {
        LmtpTarget::Unix("/run/listrelay/lmtp.sock".into())
    }

    #[test]
    fn no_placeholder_survives() {
        for t in [tcp(), unix(), LmtpTarget::Tcp("[::1]:8024".into())] {
            let p = params(t);
            for s in postfix(&p).iter().chain(exim(&p).iter()) {
                assert!(!s.contents.contains("{{"), "{}: {}", s.file, s.contents);
                assert!(s.contents.ends_with('\n'), "{}", s.file);
            }
        }
    }

    #[test]
    fn postfix_table() {
        // (target, file, expected line)
        let cases: &[(LmtpTarget, &str, &str)] = &[
            (tcp(), "main.cf.snippet", "relay_domains = lists.example.org, ml.example.net"),
            (tcp(), "main.cf.snippet", "recipient_delimiter = +"),
            (
                tcp(),
                "main.cf.snippet",
                "transport_maps = texthash:$config_directory/listrelay/transport",
            ),
            (
                tcp(),
                "main.cf.snippet",
                "relay_recipient_maps = texthash:$config_directory/listrelay/relay_recipients",
            ),
            (tcp(), "transport", "lists.example.org\tlmtp:inet:127.0.0.1:8024"),
            (tcp(), "transport", "ml.example.net\tlmtp:inet:127.0.0.1:8024"),
            (
                LmtpTarget::Tcp("[::1]:8024".into()),
                "transport",
                "ml.example.net\tlmtp:inet:[::1]:8024",
            ),
            (unix(), "transport", "lists.example.org\tlistrelay:unix:/run/listrelay/lmtp.sock"),
            (
                unix(),
                "master.cf.snippet",
                "listrelay unix  -       -       n       -       -       lmtp",
            ),
            (unix(), "main.cf.snippet", "listrelay_destination_recipient_limit = 50"),
            (unix(), "main.cf.snippet", "lmtp_send_xforward_command = yes"),
            (tcp(), "main.cf.snippet", "lmtp_send_xforward_command = yes"),
            (tcp(), "main.cf.snippet", "lmtp_destination_recipient_limit = 50"),
            (tcp(), "relay_recipients", "dev@lists.example.org\tOK"),
            (tcp(), "relay_recipients", "dev-bounces@lists.example.org\tOK"),
            (tcp(), "relay_recipients", "dev-request@lists.example.org\tOK"),
            (tcp(), "relay_recipients", "ann-bounces@ml.example.net\tOK"),
            (tcp(), "master.cf.snippet", "127.0.0.1:10025 inet  n       -       n       -       -       smtpd"),
            (tcp(), "master.cf.snippet", "  -o content_filter="),
            (
                tcp(),
                "master.cf.snippet",
                "  -o receive_override_options=no_address_mappings,no_header_body_checks,no_unknown_recipient_checks",
            ),
            (tcp(), "master.cf.snippet", "  -o smtpd_relay_restrictions=permit_mynetworks,reject"),
        ];
        for (t, f, line) in cases {
            let s = postfix(&params(t.clone()));
            let c = file(&s, f);
            assert!(
                c.lines().any(|l| l == *line),
                "{t:?} {f}: no line {line:?} in\n{c}"
            );
        }
    }

    /// The TCP snippets carry nothing of the Unix-socket service, and the
    /// Unix ones none of the TCP `lmtp` tuning (it would not apply).
    #[test]
    fn postfix_blocks_stay_apart() {
        let t = postfix(&params(tcp()));
        assert!(!file(&t, "master.cf.snippet").contains("listrelay unix"));
        assert!(!file(&t, "main.cf.snippet").contains("listrelay_destination"));
        let u = postfix(&params(unix()));
        assert!(!file(&u, "main.cf.snippet").contains("lmtp_destination_recipient_limit"));
        // the re-injection service stays the last entry, so its "-o" lines
        // are not taken for the LMTP service's
        let master = file(&u, "master.cf.snippet");
        assert!(master.find("listrelay unix") < master.find(" inet "));
    }

    #[test]
    fn postfix_relay_recipients_are_exactly_the_local_parts() {
        let s = postfix(&params(tcp()));
        let entries: Vec<&str> = file(&s, "relay_recipients")
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .collect();
        assert_eq!(entries.len(), 5);
        let t: Vec<&str> = file(&s, "transport")
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .collect();
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn exim_table() {
        let v6 = LmtpTarget::Tcp("[::1]:8024".into());
        let name = LmtpTarget::Tcp("localhost:8024".into());
        // (target, file, expected line, must be present?)
        let cases: &[(LmtpTarget, &str, &str, bool)] = &[
            (
                tcp(),
                "main.conf.snippet",
                "domainlist listrelay_domains = lists.example.org : ml.example.net",
                true,
            ),
            (
                tcp(),
                "main.conf.snippet",
                "LISTRELAY_REINJECT_PORT = 10025",
                true,
            ),
            (
                tcp(),
                "main.conf.snippet",
                "local_interfaces = <; LISTRELAY_PUBLIC_INTERFACES ; 127.0.0.1.10025",
                true,
            ),
            (
                tcp(),
                "acl.conf.snippet",
                "  accept  domains = +listrelay_domains",
                true,
            ),
            (
                tcp(),
                "router.conf.snippet",
                "listrelay_lists_example_org:",
                true,
            ),
            (
                tcp(),
                "router.conf.snippet",
                "listrelay_ml_example_net:",
                true,
            ),
            (
                tcp(),
                "router.conf.snippet",
                "  local_parts = dev : dev-bounces : dev-request",
                true,
            ),
            (
                tcp(),
                "router.conf.snippet",
                "  local_parts = ann : ann-bounces",
                true,
            ),
            (
                tcp(),
                "router.conf.snippet",
                "  local_part_suffix = +*",
                true,
            ),
            (
                tcp(),
                "router.conf.snippet",
                "  local_part_suffix_optional",
                true,
            ),
            (tcp(), "router.conf.snippet", "  driver = manualroute", true),
            (
                tcp(),
                "router.conf.snippet",
                "  route_list = * 127.0.0.1",
                true,
            ),
            (tcp(), "router.conf.snippet", "  self = send", true),
            (
                v6.clone(),
                "router.conf.snippet",
                "  route_list = * ::::1",
                true,
            ),
            (
                name,
                "router.conf.snippet",
                "  route_list = * localhost byname",
                true,
            ),
            (tcp(), "transport.conf.snippet", "  driver = smtp", true),
            (tcp(), "transport.conf.snippet", "  protocol = lmtp", true),
            (tcp(), "transport.conf.snippet", "  port = 8024", true),
            (
                tcp(),
                "transport.conf.snippet",
                "  rcpt_include_affixes",
                true,
            ),
            (tcp(), "transport.conf.snippet", "  driver = lmtp", false),
            (unix(), "router.conf.snippet", "  driver = accept", true),
            (
                unix(),
                "router.conf.snippet",
                "  driver = manualroute",
                false,
            ),
            (unix(), "transport.conf.snippet", "  driver = lmtp", true),
            (
                unix(),
                "transport.conf.snippet",
                "  socket = /run/listrelay/lmtp.sock",
                true,
            ),
            (
                unix(),
                "transport.conf.snippet",
                "  rcpt_include_affixes",
                true,
            ),
            (unix(), "transport.conf.snippet", "  protocol = lmtp", false),
        ];
        for (t, f, line, present) in cases {
            let s = exim(&params(t.clone()));
            let c = file(&s, f);
            assert_eq!(
                c.lines().any(|l| l == *line),
                *present,
                "{t:?} {f}: line {line:?} present should be {present}:\n{c}"
            );
        }
    }

    #[test]
    fn delimiter_is_used() {
        let mut p = params(tcp());
        p.delimiter = '-';
        assert!(file(&postfix(&p), "main.cf.snippet").contains("recipient_delimiter = -\n"));
        assert!(file(&postfix(&p), "main.cf.snippet").contains("verp_delimiter_filter = -=+\n"));
        assert!(file(&exim(&p), "router.conf.snippet").contains("local_part_suffix = -*\n"));
        p.delimiter = '#';
        assert!(file(&postfix(&p), "main.cf.snippet").contains("verp_delimiter_filter = -=+#\n"));
    }

    #[test]
    fn host_port_split() {
        let cases = [
            ("127.0.0.1:10025", ("127.0.0.1", "10025")),
            ("[::1]:10025", ("::1", "10025")),
            ("localhost:25", ("localhost", "25")),
        ];
        for (input, (h, p)) in cases {
            assert_eq!(
                split_host_port(input),
                (h.to_string(), p.to_string()),
                "{input}"
            );
        }
    }
}
