//! The REST API (issue 13) over real HTTP against a running `listrelay
//! serve` (on PostgreSQL in the suite's PostgreSQL pass): tokens and roles
//! (a moderator of one list cannot touch another: 403 problem+json; revoked
//! and expired tokens: 401), every CLI operation through its route, a held
//! post approved over HTTP reaching the members, the NDJSON export and
//! import streamed with flat memory, the OpenAPI document listing every
//! route, hostile input answered with problem+json, the audit log filled by
//! the API, the CLI and e-mail moderation, `base_url` with a path, and a
//! listener that cannot bind stopping the server at start.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use support::server::Listrelay;
use support::sink::Sink;

const A: &str = "a@lists.example.org";
const B: &str = "b@lists.example.org";

/// One HTTP answer.
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The JSON body of a success with `status`.
    fn ok(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "{}", self.text());
        assert_eq!(self.header("content-type"), Some("application/json"));
        serde_json::from_slice(&self.body).expect("JSON body")
    }

    /// The problem of a refusal with `status`, checked to be RFC 9457.
    fn problem(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "{}", self.text());
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{}",
            self.text()
        );
        let p: Value = serde_json::from_slice(&self.body).expect("problem JSON");
        assert_eq!(p["status"], status);
        assert!(p["type"]
            .as_str()
            .unwrap()
            .starts_with("urn:listrelay:problem:"));
        assert!(!p["detail"].as_str().unwrap().is_empty());
        p
    }
}

/// A minimal HTTP/1.1 client (one request per connection, chunked bodies
/// decoded): the test speaks the protocol a curl user would.
struct Http {
    port: u16,
}

impl Http {
    async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, Vec<u8>)>,
    ) -> Resp {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("connect to the HTTP listener");
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n",
            self.port
        );
        if let Some(t) = token {
            head.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        let body = body.map(|(ctype, b)| {
            head.push_str(&format!(
                "Content-Type: {ctype}\r\nContent-Length: {}\r\n",
                b.len()
            ));
            b
        });
        if body.is_none() && matches!(method, "POST" | "PUT") {
            head.push_str("Content-Length: 0\r\n");
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).await.unwrap();
        if let Some(b) = body {
            // The server may answer (413) before reading all of it.
            let _ = s.write_all(&b).await;
        }
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw).await;
        parse(&raw)
    }

    async fn get(&self, path: &str, token: &str) -> Resp {
        self.send("GET", path, Some(token), None).await
    }

    async fn json(&self, method: &str, path: &str, token: &str, body: Value) -> Resp {
        let b = serde_json::to_vec(&body).unwrap();
        self.send(method, path, Some(token), Some(("application/json", b)))
            .await
    }
}

fn parse(raw: &[u8]) -> Resp {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body);
    }
    Resp {
        status,
        headers,
        body,
    }
}

/// Decodes a chunked body; panics on a truncated one (an export that
/// failed half-way must not pass for a short list).
fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let nl = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size = usize::from_str_radix(std::str::from_utf8(&b[..nl]).unwrap().trim(), 16)
            .expect("chunk size");
        b = &b[nl + 2..];
        if size == 0 {
            return out;
        }
        assert!(b.len() >= size + 2, "truncated chunked body");
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

/// A running server with the HTTP listener on a free port, a sink for its
/// mail, and lists A and B made through the CLI.
async fn site(base_path: &str) -> (Listrelay, Http, Sink) {
    let sink = Sink::start().await.unwrap();
    let port = support::ports::free_port();
    let mut lr = Listrelay::with_smtp(
        sink.port(),
        &format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\nbase_url = \"http://127.0.0.1:{port}{base_path}\"\n"
        ),
    );
    lr.start();
    lr.cli_ok(&["list", "create", A]);
    lr.cli_ok(&["list", "create", B]);
    (lr, Http { port }, sink)
}

/// `token create` through the CLI; returns the token (its first line).
fn token(lr: &Listrelay, args: &[&str]) -> String {
    let mut all = vec!["token", "create"];
    all.extend_from_slice(args);
    let out = lr.cli_ok(&all);
    let t = out.lines().next().unwrap_or_default().to_string();
    assert!(t.starts_with("lrt_"), "{out}");
    t
}

