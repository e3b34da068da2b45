//! LMTP protocol behaviour of the real binary, over raw sockets.

mod support;

use support::blackbox::*;

/// One pipelined session (everything sent in a single write) that walks through
/// the reply codes a session can give.
#[test]
fn pipelined_session_gets_every_reply_in_order() {
    let env = Env::with_config("[lmtp]\nmax_recipients = 3\n");
    let server = env.start();
    let mut c = server.connect();
    let long = "X".repeat(5000);
    let mut s = String::new();
    s.push_str("MAIL FROM:<a@example.net>\r\n"); // 503 5.5.1 before LHLO
    s.push_str("EHLO client.example.net\r\n"); // 500 5.5.1
    s.push_str("HELO client.example.net\r\n"); // 500 5.5.1
    s.push_str("LHLO client.example.net\r\n"); // 250 multi-line
    s.push_str("FOO bar\r\n"); // 500 5.5.1
    s.push_str(&format!("NOOP {long}\r\n")); // 500 5.5.2
    s.push_str("VRFY someone\r\n"); // 252
    s.push_str("HELP\r\n"); // 214
    s.push_str("NOOP\r\n"); // 250
    s.push_str("RCPT TO:<dev@lists.example.org>\r\n"); // 503 5.5.1 need MAIL
    s.push_str("DATA\r\n"); // 503 5.5.1 need MAIL
    s.push_str("MAIL FROM:<a@example.net> SIZE=999999999999\r\n"); // 552 5.3.4
    s.push_str("MAIL FROM:<a@example.net>\r\n"); // 250
    s.push_str("MAIL FROM:<a@example.net>\r\n"); // 503 5.5.1 nested
    s.push_str("RCPT TO:<dev@lists.example.org>\r\n"); // 250
    s.push_str("RCPT TO:<nosuch@lists.example.org>\r\n"); // 550 5.1.1
    s.push_str("RCPT TO:<dev@unknown-domain.example>\r\n"); // 550 5.1.1
    s.push_str("RCPT TO:<other@lists.example.org>\r\n"); // 452 4.5.3 (4th RCPT)
    s.push_str("DATA\r\n"); // 354
    s.push_str("Subject: one\r\nMessage-ID: <p1@example.net>\r\n\r\nhello\r\n.\r\n"); // 250
    s.push_str("RSET\r\n"); // 250
    s.push_str("DATA\r\n"); // 503 no MAIL
    s.push_str("MAIL FROM:<a@example.net>\r\n"); // 250
    s.push_str("RCPT TO:<dev@lists.example.org>\r\n"); // 250
    s.push_str("DATA\r\n"); // 354
                            // A loop: it carries the list's own List-Id.
    s.push_str("Subject: loop\r\nList-Id: Dev <dev.lists.example.org>\r\nMessage-ID: <p2@example.net>\r\n\r\nx\r\n.\r\n"); // 550 5.4.6
    s.push_str("MAIL FROM:<a@example.net>\r\n"); // 250
    s.push_str("RCPT TO:<dev@lists.example.org>\r\n"); // 250
    s.push_str("DATA\r\n"); // 354
    s.push_str("Subject: dup\r\nMessage-ID: <p1@example.net>\r\n\r\ndifferent body\r\n.\r\n"); // 250 discarded
    s.push_str("QUIT\r\n"); // 221
    c.send_ok(s.as_bytes());

    let expected = [
        "503 5.5.1",
        "500 5.5.1",
        "500 5.5.1",
        "250",
        "500 5.5.1",
        "500 5.5.2",
        "252 2.5.0",
        "214 2.0.0",
        "250 2.0.0",
        "503 5.5.1",
        "503 5.5.1",
        "552 5.3.4",
        "250 2.1.0",
        "503 5.5.1",
        "250 2.1.5",
        "550 5.1.1",
        "550 5.1.1",
        "452 4.5.3",
        "354",
        "250 2.0.0",
        "250 2.0.0",
        "503 5.5.1",
        "250 2.1.0",
        "250 2.1.5",
        "354",
        "550 5.4.6",
        "250 2.1.0",
        "250 2.1.5",
        "354",
        "250 2.0.0",
        "221 2.0.0",
    ];
    let got = c.replies(expected.len());
    assert_eq!(shorts(&got), expected, "{got:#?}");
    let lhlo = &got[3];
    for ext in ["PIPELINING", "ENHANCEDSTATUSCODES", "SIZE", "CHUNKING"] {
        assert!(lhlo.text().contains(ext), "LHLO lacks {ext}: {lhlo:?}");
    }
    assert!(got[29].text().contains("discarded"), "{:?}", got[29]);
    c.expect_closed();
    let posts = env.posts(DEV);
    assert_eq!(posts.len(), 1, "only the first post is stored: {posts:#?}");
    assert_eq!(posts[0]["message_id"], "p1@example.net");
}

