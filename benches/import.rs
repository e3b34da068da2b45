//! Importer benchmark (`cargo bench --bench import`; needs root, mailman3
//! and mlmmj: scripts/install-test-deps). `IMPORT_N` members (default
//! 10,000) are imported into a running listrelay from a real GNU Mailman 3
//! core (REST) and from an mlmmj list directory, each timed; GNU Mailman's
//! own `mailman addmembers` adding `ADDMEMBERS_N` members (default 1,000:
//! 10,000 take it about 7 minutes) to a list of the same core is the
//! reference, measured in the same run, and the per-member ratio printed.
//!
//! The Mailman list is filled beforehand (not timed) by a `mailman shell`
//! script that subscribes the members in one transaction.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::Write;
use std::process::Command;
use std::time::Instant;

use support::mailman3::{self, Mailman, PASSWORD, USER};
use support::mlmmj::{self, Spool};
use support::server::Listrelay;
use support::sink::Sink;

const BIG: &str = "big@lists.example.org";
const REF: &str = "ref@lists.example.org";

/// Subscribes every address of a file to a list in one transaction.
const FILL_PY: &str = "\
from mailman.config import config
from mailman.interfaces.usermanager import IUserManager
from zope.component import getUtility
import datetime

def fill(mlist, path):
    um = getUtility(IUserManager)
    with open(path) as f:
        for line in f:
            email = line.strip()
            if email:
                addr = um.get_address(email) or um.create_address(email)
                addr.verified_on = addr.verified_on or datetime.datetime.now()
                mlist.subscribe(addr)
    config.db.commit()
";

fn env_n(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn addresses(dir: &std::path::Path, name: &str, prefix: &str, n: usize) -> std::path::PathBuf {
    let path = dir.join(name);
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    for i in 0..n {
        writeln!(f, "{prefix}{i:06}@d{}.example.net", i % 100).unwrap();
    }
    f.flush().unwrap();
    path
}

fn mailman(mm: &Mailman, args: &[&str]) -> std::process::Output {
    Command::new("mailman")
        .args(["--run-as-root", "-C"])
        .arg(&mm.config)
        .args(args)
        .env("PYTHONPATH", mm.dir.path())
        .output()
        .expect("run mailman")
}

fn members(lr: &Listrelay, list: &str) -> u64 {
    lr.json(&["list", "show", list])["members"]
        .as_u64()
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    if !mailman3::available() || !mlmmj::available() {
        eprintln!("skipped: needs root, mailman3 and mlmmj (scripts/install-test-deps)");
        return;
    }
    let n = env_n("IMPORT_N", 10_000);
    let n_ref = env_n("ADDMEMBERS_N", 1_000);
    println!("import benchmark: {n} members; reference: mailman addmembers of {n_ref}");

    let started = Instant::now();
    let mm = Mailman::start();
    println!(
        "Mailman core up in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    mm.create_list(BIG);
    mm.create_list(REF);
    std::fs::write(mm.dir.path().join("lrbench.py"), FILL_PY).unwrap();
    let big = addresses(mm.dir.path(), "big.txt", "m", n);
    let t = Instant::now();
    let out = mailman(
        &mm,
        &[
            "shell",
            "-l",
            BIG,
            "-r",
            "lrbench.fill",
            big.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!(
        "filled {BIG} with {n} members in {:.1} s (mailman shell, one transaction; not compared)",
        t.elapsed().as_secs_f64()
    );

    let reference = addresses(mm.dir.path(), "ref.txt", "r", n_ref);
    let t = Instant::now();
    let out = mm.addmembers(REF, &reference);
    let addmembers_s = t.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let addmembers_per = addmembers_s / n_ref as f64;
    println!(
        "mailman addmembers: {n_ref} members in {addmembers_s:.1} s ({:.2} ms/member; {:.0} s for {n} at that rate)",
        addmembers_per * 1e3,
        addmembers_per * n as f64
    );

    let sink = Sink::start().await.expect("sink");
    let mut lr = Listrelay::with_smtp(sink.port(), "");
    lr.cli_ok(&["list", "create", "warm@lists.example.org"]);
    lr.start();

    let url = mm.url();
    let t = Instant::now();
    lr.cli_ok(&[
        "import-from",
        "mailman3",
        "--url",
        &url,
        "--user",
        USER,
        "--password",
        PASSWORD,
        "--list",
        BIG,
    ]);
    let mailman_s = t.elapsed().as_secs_f64();
    assert_eq!(members(&lr, BIG), n as u64, "every member imported");
    let t = Instant::now();
    let again = lr.cli_ok(&[
        "import-from",
        "mailman3",
        "--url",
        &url,
        "--user",
        USER,
        "--password",
        PASSWORD,
        "--list",
        BIG,
    ]);
    let mailman_again_s = t.elapsed().as_secs_f64();
    assert!(again.contains("nothing to change"), "{again}");
    let src = std::fs::read_to_string(&big).unwrap();
    drop(mm);

    let spool = Spool::new();
    let dir = spool.make_list("mbig", "lists.example.org", "owner@example.org");
    // mlmmj's own layout: subscribers.d/ holds one file per first letter.
    std::fs::write(dir.join("subscribers.d").join("m"), src).unwrap();
    assert_eq!(mlmmj::count(&dir, ""), n, "mlmmj-list counts them");
    let t = Instant::now();
    lr.cli_ok(&["import-from", "mlmmj", dir.to_str().unwrap()]);
    let mlmmj_s = t.elapsed().as_secs_f64();
    assert_eq!(members(&lr, "mbig@lists.example.org"), n as u64);

    println!();
    println!("| import of {n} members into a running listrelay | seconds | ms/member | vs addmembers per member |");
    println!("|---|---|---|---|");
    for (what, s) in [
        ("import-from mailman3 (REST, first run)", mailman_s),
        (
            "import-from mailman3 (second run, nothing to change)",
            mailman_again_s,
        ),
        ("import-from mlmmj (first run)", mlmmj_s),
    ] {
        let per = s / n as f64;
        println!(
            "| {what} | {s:.2} | {:.3} | {:.0}x faster |",
            per * 1e3,
            addmembers_per / per
        );
    }
    println!(
        "| mailman addmembers ({n_ref} members) | {addmembers_s:.2} | {:.3} | 1x |",
        addmembers_per * 1e3
    );
}