fn id_of(token: &str) -> String {
    token.split('_').nth(1).unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_tokens_and_the_audit_log() {
    let (lr, http, _sink) = site("/").await;
    let site = token(&lr, &["--role", "site", "--description", "ops"]);
    // An owner and a moderator of A, made over the API by the site token.
    let made = http
        .json(
            "POST",
            "/api/v1/tokens",
            &site,
            json!({"role": "owner", "lists": [A], "description": "alice"}),
        )
        .await
        .ok(201);
    let owner = made["token"].as_str().unwrap().to_string();
    assert_eq!(made["lists"], json!([A]));
    let moderator = token(&lr, &["--role", "moderator", "--list", A]);

    // No token, a malformed header, a made-up token: 401, with the scheme.
    let none = http.send("GET", "/api/v1/lists", None, None).await;
    none.problem(401);
    assert!(none
        .header("www-authenticate")
        .unwrap()
        .starts_with("Bearer"));
    http.send("GET", "/api/v1/lists", Some("lrt_0123456789ab_nope"), None)
        .await
        .problem(401);
    let forged = format!("{}x", &site[..site.len() - 1]);
    http.get("/api/v1/lists", &forged).await.problem(401);

    // A moderator of A may not change B's settings, nor A's; the owner of A
    // may change A's, not B's.
    let set = |l: &str| format!("/api/v1/lists/{l}/settings/subject_prefix");
    let p = http
        .json("PUT", &set(B), &moderator, json!({"value": "[b]"}))
        .await
        .problem(403);
    assert!(p["detail"].as_str().unwrap().contains(B), "{p}");
    http.json("PUT", &set(A), &moderator, json!({"value": "[a]"}))
        .await
        .problem(403);
    http.json("PUT", &set(B), &owner, json!({"value": "[b]"}))
        .await
        .problem(403);
    let l = http
        .json("PUT", &set(A), &owner, json!({"value": "[a]"}))
        .await
        .ok(200);
    assert_eq!(l["settings"]["subject_prefix"], "[a]");
    // Owners and moderators see their lists only; the site sees all.
    let lists = |v: Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|l| l["address"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        lists(http.get("/api/v1/lists", &moderator).await.ok(200)),
        [A]
    );
    assert_eq!(
        lists(http.get("/api/v1/lists", &site).await.ok(200)).len(),
        2
    );
    // Site-only routes.
    for t in [&owner, &moderator] {
        http.get("/api/v1/queue", t).await.problem(403);
        http.get("/api/v1/tokens", t).await.problem(403);
        http.get("/api/v1/audit", t).await.problem(403);
    }
    http.get(&format!("/api/v1/lists/{A}/held"), &moderator)
        .await
        .ok(200);
    http.get(&format!("/api/v1/lists/{B}/held"), &moderator)
        .await
        .problem(403);

    // Revoked (by the CLI, by id) and expired tokens are refused.
    lr.cli_ok(&["token", "revoke", &id_of(&owner)]);
    let p = http.get("/api/v1/lists", &owner).await.problem(401);
    assert!(p["detail"].as_str().unwrap().contains("revoked"), "{p}");
    let brief = token(&lr, &["--role", "site", "--expires", "1s"]);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let p = http.get("/api/v1/lists", &brief).await.problem(401);
    assert!(p["detail"].as_str().unwrap().contains("expired"), "{p}");
    let listed = lr.json(&["token", "list"]);
    let revoked = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id_of(&owner).as_str())
        .unwrap();
    assert!(revoked["revoked_at"].is_u64(), "{listed}");
    assert!(
        !listed.to_string().contains(&owner),
        "a token is shown once"
    );

    // The audit log: the CLI's list creation (over the admin socket), the
    // API's change with the token and peer, the refusals.
    let log = http.get("/api/v1/audit?limit=1000", &site).await.ok(200);
    let entries = log["entries"].as_array().unwrap();
    let find = |action: &str, actor_prefix: &str| {
        entries
            .iter()
            .filter(|e| {
                e["action"] == action && e["actor"].as_str().unwrap().starts_with(actor_prefix)
            })
            .cloned()
            .collect::<Vec<_>>()
    };
    let created = find("list_create", "cli:");
    assert_eq!(created.len(), 2, "{log}");
    assert_eq!(created[0]["origin"], "socket");
    let owner_actor = format!("token:{}", id_of(&owner));
    let changes = find("list_set", &owner_actor);
    assert!(changes.iter().any(|e| e["outcome"] == "ok"
        && e["list"] == A
        && e["target"].as_str().unwrap().contains("subject_prefix=[a]")
        && e["origin"].as_str().unwrap().starts_with("http:127.0.0.1:")));
    assert!(changes
        .iter()
        .any(|e| e["list"] == B && e["outcome"].as_str().unwrap().starts_with("forbidden")));
    assert!(!find("token_create", "token:").is_empty());
    assert!(!find("token_revoke", "cli:").is_empty());
    // An owner reads the log of its list only (a new owner token of A).
    let owner2 = token(&lr, &["--role", "owner", "--list", A]);
    let mine = http
        .get(&format!("/api/v1/audit?list={A}"), &owner2)
        .await
        .ok(200);
    assert!(mine["entries"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["list"] == A));
    http.get(&format!("/api/v1/audit?list={B}"), &owner2)
        .await
        .problem(403);
    // `listrelay audit` shows the same log.
    let cli = lr.json(&["audit", "--list", A, "--since", "1h"]);
    assert!(cli["entries"].as_array().unwrap().len() >= 2, "{cli}");
}

