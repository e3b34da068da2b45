//! The administration commands as an operator runs them, without a server and
//! against a running one: lists, imports with bad lines, settings with errors
//! that name the problem, export, integration snippets, check-config.

mod support;

use support::server::Listrelay;

const LIST: &str = "dev@lists.example.org";

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn administration_with_and_without_a_server() {
    let mut lr = Listrelay::with_smtp(9, "");
    lr.cli_ok(&["list", "create", LIST]);
    let dup = lr.cli(&["list", "create", LIST]);
    assert!(
        !dup.status.success() && stderr(&dup).contains("already exists"),
        "{}",
        stderr(&dup)
    );
    let bad_name = lr.cli(&["list", "create", "dev-bounces@lists.example.org"]);
    assert!(
        !bad_name.status.success(),
        "a list may not take a suffix name"
    );

    // Import: a file with good, duplicate, commented and bad lines.
    let path = lr.path().join("members.txt");
    std::fs::write(
        &path,
        "a@x.org\n# a comment\n\nB@Y.org\nnot an address\na@x.org\nc@\n",
    )
    .unwrap();
    let out = lr.cli(&["--json", "member", "import", LIST, path.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "refused lines: status 3\n{}",
        stderr(&out)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["added"], 2, "{v}");
    assert_eq!(v["already"], 1, "{v}");
    let bad: Vec<u64> = v["invalid"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["line"].as_u64().unwrap())
        .collect();
    assert_eq!(bad, vec![5, 7], "bad lines are reported by number");

    // Settings: errors name the key and the problem; nothing changes.
    let out = lr.cli(&["list", "set", LIST, "verp_percent", "250"]);
    assert!(
        !out.status.success() && stderr(&out).contains("verp_percent"),
        "{}",
        stderr(&out)
    );
    let out = lr.cli(&["list", "set", LIST, "no_such_key", "1"]);
    assert!(
        stderr(&out).contains("no_such_key") && stderr(&out).contains("known:"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        lr.json(&["list", "show", LIST])["settings"]["verp_percent"],
        100
    );

    // The same commands against the running server (over the admin socket).
    lr.start();
    lr.cli_ok(&["list", "set", LIST, "verp_percent", "30"]);
    assert_eq!(
        lr.json(&["list", "show", LIST])["settings"]["verp_percent"],
        30
    );
    lr.cli_ok(&["member", "add", LIST, "d@z.org"]);
    lr.cli_ok(&["member", "remove", LIST, "a@x.org"]);
    let export = lr.cli_ok(&["member", "export", LIST]);
    let mut got: Vec<&str> = export.lines().collect();
    got.sort();
    assert_eq!(got, vec!["B@y.org", "d@z.org"]);
    let domains = lr.json(&["domain", "list"]);
    assert_eq!(domains[0]["name"], "lists.example.org");
    lr.cli_ok(&["domain", "set", "lists.example.org", "opaque", "true"]);
    assert_eq!(lr.json(&["domain", "list"])[0]["opaque"], true);
    let del = lr.cli(&["domain", "delete", "lists.example.org"]);
    assert!(!del.status.success() && stderr(&del).contains("still has lists"));

    // The MTA snippets name the list's addresses and listrelay's sockets.
    let postfix = lr.cli_ok(&["integration", "postfix"]);
    assert!(
        postfix.contains(&format!(
            "lists.example.org\tlmtp:inet:127.0.0.1:{}",
            lr.lmtp_port
        )),
        "{postfix}"
    );
    assert!(
        postfix.contains("dev-bounces@lists.example.org"),
        "{postfix}"
    );
    let exim = lr.cli_ok(&["integration", "exim"]);
    assert!(
        exim.contains("rcpt_include_affixes") && exim.contains("dev-bounces"),
        "{exim}"
    );
    lr.stop();

    // Back without a server: the changes made through it are there.
    assert_eq!(lr.json(&["list", "show", LIST])["members"], 2);
    lr.cli_ok(&["list", "delete", LIST]);
    assert!(lr.json(&["list", "list"]).as_array().unwrap().is_empty());
}

#[test]
fn check_config_names_the_key_and_the_problem() {
    let lr = Listrelay::with_smtp(9, "");
    let out = lr.cli(&["check-config"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("chunk_size = 1000"));
    let bad = lr.path().join("bad.toml");
    std::fs::write(&bad, "[lmtp]\nmax_conections = 5\n").unwrap();
    let out = std::process::Command::new(support::server::bin())
        .args(["--config", bad.to_str().unwrap(), "check-config"])
        .output()
        .unwrap();
    assert!(
        !out.status.success() && stderr(&out).contains("max_conections"),
        "{}",
        stderr(&out)
    );
    std::fs::write(&bad, "[fanout]\nworkers = 0\n").unwrap();
    let out = std::process::Command::new(support::server::bin())
        .args(["--config", bad.to_str().unwrap(), "check-config"])
        .output()
        .unwrap();
    assert!(
        stderr(&out).contains("fanout.workers: must be greater than 0"),
        "{}",
        stderr(&out)
    );
}

/// The human output is rendered from the typed answers: what was set shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn human_output_shows_what_was_set() {
    // Re-injection to the discard port: nothing answers, so the job stays queued.
    let mut lr = Listrelay::with_smtp(9, "");
    lr.cli_ok(&["list", "create", LIST]);
    lr.cli_ok(&["list", "set", LIST, "description", "Dev talk"]);
    lr.cli_ok(&["list", "set", LIST, "verp_percent", "30"]);
    lr.cli_ok(&["list", "set", LIST, "nonmember_action", "accept"]);
    lr.cli_ok(&["member", "add", LIST, "a@x.org", "B@y.org"]);
    lr.cli_ok(&[
        "member",
        "set",
        LIST,
        "b@y.org",
        "delivery_enabled",
        "false",
    ]);

    let show = lr.cli_ok(&["list", "show", LIST]);
    for want in [
        LIST,
        "list-id: <dev.lists.example.org>",
        "members: 2",
        "verp_percent = 30",
        "description = \"Dev talk\"",
        "nonmember_action = \"accept\"",
    ] {
        assert!(show.contains(want), "{want:?} missing from\n{show}");
    }
    let members = lr.cli_ok(&["member", "list", LIST]);
    let mut lines: Vec<&str> = members.lines().collect();
    lines.sort();
    assert_eq!(lines, ["B@y.org\t(delivery disabled)", "a@x.org"]);

    lr.start();
    let post = b"From: poster@example.com\r\nTo: dev@lists.example.org\r\n\
Message-ID: <queued@example.com>\r\nSubject: hello\r\n\r\nbody\r\n";
    let reply = support::lmtp::lmtp_post(lr.lmtp_port, LIST, post).await;
    assert!(reply.is_positive(), "{}", reply.text());
    let mut queue = String::new();
    let job_shown = support::poll_until(std::time::Duration::from_secs(20), || {
        queue = lr.cli_ok(&["queue"]);
        queue
            .lines()
            .any(|l| l.contains(LIST) && l.contains("verp 30%"))
    });
    assert!(job_shown, "no job line for {LIST} in\n{queue}");
    assert!(queue.starts_with("messages:\n"), "{queue}");
    assert!(queue.contains("\njobs:\n") && queue.contains("\nchunks:\n"));
    lr.stop();
}

/// Delivery modes and bans from the command line: a mode is shown apart
/// from delivery disabled, bad values name what is known, a ban is
/// checked, idempotent, listed and removed, and each change is audited.
#[test]
fn delivery_modes_and_bans() {
    let lr = Listrelay::with_smtp(9, "");
    lr.cli_ok(&["list", "create", LIST]);
    lr.cli_ok(&["member", "add", LIST, "a@x.org", "b@x.org", "c@x.org"]);
    lr.cli_ok(&[
        "member",
        "set",
        LIST,
        "a@x.org",
        "delivery_mode",
        "digest_mime",
    ]);
    lr.cli_ok(&["member", "set", LIST, "b@x.org", "delivery_mode", "nomail"]);
    lr.cli_ok(&[
        "member",
        "set",
        LIST,
        "b@x.org",
        "delivery_enabled",
        "false",
    ]);
    let bad = lr.cli(&["member", "set", LIST, "c@x.org", "delivery_mode", "weekly"]);
    assert!(
        !bad.status.success() && stderr(&bad).contains("digest_plain"),
        "names the modes: {}",
        stderr(&bad)
    );
    let mut lines: Vec<String> = lr
        .cli_ok(&["member", "list", LIST])
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "a@x.org\t(digest_mime)",
            "b@x.org\t(nomail)\t(delivery disabled)",
            "c@x.org"
        ]
    );
    let json = lr.json(&["member", "list", LIST]);
    let b = json
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["address"] == "b@x.org")
        .unwrap();
    assert_eq!(
        (&b["delivery_mode"], &b["delivery_enabled"]),
        (&serde_json::json!("nomail"), &serde_json::json!(false))
    );

    // Bans: an address (stored lowercased) and a pattern.
    let added = lr.json(&["ban", "add", LIST, "Spammer@Bad.example"]);
    assert_eq!(added["changed"], true);
    lr.cli_ok(&["ban", "add", LIST, r"^.*@spam\.example$"]);
    let again = lr.json(&["ban", "add", LIST, "spammer@bad.example"]);
    assert_eq!(again["changed"], false, "banning again changes nothing");
    assert_eq!(
        lr.cli_ok(&["ban", "list", LIST]),
        "spammer@bad.example\n^.*@spam\\.example$\n"
    );
    for (bad, says) in [
        ("not an address", "pattern beginning with ^"),
        ("^(unclosed", "not a regular expression"),
        (&*format!("^{}", "a".repeat(1100)), "at most 1024"),
    ] {
        let out = lr.cli(&["ban", "add", LIST, bad]);
        assert!(
            !out.status.success() && stderr(&out).contains(says),
            "{bad:.20}: {}",
            stderr(&out)
        );
    }
    lr.cli_ok(&["ban", "remove", LIST, "SPAMMER@bad.example"]);
    let gone = lr.cli(&["ban", "remove", LIST, "spammer@bad.example"]);
    assert!(
        !gone.status.success() && stderr(&gone).contains("ban list"),
        "{}",
        stderr(&gone)
    );
    assert_eq!(
        lr.json(&["ban", "list", LIST])["bans"],
        serde_json::json!([r"^.*@spam\.example$"])
    );
    let audit = lr.cli_ok(&["audit", "--list", LIST]);
    for want in ["ban_add", "ban_remove", "delivery_mode=digest_mime"] {
        assert!(audit.contains(want), "{want} missing from\n{audit}");
    }
}