/// A post, a VERP bounce and an unknown list in one transaction: one reply per
/// accepted recipient, in RCPT order.
#[test]
fn mixed_recipients_get_one_reply_each_in_order() {
    let env = Env::new();
    let server = env.start();
    let mut c = server.session();
    let rr = c.begin(&[
        "dev-bounces+x=y.org@lists.example.org",
        "nosuch@lists.example.org",
        DEV,
        "other@lists.example.org",
    ]);
    assert_eq!(
        shorts(&rr),
        ["250 2.1.5", "550 5.1.1", "250 2.1.5", "250 2.1.5"]
    );
    let msg = message("mixed@example.net", "body");
    c.send_ok(&dot_stuff(&msg));
    let replies = c.replies(3);
    assert_eq!(shorts(&replies), ["250 2.0.0"; 3], "{replies:#?}");
    // Each reply names the id stored for that recipient, in RCPT order.
    let queue = env.queue();
    let id_of = |rcpt: &str| -> String {
        queue
            .iter()
            .find(|m| m["rcpt"] == rcpt)
            .and_then(|m| m["id"].as_str())
            .unwrap_or_else(|| panic!("nothing stored for {rcpt}: {queue:#?}"))
            .to_string()
    };
    let order = [
        "dev-bounces+x=y.org@lists.example.org",
        DEV,
        "other@lists.example.org",
    ];
    for (r, rcpt) in replies.iter().zip(order) {
        assert!(r.text().contains(&id_of(rcpt)), "{r:?} is not for {rcpt}");
    }
    assert_eq!(queue.len(), 3);
    let bounce = queue.iter().find(|m| m["suffix"] == "bounces").unwrap();
    assert_eq!(bounce["tag"], "x=y.org");
    assert_eq!(env.spool_body(bounce["id"].as_str().unwrap()), msg);
}

#[test]
fn bdat_in_several_chunks() {
    let env = Env::new();
    let server = env.start();
    let mut c = server.session();
    let msg = message(
        "bdat@example.net",
        ".starts with a dot\r\n.\r\nno stuffing in BDAT",
    );
    let (a, rest) = msg.split_at(10);
    let (b, d) = rest.split_at(rest.len() / 2);
    let mut s = Vec::new();
    s.extend_from_slice(b"MAIL FROM:<a@example.net>\r\nRCPT TO:<dev@lists.example.org>\r\n");
    for (chunk, last) in [(a, false), (b, false), (d, true)] {
        let cmd = if last {
            format!("BDAT {} LAST\r\n", chunk.len())
        } else {
            format!("BDAT {}\r\n", chunk.len())
        };
        s.extend_from_slice(cmd.as_bytes());
        s.extend_from_slice(chunk);
    }
    s.extend_from_slice(b"NOOP\r\n");
    c.send_ok(&s);
    let got = c.replies(6);
    assert_eq!(
        shorts(&got),
        [
            "250 2.1.0",
            "250 2.1.5",
            "250 2.0.0",
            "250 2.0.0",
            "250 2.0.0",
            "250 2.0.0"
        ]
    );
    assert!(got[4].text().contains("queued as"), "{:?}", got[4]);
    let posts = env.posts(DEV);
    assert_eq!(posts.len(), 1);
    assert_eq!(env.spool_body(posts[0]["id"].as_str().unwrap()), msg);
}

#[test]
fn bdat_without_a_valid_recipient_still_consumes_the_chunk() {
    let env = Env::new();
    let server = env.start();
    let mut c = server.session();
    // The chunk looks like commands: if it were not consumed, they would run.
    let chunk = b"RSET\r\nQUIT\r\n";
    let mut s = Vec::new();
    s.extend_from_slice(b"MAIL FROM:<a@example.net>\r\nRCPT TO:<nosuch@lists.example.org>\r\n");
    s.extend_from_slice(format!("BDAT {} LAST\r\n", chunk.len()).as_bytes());
    s.extend_from_slice(chunk);
    // And BDAT with no MAIL at all.
    s.extend_from_slice(b"RSET\r\n");
    s.extend_from_slice(format!("BDAT {}\r\n", chunk.len()).as_bytes());
    s.extend_from_slice(chunk);
    s.extend_from_slice(b"NOOP\r\n");
    c.send_ok(&s);
    let got = c.replies(6);
    assert_eq!(
        shorts(&got),
        [
            "250 2.1.0",
            "550 5.1.1",
            "503 5.5.1",
            "250 2.0.0",
            "503 5.5.1",
            "250 2.0.0"
        ],
        "{got:#?}"
    );
    assert!(got[5].text().contains("ok"), "NOOP, not RSET: {:?}", got[5]);
    assert!(env.queue().is_empty());
}

