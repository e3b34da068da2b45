//! An operator's first hour (issue 15): the rough edges a new user hit that
//! are not the command line's own: a reading command that created a store,
//! root working in the service user's data dir, colour codes in logs that
//! are not on a terminal, and MTA snippets to be split by hand.

use std::path::Path;
use std::process::{Command, Output};

const LIST: &str = "dev@lists.example.org";

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_listrelay")
}

/// Runs the CLI on the data dir `data`, without a server.
fn cli(data: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("LISTRELAY_CONFIG")
        .output()
        .expect("running listrelay")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn is_root() -> bool {
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn reading_commands_create_no_store() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for args in [
        &["list", "list"][..],
        &["list", "show", LIST],
        &["member", "list", LIST],
        &["queue"],
        &["domain", "list"],
        &["export"],
        &["integration", "postfix"],
    ] {
        let out = cli(&data, args);
        assert!(!out.status.success(), "{args:?} succeeded without a store");
        assert!(
            stderr(&out).contains("there is no store in") && stderr(&out).contains("--data-dir"),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(
            !data.exists(),
            "{args:?} created {}: {:?}",
            data.display(),
            std::fs::read_dir(&data).map(|d| d.count())
        );
    }
    // Creating a list is what makes a store, and then reading works.
    let out = cli(&data, &["list", "create", LIST]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cli(&data, &["list", "list"]);
    assert!(stdout(&out).contains(LIST), "{}", stderr(&out));
}

/// Every path under `dir` (itself included) whose owner is root.
fn owned_by_root(dir: &Path) -> Vec<std::path::PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(p) = todo.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        if meta.uid() == 0 {
            found.push(p.clone());
        }
        if meta.is_dir() {
            todo.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
    }
    found
}

#[test]
fn root_refuses_a_data_dir_of_another_user() {
    if !is_root() {
        eprintln!("SKIPPED: root_refuses_a_data_dir_of_another_user needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(cli(&data, &["list", "create", LIST]).status.success());
    let chown = Command::new("chown")
        .args(["-R", "nobody:nogroup"])
        .arg(&data)
        .status()
        .unwrap();
    assert!(chown.success());
    for args in [
        &["list", "list"][..],
        &["member", "add", LIST, "a@x.org"],
        &["serve"],
    ] {
        let out = cli(&data, args);
        assert!(!out.status.success(), "{args:?} ran as root");
        assert!(
            stderr(&out).contains("belongs to user nobody")
                && stderr(&out).contains("runuser -u nobody"),
            "{args:?}: {}",
            stderr(&out)
        );
        assert_eq!(
            owned_by_root(&data),
            Vec::<std::path::PathBuf>::new(),
            "{args:?}"
        );
    }
}

/// The server's log for its first seconds, with stderr a pipe or (`tty`) a
/// terminal made by script(1); `None` when script(1) is missing.
fn serve_log(data: &Path, tty: bool, no_color: Option<&str>) -> Option<String> {
    let serve = format!(
        "timeout -s TERM 2 {} --data-dir {} --lmtp 127.0.0.1:0 --smtp 127.0.0.1:9 serve",
        bin(),
        data.display()
    );
    let mut cmd = if tty {
        let mut c = Command::new("script");
        c.args(["-qec", &serve, "/dev/null"]);
        c
    } else {
        let mut c = Command::new("sh");
        c.args(["-c", &serve]);
        c
    };
    cmd.env_remove("NO_COLOR").env_remove("RUST_LOG");
    if let Some(v) = no_color {
        cmd.env("NO_COLOR", v);
    }
    let out = cmd.output().ok()?;
    // script(1) puts the terminal's output on its stdout.
    let text = stdout(&out) + &stderr(&out);
    assert!(text.contains("listrelay ready"), "{text}");
    Some(text)
}

#[test]
fn log_colour_only_on_a_terminal_and_never_with_no_color() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let piped = serve_log(&data, false, None).unwrap();
    assert!(!piped.contains('\x1b'), "colour codes in a pipe:\n{piped}");
    match serve_log(&data, true, None) {
        Some(tty) => assert!(tty.contains("\x1b["), "no colour on a terminal:\n{tty}"),
        None => eprintln!("SKIPPED: the terminal cases need script(1) (util-linux)"),
    }
    if let Some(tty) = serve_log(&data, true, Some("1")) {
        assert!(!tty.contains('\x1b'), "colour despite NO_COLOR:\n{tty}");
    }
}

#[test]
fn integration_out_writes_the_files_and_prints_the_commands() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(cli(&data, &["list", "create", LIST]).status.success());
    let stream = stdout(&cli(&data, &["integration", "postfix"]));

    let out_dir = dir.path().join("postfix");
    let out = cli(
        &data,
        &["integration", "postfix", "--out", out_dir.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    for file in [
        "main.cf.snippet",
        "master.cf.snippet",
        "transport",
        "relay_recipients",
    ] {
        let text = std::fs::read_to_string(out_dir.join(file))
            .unwrap_or_else(|e| panic!("{file} not written: {e}"));
        assert!(
            stream.contains(&format!("# ===== {file} — ")) && stream.contains(&text),
            "{file} differs from the printed stream"
        );
    }
    let commands = stdout(&out);
    for line in [
        "postconf -e 'relay_domains = lists.example.org'",
        "postconf -e 'transport_maps = texthash:$config_directory/listrelay/transport'",
        "postconf -e 'recipient_delimiter = +'",
        "postfix check && postfix reload",
    ] {
        assert!(commands.contains(line), "no {line:?} in\n{commands}");
    }
    let transport = std::fs::read_to_string(out_dir.join("transport")).unwrap();
    assert!(
        transport.contains("lists.example.org\tlmtp:inet:"),
        "{transport}"
    );
    // Every command line is valid sh.
    let check = Command::new("sh")
        .args(["-n", "-c", &commands])
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", stderr(&check));

    let out_dir = dir.path().join("exim");
    let out = cli(
        &data,
        &["integration", "exim", "--out", out_dir.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    for file in [
        "main.conf.snippet",
        "acl.conf.snippet",
        "router.conf.snippet",
        "transport.conf.snippet",
    ] {
        assert!(out_dir.join(file).exists(), "{file} not written");
    }
    assert!(
        stdout(&out).contains("/etc/exim4/conf.d/router/150_listrelay"),
        "{}",
        stdout(&out)
    );
}