/// `member list` and `export` stream their items through the admin socket; the
/// JSON form is one array, the human form one line per member.
#[test]
fn member_list_streams_through_the_server() {
    const N: usize = 2500;
    let mut lr = Listrelay::with_smtp(9, "");
    lr.cli_ok(&["list", "create", LIST]);
    let members: Vec<String> = (0..N).map(|i| format!("m{i}@example.net")).collect();
    lr.import(LIST, &members);
    lr.start();
    let json = lr.json(&["member", "list", LIST]);
    assert_eq!(json.as_array().map(Vec::len), Some(N));
    assert!(json[0]["address"]
        .as_str()
        .is_some_and(|a| a.starts_with('m')));
    assert_eq!(lr.cli_ok(&["member", "list", LIST]).lines().count(), N);
    let mut exported: Vec<String> = lr
        .cli_ok(&["member", "export", LIST])
        .lines()
        .map(str::to_string)
        .collect();
    exported.sort();
    let mut want = members.clone();
    want.sort();
    assert_eq!(exported, want);
    // An empty list is an empty array, not nothing.
    lr.cli_ok(&["list", "create", "empty@lists.example.org"]);
    assert_eq!(
        lr.json(&["member", "list", "empty@lists.example.org"]),
        serde_json::json!([])
    );
    let missing = lr.cli(&["member", "list", "nope@lists.example.org"]);
    assert!(
        !missing.status.success() && stderr(&missing).contains("no list"),
        "{}",
        stderr(&missing)
    );
    lr.stop();
}

