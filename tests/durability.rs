//! What survives a crash: every acknowledged post, spool files the store lost,
//! and a full disk that the server recovers from.

mod support;

use rand::{Rng, SeedableRng};
use support::blackbox::*;

fn seed() -> u64 {
    std::env::var("LISTRELAY_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
}

/// SIGKILL right after a 250: every acknowledged post is there after a restart,
/// byte for byte. Three rounds on the same data dir.
#[test]
fn every_acknowledged_post_survives_sigkill() {
    let seed = seed();
    eprintln!("seed {seed} (set LISTRELAY_TEST_SEED to repeat)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let env = Env::new();
    let mut acked: Vec<(String, Vec<u8>)> = Vec::new();
    for round in 0..3 {
        let mut server = env.start();
        let mut c = server.session();
        let kill_after = rng.gen_range(0..20);
        for i in 0..20 {
            let mid = format!("r{round}-p{i}-{seed}@example.net");
            let size = rng.gen_range(10..20_000);
            let body: String = (0..size)
                .map(|k| {
                    if k % 78 == 77 {
                        '\n'
                    } else {
                        rng.gen_range('a'..='z')
                    }
                })
                .collect::<String>()
                .replace('\n', "\r\n");
            let msg = message(&mid, &body);
            let r = c.post(&[DEV], &msg);
            assert_eq!(shorts(&r), ["250 2.0.0"], "{r:?}");
            acked.push((mid, msg));
            if i == kill_after {
                server.kill9();
                break;
            }
        }
        drop(server);
        // After the restart (and before the next round posts), all are there.
        let server = env.start();
        let posts = env.posts(DEV);
        assert_eq!(posts.len(), acked.len(), "round {round}");
        for (mid, msg) in &acked {
            let m = posts
                .iter()
                .find(|m| m["message_id"] == mid.as_str())
                .unwrap_or_else(|| panic!("acknowledged post {mid} lost"));
            assert_eq!(&env.spool_body(m["id"].as_str().unwrap()), msg, "{mid}");
        }
        drop(server);
    }
}

/// A spool file the store has no record of is recorded at start, with its
/// Message-ID claimed in the window; leftover `.tmp` files are removed.
#[test]
fn spool_files_without_a_record_are_recovered_and_tmp_files_removed() {
    // The spool is the embedded store's; PostgreSQL keeps bodies in rows.
    let env = Env::embedded();
    env.cli_ok(&["list", "set", DEV, "duplicate_policy", "reject"]);
    let mut server = env.start();
    let msg = message("orig@example.net", "original");
    assert_eq!(shorts(&server.session().post(&[DEV], &msg)), ["250 2.0.0"]);
    server.stop();
    let id = env.posts(DEV)[0]["id"].as_str().unwrap().to_string();
    let spool = env.spool_dir();
    let (mut file_meta, _) = decode_spool(&std::fs::read(spool.join(format!("{id}.msg"))).unwrap())
        .expect("a spool file as documented");
    // The JSON part is `{"meta": {...}}`.
    assert_eq!(file_meta["meta"]["id"], id.as_str(), "{file_meta}");
    let meta = &mut file_meta["meta"];

    // Craft the file of a post the store never recorded (its sled write lost).
    let new_id = format!("{}{:016x}", &id[..12], 0x1234_5678_9abc_def0u64);
    let lost = message("lost@example.net", "its record was lost");
    meta["id"] = new_id.clone().into();
    meta["message_id"] = "lost@example.net".into();
    meta["dedup"]["message_id"] = "lost@example.net".into();
    meta["dedup"]["content_hash"] = "0".repeat(64).into();
    meta["size"] = lost.len().into();
    std::fs::write(
        spool.join(format!("{new_id}.msg")),
        encode_spool(&file_meta, &lost),
    )
    .unwrap();
    // And a half-written file from a crash before the rename.
    let tmp = spool.join(format!("{}{:016x}.tmp", &id[..12], 7u64));
    std::fs::write(&tmp, b"LRSPOOL1 half written").unwrap();

    let server = env.start();
    assert!(!tmp.exists(), "leftover .tmp file not removed");
    let posts = env.posts(DEV);
    assert_eq!(posts.len(), 2, "{posts:#?}");
    let rec = posts.iter().find(|m| m["id"] == new_id.as_str()).unwrap();
    assert_eq!(rec["message_id"], "lost@example.net");
    assert_eq!(env.spool_body(&new_id), lost);
    // Its Message-ID is in the window again: another post with it is refused.
    let r = server
        .session()
        .post(&[DEV], &message("lost@example.net", "another"));
    assert_eq!(shorts(&r), ["550 5.7.0"], "{r:?}");
}

/// The whole database lost (db/ deleted): the spool alone brings the queue back.
#[test]
fn queue_is_rebuilt_from_the_spool_when_the_database_is_lost() {
    let env = Env::embedded();
    let mut server = env.start();
    let mut c = server.session();
    let mut sent = Vec::new();
    for i in 0..5 {
        let msg = message(&format!("db{i}@example.net"), &format!("post {i}"));
        assert_eq!(shorts(&c.post(&[DEV], &msg)), ["250 2.0.0"]);
        sent.push(msg);
    }
    drop(c);
    server.stop();
    std::fs::remove_dir_all(env.data().join("db")).unwrap();
    // The CLI opens the store itself (no server runs) and recovers.
    let posts = env.posts(DEV);
    assert_eq!(posts.len(), 5);
    for (i, msg) in sent.iter().enumerate() {
        let m = posts
            .iter()
            .find(|m| m["message_id"] == format!("db{i}@example.net").as_str())
            .unwrap();
        assert_eq!(&env.spool_body(m["id"].as_str().unwrap()), msg);
    }
}

/// A full disk answers 452 4.3.1 and the server keeps serving once space is freed.
#[test]
fn full_disk_is_a_temporary_failure() {
    let Some(env) = Env::on_tmpfs("16m") else {
        eprintln!(
            "SKIPPED full_disk_is_a_temporary_failure: cannot mount a tmpfs here (needs root)"
        );
        return;
    };
    let server = env.start();
    let mut c = server.session();
    assert_eq!(
        shorts(&c.post(&[DEV], &message("before@example.net", "fits"))),
        ["250 2.0.0"]
    );
    // Fill the file system.
    let filler = env.data().join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 * 1024];
        loop {
            if f.write_all(&block).is_err() {
                break;
            }
        }
        let small = [0u8; 512];
        while f.write_all(&small).is_ok() {}
        let _ = f.sync_all();
    }
    let big = message("full@example.net", &"y".repeat(200_000));
    let r = c.post(&[DEV, "dev-bounces@lists.example.org"], &big);
    assert_eq!(shorts(&r), ["452 4.3.1", "452 4.3.1"], "{r:?}");
    c.send_ok(b"NOOP\r\n");
    c.expect(250, "2.0.0");

    std::fs::remove_file(&filler).unwrap();
    let r = c.post(&[DEV], &big);
    assert_eq!(shorts(&r), ["250 2.0.0"], "{r:?}");
    let posts = env.posts(DEV);
    assert_eq!(posts.len(), 2);
    let m = posts
        .iter()
        .find(|m| m["message_id"] == "full@example.net")
        .unwrap();
    assert_eq!(env.spool_body(m["id"].as_str().unwrap()), big);
    let leftovers: Vec<_> = std::fs::read_dir(env.spool_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    drop(c);
    drop(server);
}