/// Every administrative operation of the CLI through its route, with the
/// site token; a held post approved over HTTP reaches the members.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cli_operation_is_reachable() {
    let (lr, http, sink) = site("/").await;
    let t = token(&lr, &["--role", "site"]);
    // Domains.
    let d = http
        .json(
            "POST",
            "/api/v1/domains",
            &t,
            json!({"name": "other.example"}),
        )
        .await
        .ok(201);
    assert_eq!(d["name"], "other.example");
    http.json(
        "POST",
        "/api/v1/domains",
        &t,
        json!({"name": "other.example"}),
    )
    .await
    .problem(409);
    let d = http
        .json(
            "PUT",
            "/api/v1/domains/other.example/settings/opaque",
            &t,
            json!({"value": true}),
        )
        .await
        .ok(200);
    assert_eq!(d["opaque"], true);
    let ds = http.get("/api/v1/domains", &t).await.ok(200);
    assert_eq!(ds.as_array().unwrap().len(), 2);
    // Lists.
    let c = "c@other.example";
    http.json("POST", "/api/v1/lists", &t, json!({"address": c}))
        .await
        .ok(201);
    http.send("DELETE", "/api/v1/domains/other.example", Some(&t), None)
        .await
        .problem(400);
    let l = http.get(&format!("/api/v1/lists/{c}"), &t).await.ok(200);
    assert_eq!(l["list_id"], "c.other.example");
    http.get("/api/v1/lists/nobody@other.example", &t)
        .await
        .problem(404);
    let l = http
        .json(
            "PUT",
            &format!("/api/v1/lists/{c}/settings/moderators"),
            &t,
            json!({"value": ["m1@example.com", "m2@example.com"]}),
        )
        .await
        .ok(200);
    assert_eq!(
        l["settings"]["moderators"],
        json!(["m1@example.com", "m2@example.com"])
    );
    http.json(
        "PUT",
        &format!("/api/v1/lists/{c}/settings/no_such_setting"),
        &t,
        json!({"value": 1}),
    )
    .await
    .problem(400);
    let filtered = http
        .get("/api/v1/lists?domain=other.example", &t)
        .await
        .ok(200);
    assert_eq!(filtered.as_array().unwrap().len(), 1);
    // Members: add, page with a cursor, prefix search, set, remove.
    let added = http
        .json(
            "POST",
            &format!("/api/v1/lists/{c}/members"),
            &t,
            json!({"addresses": ["ann@x.example", "bob@x.example", "bea@x.example",
                                 "carl@y.example", "not an address"]}),
        )
        .await
        .ok(200);
    assert_eq!(added["added"], 4);
    assert_eq!(added["invalid"].as_array().unwrap().len(), 1);
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c2) => format!("/api/v1/lists/{c}/members?limit=3&cursor={c2}"),
            None => format!("/api/v1/lists/{c}/members?limit=3"),
        };
        let page = http.get(&path, &t).await.ok(200);
        for m in page["members"].as_array().unwrap() {
            seen.push(m["address"].as_str().unwrap().to_string());
        }
        match page["next"].as_str() {
            Some(n) => cursor = Some(n.to_string()),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "ann@x.example",
            "bea@x.example",
            "bob@x.example",
            "carl@y.example"
        ]
    );
    let b = http
        .get(&format!("/api/v1/lists/{c}/members?prefix=B"), &t)
        .await
        .ok(200);
    let names: Vec<&str> = b["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["address"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bea@x.example", "bob@x.example"]);
    let m = http
        .json(
            "PUT",
            &format!("/api/v1/lists/{c}/members/ann@x.example/settings/moderated"),
            &t,
            json!({"value": true}),
        )
        .await
        .ok(200);
    assert_eq!(m["moderated"], true);
    http.send(
        "DELETE",
        &format!("/api/v1/lists/{c}/members/carl@y.example"),
        Some(&t),
        None,
    )
    .await
    .ok(200);
    http.send(
        "DELETE",
        &format!("/api/v1/lists/{c}/members/carl@y.example"),
        Some(&t),
        None,
    )
    .await
    .problem(404);
    let r = http
        .json(
            "POST",
            &format!("/api/v1/lists/{c}/members/remove"),
            &t,
            json!({"addresses": ["bea@x.example", "zed@x.example"]}),
        )
        .await
        .ok(200);
    assert_eq!(r["removed"], 1);
    // Bounces and the queue.
    let bounces = http
        .get(&format!("/api/v1/lists/{c}/bounces"), &t)
        .await
        .ok(200);
    assert_eq!(bounces, json!([]));
    let reset = http
        .send(
            "POST",
            &format!("/api/v1/lists/{c}/bounces/bob@x.example/reset"),
            Some(&t),
            None,
        )
        .await
        .ok(200);
    assert_eq!(reset["had_record"], false);
    let q = http.get("/api/v1/queue", &t).await.ok(200);
    assert!(q["messages"].is_array());

    // A non-member's post to A is held; a moderator token of A lists,
    // shows and approves it over HTTP, and A's member receives it.
    http.json(
        "POST",
        &format!("/api/v1/lists/{A}/members"),
        &t,
        json!({"addresses": ["member@example.com"]}),
    )
    .await
    .ok(200);
    let mid = "held-1@example.net";
    let post = format!(
        "From: stranger@example.net\r\nTo: {A}\r\nSubject: <b>hello</b>\r\nMessage-ID: <{mid}>\r\n\r\nbody\r\n"
    );
    let reply = support::lmtp::lmtp_post(lr.lmtp_port, A, post.as_bytes()).await;
    assert!(reply.is_positive(), "{}", reply.text());
    let moderator = token(&lr, &["--role", "moderator", "--list", A]);
    let held_path = format!("/api/v1/lists/{A}/held");
    let end = Instant::now() + Duration::from_secs(20);
    let held = loop {
        let h = http.get(&held_path, &moderator).await.ok(200);
        if !h.as_array().unwrap().is_empty() || Instant::now() > end {
            break h;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(held[0]["message_id"], mid, "{held}");
    let queued = http.get("/api/v1/queue", &t).await.ok(200);
    let id = held[0]["id"].as_str().unwrap();
    assert!(queued["messages"].as_array().is_some());
    let body = http.get(&format!("/api/v1/queue/{id}/body"), &t).await;
    assert_eq!(body.status, 200);
    assert_eq!(body.header("content-type"), Some("message/rfc822"));
    assert!(body.text().contains("Subject: <b>hello</b>"));
    let shown = http
        .get(&format!("{held_path}/{mid}"), &moderator)
        .await
        .ok(200);
    assert!(shown["message"].as_str().unwrap().contains("body"));
    http.send(
        "POST",
        &format!("{held_path}/{mid}/publish"),
        Some(&moderator),
        None,
    )
    .await
    .problem(404);
    let acted = http
        .send(
            "POST",
            &format!("{held_path}/{mid}/approve"),
            Some(&moderator),
            None,
        )
        .await
        .ok(200);
    assert_eq!(acted["done"], true);
    let got = sink
        .wait_until(Duration::from_secs(20), |s| {
            s.records()
                .iter()
                .any(|t| t.rcpts.iter().any(|r| r == "member@example.com"))
        })
        .await;
    assert!(
        got.is_ok(),
        "the approved post did not reach the member\n{}",
        lr.log_text()
    );
    // Deleting: the list, then its now empty domain.
    http.send("DELETE", &format!("/api/v1/lists/{c}"), Some(&t), None)
        .await
        .ok(200);
    http.send("DELETE", "/api/v1/domains/other.example", Some(&t), None)
        .await
        .ok(200);

    // Every operation the OpenAPI document lists is routed (none answers
    // "no such route" or "method not allowed").
    let doc = http
        .send("GET", "/api/v1/openapi.json", None, None)
        .await
        .ok(200);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 20, "{}", paths.len());
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            let concrete = path
                .replace("{list}", A)
                .replace("{name}", "lists.example.org")
                .replace("{key}", "opaque")
                .replace("{address}", "x@example.com")
                .replace("{member}", "x@example.com")
                .replace("{message_id}", "none@example.com")
                .replace("{action}", "discard")
                .replace("{id}", "000000000000");
            let r = http
                .send(
                    &method.to_uppercase(),
                    &format!("/api/v1{concrete}"),
                    Some(&moderator),
                    None,
                )
                .await;
            if r.status == 404 || r.status == 405 {
                let p = r.problem(r.status);
                assert!(
                    p["type"] != "urn:listrelay:problem:not_found"
                        || !p["detail"]
                            .as_str()
                            .unwrap()
                            .starts_with("no such API route"),
                    "{method} {path} is documented but not routed"
                );
                assert_ne!(p["type"], "urn:listrelay:problem:method_not_allowed");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_gets_problem_json() {
    let (lr, http, _sink) = site("/").await;
    let t = token(&lr, &["--role", "site"]);
    let members = format!("/api/v1/lists/{A}/members");
    // Bad JSON, the wrong shape, an unknown field.
    for body in [
        &b"{\"addresses\": ["[..],
        b"[]",
        b"{\"addresses\": [], \"x\": 1}",
        b"\xff\xfe",
    ] {
        let r = http
            .send(
                "POST",
                &members,
                Some(&t),
                Some(("application/json", body.to_vec())),
            )
            .await;
        let p = r.problem(400);
        assert_eq!(p["type"], "urn:listrelay:problem:bad_json");
    }
    // A body past http.max_body_bytes (1 MiB).
    let huge = format!("{{\"addresses\": [\"{}\"]}}", "a".repeat(2 * 1024 * 1024));
    let r = http
        .send(
            "POST",
            &members,
            Some(&t),
            Some(("application/json", huge.into_bytes())),
        )
        .await;
    assert_eq!(r.problem(413)["type"], "urn:listrelay:problem:too_large");
    // Bad cursors, bad query strings.
    for cursor in ["!!!", "bm90LWEta2V5", "%FF"] {
        let r = http.get(&format!("{members}?cursor={cursor}"), &t).await;
        assert_eq!(
            r.problem(400)["type"],
            "urn:listrelay:problem:bad_cursor",
            "{cursor}"
        );
    }
    http.get(&format!("{members}?limit=many"), &t)
        .await
        .problem(400);
    http.get(&format!("{members}?what=1"), &t)
        .await
        .problem(400);
    http.get("/api/v1/audit?cursor=zz", &t).await.problem(400);
    // Unknown routes and methods.
    let p = http.get("/api/v1/nothing/here", &t).await.problem(404);
    assert!(p["detail"].as_str().unwrap().contains("openapi.json"));
    http.send("PATCH", "/api/v1/domains", Some(&t), None)
        .await
        .problem(405);
    // A token of the wrong shape in the header.
    http.send("GET", "/api/v1/lists", Some("not a token at all"), None)
        .await
        .problem(401);
    // An import with bad lines reports them and adds the rest.
    let ndjson =
        "{\"address\": \"ok1@example.com\"}\n\"ok2@example.com\"\n{oops\n\"not an address\"\n\n"
            .to_string()
            + &"x".repeat(5000)
            + "\n";
    let r = http
        .send(
            "POST",
            &format!("{members}/import"),
            Some(&t),
            Some(("application/x-ndjson", ndjson.into_bytes())),
        )
        .await
        .ok(200);
    assert_eq!(r["added"], 2, "{r}");
    assert_eq!(r["refused"], 3, "{r}");
    let lines: Vec<u64> = r["invalid"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [3, 4, 6]);
    // The server is still fine.
    http.get(&format!("/api/v1/lists/{A}"), &t).await.ok(200);
}

/// Peak resident memory of a process, MiB.
fn peak_rss(pid: u32) -> f64 {
    support::bench::peak_rss_mib(pid)
}

/// Many members in through the streamed import and out through the streamed
/// export: every member comes back once, the first before the last is read,
/// and the server's memory grows no more than under the CLI's streamed
/// export of the same list (each measured on a freshly started server).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_export_and_import_with_flat_memory() {
    let n: usize = std::env::var("LISTRELAY_WEB_MEMBERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let (mut lr, http, _sink) = site("/").await;
    let t = token(&lr, &["--role", "site"]);
    let mut ndjson = String::with_capacity(n * 40);
    for i in 0..n {
        ndjson.push_str(&format!(
            "{{\"address\": \"m{i:07}@d{}.example\"}}\n",
            i % 100
        ));
    }
    let t0 = Instant::now();
    let r = http
        .send(
            "POST",
            &format!("/api/v1/lists/{A}/members/import"),
            Some(&t),
            Some(("application/x-ndjson", ndjson.into_bytes())),
        )
        .await
        .ok(200);
    assert_eq!(r["added"], n as u64, "{r}");
    eprintln!("imported {n} members over HTTP in {:?}", t0.elapsed());

    // On a fresh server each time: the API's export, then the CLI's over
    // the admin socket (the streamed reference, same store, same pages).
    lr.stop();
    lr.start();
    let pid = lr.pid().unwrap();
    let before = peak_rss(pid);
    let (r, first_byte, took) =
        timed_get(&http, &format!("/api/v1/lists/{A}/members/export"), &t).await;
    let api_growth = peak_rss(pid) - before;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
    let mut seen = std::collections::HashSet::new();
    for line in r.body.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let m: Value = serde_json::from_slice(line).expect("NDJSON line");
        assert!(m["delivery_enabled"].is_boolean());
        assert!(seen.insert(m["address"].as_str().unwrap().to_string()));
    }
    assert_eq!(seen.len(), n, "every member exported once");
    lr.stop();
    lr.start();
    let pid = lr.pid().unwrap();
    let before = peak_rss(pid);
    let t0 = Instant::now();
    let out = lr.cli(&["member", "export", A]);
    let cli_took = t0.elapsed();
    assert!(out.status.success());
    assert_eq!(out.stdout.iter().filter(|&&b| b == b'\n').count(), n);
    let cli_growth = peak_rss(pid) - before;
    let size_mib = r.body.len() as f64 / (1024.0 * 1024.0);
    eprintln!(
        "exported {n} members ({size_mib:.1} MiB): API first byte after {first_byte:?}, all in \
         {took:?}, server peak +{api_growth:.1} MiB; CLI over the socket in {cli_took:?}, \
         +{cli_growth:.1} MiB"
    );
    // Streamed: the first members leave long before the last are read, and
    // the server grows no more than under the CLI's streamed export (the
    // store's own reading costs the same through both doors).
    assert!(
        first_byte * 4 < took,
        "the first byte came after {first_byte:?} of {took:?}: not streamed"
    );
    assert!(
        api_growth <= cli_growth * 1.5 + 8.0,
        "the API's export grew the server by {api_growth:.1} MiB, the CLI's by {cli_growth:.1} MiB"
    );
}

/// A GET whose body is timed: when its first byte came, and when its last.
async fn timed_get(http: &Http, path: &str, token: &str) -> (Resp, Duration, Duration) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", http.port))
        .await
        .unwrap();
    let head = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Authorization: Bearer {token}\r\n\r\n"
    );
    let t0 = Instant::now();
    s.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut first = None;
    loop {
        let k = s.read(&mut buf).await.unwrap();
        if k == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..k]);
        if first.is_none() {
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                // Past the head and the first chunk's size line: members.
                if raw.len() > end + 4 + 16 {
                    first = Some(t0.elapsed());
                }
            }
        }
    }
    let took = t0.elapsed();
    (parse(&raw), first.unwrap_or(took), took)
}