/// The server's peak resident memory so far (VmHWM), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc status")
}

/// Listing a large list through the server keeps the server's memory flat: it
/// reads and writes the members a page at a time (it used to build the whole
/// answer: 200,000 members took its RSS from 51 MB to 421 MB).
/// Before paging it grew by 14 MiB on 30,000 members; the bound is 12 MiB.
#[test]
fn listing_a_large_list_keeps_the_server_memory_flat() {
    const N: usize = 30_000;
    let mut lr = Listrelay::with_smtp(9, "");
    lr.cli_ok(&["list", "create", LIST]);
    let members: Vec<String> = (0..N)
        .map(|i| format!("member{i:06}@example.net"))
        .collect();
    lr.import(LIST, &members);
    lr.start();
    let pid = lr.pid().expect("server pid");
    // A first small request, so the admin path itself is warm.
    lr.cli(&["member", "list", "nope@lists.example.org"]);
    let before = peak_rss_kib(pid);
    let out = lr.path().join("export.txt");
    lr.cli_ok(&["member", "export", LIST, out.to_str().unwrap()]);
    let after = peak_rss_kib(pid);
    lr.stop();
    let listed = std::fs::read_to_string(&out).unwrap().lines().count();
    assert_eq!(listed, N, "every member is listed");
    // The whole answer built in memory took about 1.9 KiB per member (57 MB
    // here); a page at a time stays within a few MiB of what it was.
    let growth = after.saturating_sub(before);
    assert!(
        growth < 12 * 1024,
        "server peak RSS grew by {growth} KiB listing {N} members ({before} -> {after} KiB)"
    );
}