#[test]
fn dot_stuffing_is_undone_byte_exactly() {
    let env = Env::new();
    let server = env.start();
    let mut c = server.session();
    let msg = b"Subject: dots\r\nMessage-ID: <dots@example.net>\r\n\r\n..x\r\n.\r\n...\r\nend.\r\n.end\r\n\r\n"
        .to_vec();
    // Sent stuffed by hand: ..x -> ...x, . -> .., ... -> ...., .end -> ..end
    let wire = b"Subject: dots\r\nMessage-ID: <dots@example.net>\r\n\r\n...x\r\n..\r\n....\r\nend.\r\n..end\r\n\r\n.\r\n";
    assert_eq!(dot_stuff(&msg), wire.to_vec());
    c.begin(&[DEV]);
    c.send_ok(wire);
    c.expect(250, "2.0.0");
    let posts = env.posts(DEV);
    assert_eq!(env.spool_body(posts[0]["id"].as_str().unwrap()), msg);
    assert!(msg.windows(5).any(|w| w == b"\n..x\r"));
}

#[test]
fn empty_body_gets_its_replies() {
    let env = Env::new();
    let server = env.start();
    let mut c = server.session();
    c.begin(&[DEV, "dev-bounces@lists.example.org"]);
    c.send_ok(b".\r\n");
    let got = c.replies(2);
    assert_eq!(shorts(&got), ["250 2.0.0", "250 2.0.0"]);
    c.send_ok(b"NOOP\r\n");
    c.expect(250, "2.0.0");
    let q = env.queue();
    let bounce = q.iter().find(|m| m["suffix"] == "bounces").unwrap();
    assert_eq!(env.spool_body(bounce["id"].as_str().unwrap()), b"");
    // The post got only a Message-ID header.
    let post = q.iter().find(|m| m["suffix"] == "post").unwrap();
    let body = env.spool_body(post["id"].as_str().unwrap());
    let mid = post["message_id"].as_str().unwrap();
    assert_eq!(body, format!("Message-ID: <{mid}>\r\n").into_bytes());
}

#[test]
fn missing_message_id_is_inserted_and_every_other_byte_kept() {
    let env = Env::new();
    let server = env.start();
    let mut c = server.session();
    let msg = b"From: a@example.net\r\nSubject: no id\r\nX-Odd:  two  spaces \r\n\r\nbody line\r\n\r\nMessage-ID: <not-a-header@body>\r\n"
        .to_vec();
    let got = c.post(&[DEV], &msg);
    assert_eq!(shorts(&got), ["250 2.0.0"]);
    let posts = env.posts(DEV);
    let mid = posts[0]["message_id"].as_str().unwrap().to_string();
    let (local, domain) = mid.split_once('@').unwrap();
    assert_eq!(domain, HOST);
    assert!(!local.is_empty() && local.chars().all(|c| c.is_ascii_alphanumeric()));
    let body = env.spool_body(posts[0]["id"].as_str().unwrap());
    let header = format!("Message-ID: <{mid}>\r\n");
    let at = msg.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 2;
    let mut expected = msg[..at].to_vec();
    expected.extend_from_slice(header.as_bytes());
    expected.extend_from_slice(&msg[at..]);
    assert_eq!(
        String::from_utf8_lossy(&body),
        String::from_utf8_lossy(&expected)
    );
    assert_eq!(body, expected);
}

#[test]
fn an_existing_message_id_is_never_rewritten() {
    let env = Env::new();
    let server = env.start();
    let mut c = server.session();
    for (i, mid_header) in [
        "Message-ID: <keep.me@example.net>",
        "message-id:   <Odd.Case@Example.NET>  ",
        "Message-ID: not even angle brackets",
    ]
    .iter()
    .enumerate()
    {
        let msg = format!("Subject: {i}\r\n{mid_header}\r\n\r\nbody\r\n").into_bytes();
        assert_eq!(shorts(&c.post(&[DEV], &msg)), ["250 2.0.0"]);
        let q = env.posts(DEV);
        let m = q.last().unwrap();
        assert_eq!(
            env.spool_body(m["id"].as_str().unwrap()),
            msg,
            "{mid_header}"
        );
    }
    assert_eq!(env.posts(DEV).len(), 3);
}