/// `base_url` with a path: the API and one-click answer under it (and at
/// `/`), and the OpenAPI document names that server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_url_with_a_path_works() {
    let (lr, http, _sink) = site("/lists/").await;
    let t = token(&lr, &["--role", "site"]);
    let doc = http
        .send("GET", "/lists/api/v1/openapi.json", None, None)
        .await
        .ok(200);
    assert_eq!(doc["servers"][0]["url"], "/lists/api/v1");
    let under = http.get("/lists/api/v1/lists", &t).await.ok(200);
    let root = http.get("/api/v1/lists", &t).await.ok(200);
    assert_eq!(under, root);
    // One-click links under the prefix reach the listener (a forged token
    // is refused by the handler, not a 404 of the router).
    let r = http
        .send("GET", "/lists/unsubscribe/forged", None, None)
        .await;
    assert_eq!(r.status, 403, "{}", r.text());
}

/// A listener that cannot bind stops `serve` at start, naming the setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_listener_that_cannot_bind_is_fatal() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let lr = Listrelay::with_smtp(
        support::ports::free_port(),
        &format!("[http]\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    let mut child = std::process::Command::new(support::server::bin())
        .arg("--config")
        .arg(&lr.config)
        .arg("serve")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("serve kept running with its HTTP port taken");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("http.listen"), "{err}");
    drop(taken);
}