/// The rough edges a new operator hit (issue 15): a closed pipe, refused
/// addresses that exited 0, repeated error texts, thin help.
#[test]
fn rough_edges_of_the_command_line() {
    let lr = Listrelay::with_smtp(9, "");
    lr.cli_ok(&["list", "create", LIST]);

    // A refused address makes the status 3; the good one is added.
    let out = lr.cli(&["member", "add", LIST, "not an address", "ok@x.org"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("not an address"), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 added"));

    // A reader that goes away: no panic, quiet, status 0.
    let members: Vec<String> = (0..5000).map(|i| format!("m{i}@example.net")).collect();
    lr.import(LIST, &members);
    let mut child = std::process::Command::new(support::server::bin())
        .arg("--config")
        .arg(&lr.config)
        .args(["member", "list", LIST])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && stderr(&out).is_empty(),
        "{:?}: {}",
        out.status,
        stderr(&out)
    );

    // Each cause said once.
    let missing = lr.path().join("missing.toml");
    let out = std::process::Command::new(support::server::bin())
        .arg("--config")
        .arg(&missing)
        .args(["list", "list"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(
        stderr(&out).matches("No such file or directory").count(),
        1,
        "{}",
        stderr(&out)
    );

    // Help says what each command does and names the list settings.
    let help = |args: &[&str]| {
        let out = std::process::Command::new(support::server::bin())
            .args(args)
            .env("LISTRELAY_CONFIG", &lr.config)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned() + &stderr(&out)
    };
    let list_help = help(&["list", "--help"]);
    for cmd in ["create", "show", "list", "delete"] {
        let line = list_help
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{cmd} ")))
            .unwrap_or_else(|| panic!("no {cmd} in\n{list_help}"));
        assert!(line.split_whitespace().count() > 1, "{cmd}: {line:?}");
    }
    let member_help = help(&["member", "--help"]);
    for cmd in ["add", "remove", "list"] {
        let line = member_help
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{cmd} ")))
            .unwrap_or_else(|| panic!("no {cmd} in\n{member_help}"));
        assert!(line.split_whitespace().count() > 1, "{cmd}: {line:?}");
    }
    let set_help = help(&["list", "set", "--help"]);
    assert!(
        set_help.contains("verp_percent") && set_help.contains("nonmember_action"),
        "{set_help}"
    );
    // With LISTRELAY_CONFIG set, --config is not shown as required.
    let usage = help(&["list", "create"]);
    assert!(
        usage.contains("Usage: listrelay list create <ADDRESS>"),
        "{usage}"
    );
}
