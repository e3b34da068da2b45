//! `listrelay import-from mlmmj` against real mlmmj list directories made by
//! Debian's mlmmj (`mlmmj-make-ml`, `mlmmj-sub`): every mapped control file
//! and member set comes across, the dry run changes nothing, a second run
//! changes nothing and says so, a new mlmmj member is all a third run adds,
//! and a post to the imported list reaches exactly its regular members.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use support::lmtp::lmtp_post;
use support::mlmmj::{self, Spool};
use support::server::Listrelay;
use support::sink::Sink;

const DEV: &str = "dev@lists.example.org";
const ANN: &str = "ann@lists.example.org";

fn import(lr: &Listrelay, dirs: &[&Path], dry: bool) -> Value {
    let mut args = vec!["import-from", "mlmmj"];
    args.extend(dirs.iter().map(|d| d.to_str().unwrap()));
    if dry {
        args.push("--dry-run");
    }
    lr.json(&args)
}

fn list_report<'a>(r: &'a Value, list: &str) -> &'a Value {
    r["lists"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["list"] == list)
        .unwrap_or_else(|| panic!("{list} not in {r:#}"))
}

/// The members as `member list --json` shows them, by address.
fn members(lr: &Listrelay, list: &str) -> Vec<Value> {
    lr.json(&["member", "list", list])
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn unchanged(r: &Value) -> bool {
    r["lists"].as_array().unwrap().iter().all(|l| {
        l["created"] == false
            && l["settings"].as_array().unwrap().is_empty()
            && l["members_added"] == 0
            && l["members_changed"].as_array().unwrap().is_empty()
            && l["bans_added"].as_array().unwrap().is_empty()
    })
}

#[tokio::test]
async fn mlmmj_lists_come_across_and_take_posts() {
    if !mlmmj::available() {
        eprintln!("skipped: mlmmj is not installed (scripts/install-test-deps)");
        return;
    }
    let spool = Spool::new();
    let dev = spool.make_list("dev", "lists.example.org", "owner@example.org");
    for a in ["alice@example.net", "bob@example.net", "Carol@Example.NET"] {
        mlmmj::subscribe(&dev, a, "");
    }
    mlmmj::subscribe(&dev, "dora@example.net", "-d");
    mlmmj::subscribe(&dev, "nora@example.net", "-n");
    assert_eq!(
        mlmmj::count(&dev, ""),
        3,
        "mlmmj-list sees the regular members"
    );
    mlmmj::control(&dev, "prefix", "[dev]\n");
    mlmmj::control(
        &dev,
        "footer",
        "-- \nleave: dev+unsubscribe@lists.example.org\n",
    );
    mlmmj::control(&dev, "moderators", "mod@example.org\n");
    mlmmj::control(&dev, "owner", "owner@example.org\nowner2@example.org\n");
    mlmmj::control(&dev, "subonlypost", "");
    mlmmj::control(&dev, "notifysub", "");
    mlmmj::control(&dev, "maxmailsize", "100000\n");
    mlmmj::control(
        &dev,
        "access",
        "deny ^From:.*spammer@bad\\.example\ndeny ^Subject:.*BUY NOW\nallow\n",
    );
    mlmmj::control(&dev, "customheaders", "X-Team: dev\n");
    let ann = spool.make_list("ann", "lists.example.org", "owner@example.org");
    mlmmj::subscribe(&ann, "alice@example.net", "");
    mlmmj::control(&ann, "moderated", "");
    mlmmj::control(&ann, "moderators", "mod@example.org\n");
    mlmmj::control(&ann, "subonlypost", "");
    mlmmj::control(&ann, "modnonsubposts", "");

    let sink = Sink::start().await.expect("sink");
    let mut lr = Listrelay::with_smtp(sink.port(), "");

    // The dry run on an empty site says what would be done and leaves no store.
    let dry = import(&lr, &[&dev, &ann], true);
    assert_eq!(dry["dry_run"], true);
    let d = list_report(&dry, DEV);
    assert_eq!(d["created"], true);
    assert_eq!(d["members_added"], 5);
    assert!(!lr.data().join("db").exists(), "a dry run creates nothing");

    let first = import(&lr, &[&dev, &ann], false);
    let d = list_report(&first, DEV);
    assert_eq!(
        (d["created"].clone(), d["members_added"].clone()),
        (true.into(), 5.into())
    );
    let unmapped: Vec<&str> = d["unmapped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["setting"].as_str().unwrap())
        .collect();
    assert!(unmapped.contains(&"customheaders"), "{unmapped:?}");
    assert!(
        unmapped.contains(&"access"),
        "the Subject rule has no equivalent"
    );

    let show = lr.json(&["list", "show", DEV]);
    let s = &show["settings"];
    assert_eq!(s["subject_prefix"], "[dev] ");
    assert_eq!(s["footer"], "-- \nleave: dev+unsubscribe@lists.example.org");
    assert_eq!(
        s["owners"],
        serde_json::json!(["owner2@example.org", "owner@example.org"])
    );
    assert_eq!(s["moderators"], serde_json::json!(["mod@example.org"]));
    assert_eq!(s["nonmember_action"], "reject");
    assert_eq!(s["max_message_size"], 100000);
    assert_eq!(s["notify_owner_on_join_leave"], true);
    assert_eq!(s["emergency"], false);
    let a = &lr.json(&["list", "show", ANN])["settings"];
    assert_eq!(
        (a["emergency"].clone(), a["nonmember_action"].clone()),
        (true.into(), "hold".into())
    );

    let got = members(&lr, DEV);
    let addresses: BTreeSet<String> = got
        .iter()
        .map(|m| m["address"].as_str().unwrap().to_lowercase())
        .collect();
    assert_eq!(
        addresses,
        [
            "alice@example.net",
            "bob@example.net",
            "carol@example.net",
            "dora@example.net",
            "nora@example.net"
        ]
        .map(String::from)
        .into()
    );
    let mode = |who: &str| {
        got.iter()
            .find(|m| m["address"].as_str().unwrap().eq_ignore_ascii_case(who))
            .map(|m| m["delivery_mode"].clone())
            .unwrap()
    };
    assert_eq!(mode("alice@example.net"), "regular");
    assert_eq!(mode("dora@example.net"), "digest_mime");
    assert_eq!(mode("nora@example.net"), "nomail");

    let bans = lr.json(&["ban", "list", DEV]);
    assert_eq!(
        bans["bans"],
        serde_json::json!(["spammer@bad.example"]),
        "{bans}"
    );

    // A second run changes nothing and says so.
    let again = import(&lr, &[&dev, &ann], false);
    assert!(unchanged(&again), "{again:#}");
    let text = lr.cli_ok(&["import-from", "mlmmj", dev.to_str().unwrap()]);
    assert!(text.contains("nothing to change"), "{text}");

    // A member who joined on mlmmj since is all a third run adds.
    mlmmj::subscribe(&dev, "erin@example.net", "");
    let third = import(&lr, &[&dev], false);
    let d = list_report(&third, DEV);
    assert_eq!(
        (d["members_added"].clone(), d["members_unchanged"].clone()),
        (1.into(), 5.into())
    );
    assert!(d["settings"].as_array().unwrap().is_empty());

    // A member's post reaches the regular members, not the digest or no-mail
    // ones; the digest member gets it in the next issue.
    lr.cli_ok(&["list", "set", DEV, "digest_enabled", "true"]);
    lr.start();
    let post = format!(
        "From: alice@example.net\r\nTo: {DEV}\r\nSubject: hello\r\n\
         Message-ID: <mlmmj-import.{}@example.net>\r\n\r\nHello list.\r\n",
        std::process::id()
    );
    let reply = lmtp_post(lr.lmtp_port, DEV, post.as_bytes()).await;
    assert_eq!(reply.code, 250, "{}", reply.text());
    sink.wait_rcpts(4, Duration::from_secs(20))
        .await
        .unwrap_or_else(|n| panic!("{n} copies of 4 arrived\n{}", lr.log_text()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rcpts: BTreeSet<String> = sink
        .records()
        .iter()
        .flat_map(|t| t.rcpts.iter().map(|r| r.to_lowercase()))
        .collect();
    assert_eq!(
        rcpts,
        [
            "alice@example.net",
            "bob@example.net",
            "carol@example.net",
            "erin@example.net"
        ]
        .map(String::from)
        .into()
    );
    let sent = lr.cli_ok(&["digest", "send", DEV]);
    assert!(sent.contains("1 post"), "{sent}");
    sink.wait_rcpts(5, Duration::from_secs(20))
        .await
        .unwrap_or_else(|n| panic!("{n} copies of 5 arrived\n{}", lr.log_text()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let records = sink.records();
    let issue: Vec<&Vec<String>> = records
        .iter()
        .map(|t| &t.rcpts)
        .filter(|r| r.iter().any(|a| a.eq_ignore_ascii_case("dora@example.net")))
        .collect();
    assert_eq!(
        issue.len(),
        1,
        "one issue to the digest member: {records:?}"
    );
    assert_eq!(
        issue[0].len(),
        1,
        "the issue goes to the digest member only"
    );
}

#[test]
fn a_directory_that_is_not_a_list_is_named_with_what_to_give() {
    let lr = Listrelay::with_smtp(1, "");
    let dir = tempfile::tempdir().unwrap();
    let out = lr.cli(&["import-from", "mlmmj", dir.path().to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is not an mlmmj list directory") && err.contains("/var/spool/mlmmj/dev"),
        "{err}"
    );
}