/// A moderator who acts by mail is in the audit log, with the address and
/// `mail` as the origin (in process, on the run's store).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moderation_by_mail_is_audited() {
    use listrelay::address::Address;
    use listrelay::model::{AuditQuery, List};
    let rig = support::moderation::Rig::new(listrelay::clock::now()).await;
    let store = rig.store.clone();
    let mut l = List::new(Address::parse("dev@lists.example.org").unwrap());
    l.settings.set("moderators", "mod@example.com").unwrap();
    store.create_list(&l).await.unwrap();
    let intake = listrelay::intake::Intake::new(store.clone(), '+');
    let r = intake.resolve("dev@lists.example.org").await.unwrap();
    let raw =
        "From: stranger@example.net\r\nSubject: p\r\nMessage-ID: <p1@example.net>\r\n\r\nhi\r\n";
    intake
        .deliver("stranger@example.net", &[r], raw.as_bytes())
        .await;
    for post in store.unplanned_posts().await.unwrap() {
        assert!(!rig.svc.check_post(&post).await.unwrap(), "held");
    }
    let notice = rig
        .outbox
        .sent()
        .into_iter()
        .map(|(_, m)| m)
        .find(|m| m.contains("dev-moderate+approve-"))
        .expect("a moderator notice");
    let tag = notice
        .split("dev-moderate+")
        .nth(1)
        .and_then(|s| s.split('@').next())
        .unwrap()
        .to_string();
    let moderator = listrelay::moderation::policy::sender(
        "mod@example.com",
        b"From: mod@example.com\r\nSubject: ok\r\n\r\n",
    );
    assert_eq!(
        rig.svc
            .moderate_address(&l, &tag, &moderator)
            .await
            .unwrap(),
        "approve done"
    );
    let log = store
        .audit(&AuditQuery {
            list: Some(l.key()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0].actor, "mod@example.com");
    assert_eq!(log[0].origin, "mail");
    assert_eq!(log[0].action, "held_act");
    assert!(
        log[0].target.contains("approve <p1@example.net>"),
        "{log:?}"
    );
}

