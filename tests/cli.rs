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
    assert!(out.status.success(), "{}", stderr(&out));
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