#[test]
fn duplicate_discard_and_reject() {
    let env = Env::new();
    let server = env.start();
    let mut c = server.session();
    assert_eq!(
        shorts(&c.post(&[DEV], &message("d@example.net", "first"))),
        ["250 2.0.0"]
    );
    let r = c.post(&[DEV], &message("d@example.net", "second"));
    assert_eq!(shorts(&r), ["250 2.0.0"]);
    assert!(r[0].text().contains("discarded"), "{r:?}");
    assert_eq!(env.posts(DEV).len(), 1);

    // The policy change applies at once to the running server.
    env.cli_ok(&["list", "set", DEV, "duplicate_policy", "reject"]);
    let r = c.post(&[DEV], &message("d@example.net", "third"));
    assert_eq!(shorts(&r), ["550 5.7.0"], "{r:?}");
    // The MTA re-delivering the exact same bytes: 250, stored once.
    let r = c.post(&[DEV], &message("d@example.net", "first"));
    assert_eq!(shorts(&r), ["250 2.0.0"], "{r:?}");
    assert!(r[0].text().contains("already queued"), "{r:?}");
    let posts = env.posts(DEV);
    assert_eq!(posts.len(), 1);
    assert_eq!(
        env.spool_body(posts[0]["id"].as_str().unwrap()),
        message("d@example.net", "first")
    );

    env.cli_ok(&["list", "set", DEV, "duplicate_policy", "discard"]);
    let r = c.post(&[DEV], &message("d@example.net", "fourth"));
    assert_eq!(shorts(&r), ["250 2.0.0"]);
    assert!(r[0].text().contains("discarded"), "{r:?}");
    assert_eq!(env.posts(DEV).len(), 1);
}

#[test]
fn redelivery_without_message_id_is_stored_once_under_reject() {
    let env = Env::new();
    env.cli_ok(&["list", "set", DEV, "duplicate_policy", "reject"]);
    let server = env.start();
    let msg = b"Subject: no id\r\n\r\nsame bytes\r\n".to_vec();
    for _ in 0..3 {
        let mut c = server.session();
        assert_eq!(shorts(&c.post(&[DEV], &msg)), ["250 2.0.0"]);
    }
    assert_eq!(env.posts(DEV).len(), 1);
}

#[test]
fn same_message_id_on_two_lists_is_not_a_duplicate() {
    let env = Env::new();
    env.cli_ok(&["list", "set", DEV, "duplicate_policy", "reject"]);
    env.cli_ok(&["list", "set", OTHER, "duplicate_policy", "reject"]);
    let server = env.start();
    let mut c = server.session();
    let r = c.post(&[DEV, OTHER], &message("cross@example.net", "a"));
    assert_eq!(shorts(&r), ["250 2.0.0", "250 2.0.0"]);
    // Separately too, with different bytes.
    env.cli_ok(&["list", "create", "third@lists.example.org"]);
    env.cli_ok(&[
        "list",
        "set",
        "third@lists.example.org",
        "nonmember_action",
        "accept",
    ]);
    env.cli_ok(&[
        "member",
        "add",
        "third@lists.example.org",
        "carol@example.net",
    ]);
    env.cli_ok(&[
        "list",
        "set",
        "third@lists.example.org",
        "duplicate_policy",
        "reject",
    ]);
    let r = c.post(
        &["third@lists.example.org"],
        &message("cross@example.net", "b"),
    );
    assert_eq!(shorts(&r), ["250 2.0.0"]);
    assert_eq!(env.posts(DEV).len(), 1);
    assert_eq!(env.posts(OTHER).len(), 1);
    assert_eq!(env.posts("third@lists.example.org").len(), 1);
}

#[test]
fn lmtp_over_a_unix_socket() {
    let env = Env::new();
    let path = env.dir.path().join("lmtp.sock");
    let server = env.start_unix(&path);
    let mut c = server.session();
    let msg = message("unix@example.net", "over a unix socket");
    assert_eq!(shorts(&c.post(&[DEV], &msg)), ["250 2.0.0"]);
    c.send_ok(b"QUIT\r\n");
    c.expect(221, "2.0.0");
    let posts = env.posts(DEV);
    assert_eq!(env.spool_body(posts[0]["id"].as_str().unwrap()), msg);
}