/// A held post rejected over the API with `{"reason": …}`: the sender's
/// rejection notice quotes the reason; an empty body still works, and a
/// body that is not the reason object is refused as bad JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejection_reason_reaches_the_sender() {
    let sink = Sink::builder().keep_data(true).start().await.unwrap();
    let port = support::ports::free_port();
    let mut lr = Listrelay::with_smtp(
        sink.port(),
        &format!("[http]\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    lr.start();
    lr.cli_ok(&["list", "create", A]);
    let http = Http { port };
    let moderator = token(&lr, &["--role", "moderator", "--list", A]);
    let held_path = format!("/api/v1/lists/{A}/held");
    for mid in ["r-1@example.net", "r-2@example.net"] {
        let post = format!(
            "From: stranger@example.net\r\nTo: {A}\r\nSubject: off topic\r\nMessage-ID: <{mid}>\r\n\r\nbody\r\n"
        );
        let reply = support::lmtp::lmtp_post(lr.lmtp_port, A, post.as_bytes()).await;
        assert!(reply.is_positive(), "{}", reply.text());
    }
    let end = Instant::now() + Duration::from_secs(20);
    while http
        .get(&held_path, &moderator)
        .await
        .ok(200)
        .as_array()
        .unwrap()
        .len()
        < 2
    {
        assert!(Instant::now() < end, "not held: {}", lr.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    http.json(
        "POST",
        &format!("{held_path}/r-1@example.net/reject"),
        &moderator,
        json!({"reason": "please write to the ops list instead"}),
    )
    .await
    .ok(200);
    http.json(
        "POST",
        &format!("{held_path}/r-2@example.net/reject"),
        &moderator,
        json!({"why": "unknown field"}),
    )
    .await
    .problem(400);
    let acted = http
        .send(
            "POST",
            &format!("{held_path}/r-2@example.net/discard"),
            Some(&moderator),
            None,
        )
        .await
        .ok(200);
    assert_eq!(acted["done"], true);
    let notice = sink
        .wait_records(1, Duration::from_secs(20), |t| {
            t.rcpts.iter().any(|r| r == "stranger@example.net")
                && t.data.as_ref().is_some_and(|d| {
                    String::from_utf8_lossy(d).contains("please write to the ops list instead")
                })
        })
        .await;
    assert!(
        notice.is_ok(),
        "no rejection notice with the reason\n{}",
        lr.log_text()
    );
}

/// A slowloris client (a byte of its request head every 2 s) is dropped
/// once the head has taken `http::HEADER_READ_TIMEOUT` (10 s), while the
/// listener keeps answering everyone else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_request_head_is_dropped() {
    let (_lr, http, _sink) = site("/").await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", http.port))
        .await
        .unwrap();
    let t0 = Instant::now();
    s.write_all(b"GET /api/v1/openapi.json HTTP/1.1\r\n")
        .await
        .unwrap();
    let mut closed = None;
    let mut buf = [0u8; 1024];
    for i in 0..15 {
        if s.write_all(format!("X-Slow-{i}: y\r").as_bytes())
            .await
            .is_err()
        {
            closed = Some(t0.elapsed());
            break;
        }
        match tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await {
            Ok(Ok(_)) | Ok(Err(_)) => {
                // 0 bytes (closed), an error, or a 408 before closing.
                closed = Some(t0.elapsed());
                break;
            }
            Err(_) => {}
        }
        if i == 2 {
            // Meanwhile the listener answers others.
            let r = http.send("GET", "/api/v1/openapi.json", None, None).await;
            assert_eq!(r.status, 200);
        }
    }
    let closed = closed.expect("the slow client was never dropped");
    assert!(
        closed >= Duration::from_secs(9) && closed < Duration::from_secs(14),
        "dropped after {closed:?}"
    );
}

/// Bans and digests over the API: an owner of the list may, a moderator
/// may not; a second ban of the same pattern changes nothing (200), and a
/// lifted ban that was not there is a 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bans_and_digests_for_the_lists_owner() {
    let (lr, http, _sink) = site("/").await;
    let owner = token(&lr, &["--role", "owner", "--list", A]);
    let moderator = token(&lr, &["--role", "moderator", "--list", A]);
    let bans = format!("/api/v1/lists/{A}/bans");
    let spam = json!({"pattern": "^.*@spam\\.example$"});
    http.json("POST", &bans, &moderator, spam.clone())
        .await
        .problem(403);
    http.json("POST", &bans, &owner, spam.clone()).await.ok(201);
    http.json("POST", &bans, &owner, spam).await.ok(200);
    let listed = http.get(&bans, &owner).await.ok(200);
    assert_eq!(listed["bans"], json!(["^.*@spam\\.example$"]), "{listed}");
    http.json("POST", &bans, &owner, json!({"pattern": "^(unclosed"}))
        .await
        .problem(400);
    // The CLI sees what the API did.
    let cli = lr.cli_ok(&["ban", "list", A]);
    assert!(cli.contains("^.*@spam\\.example$"), "{cli}");
    let encoded = "%5E.*%40spam%5C.example%24";
    let gone = format!("{bans}/{encoded}");
    http.send("DELETE", &gone, Some(&owner), None).await.ok(200);
    http.send("DELETE", &gone, Some(&owner), None)
        .await
        .problem(404);
    // B is not the owner's list.
    http.get(&format!("/api/v1/lists/{B}/bans"), &owner)
        .await
        .problem(403);

    // Digests: status and send, the owner's; nothing waits on a new list.
    let status = http
        .get(&format!("/api/v1/lists/{A}/digest"), &owner)
        .await
        .ok(200);
    assert!(status.is_object(), "{status}");
    http.json(
        "POST",
        &format!("/api/v1/lists/{A}/digest/send"),
        &moderator,
        json!({}),
    )
    .await
    .problem(403);
    let send = format!("/api/v1/lists/{A}/digest/send");
    let off = http
        .json("POST", &send, &owner, json!({}))
        .await
        .problem(400);
    assert!(
        off["detail"].as_str().unwrap().contains("digest_enabled"),
        "{off}"
    );
    http.json(
        "PUT",
        &format!("/api/v1/lists/{A}/settings/digest_enabled"),
        &owner,
        json!({"value": true}),
    )
    .await
    .ok(200);
    http.json("POST", &send, &owner, json!({})).await.ok(200);
}
