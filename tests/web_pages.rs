//! The pages (issue 13) in a real browser: headless Chromium over WebDriver
//! against a running `listrelay serve` behind a path prefix (`/lists/`),
//! its mail caught by the sink. One browser and one server for the whole
//! story, told in order as a person would live it:
//!
//! 1. a visitor subscribes through the form and confirms with the mail that
//!    reaches the sink: they are a member;
//! 2. a moderator asks for a login link, follows it, and is logged in;
//! 3. a post whose From, Subject and body carry script and markup payloads
//!    is previewed: no injected element exists, the payloads show as text;
//! 4. the moderator approves it from the queue and the members receive it;
//! 5. a member unsubscribes from the one-click landing page of that copy;
//! 6. a forged and a replayed login link, a POST without (or with another
//!    session's) CSRF token, and the moderator of list A acting on list B
//!    are all refused, and change nothing;
//! 7. an owner logs in: a bad setting is refused next to its field, the
//!    members page searches, and the audit log shows who approved the post,
//!    from the web.
//!
//! Screenshots go to `target/screenshots/` for a person to look at.

mod support;

use std::time::Duration;

use fantoccini::{Client, Locator};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use support::browser::Browser;
use support::lmtp::lmtp_post;
use support::server::Listrelay;
use support::sink::Sink;

const A: &str = "a@lists.example.org";
const B: &str = "b@lists.example.org";
const MODERATOR: &str = "mod@example.com";
const OWNER: &str = "own@example.com";
const VISITOR: &str = "visitor@example.org";
const WAIT: Duration = Duration::from_secs(20);

/// The site under test.
struct Site {
    lr: Listrelay,
    sink: Sink,
    port: u16,
}

impl Site {
    /// A page's URL under the prefix.
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/lists/{path}", self.port)
    }

    /// The text of the first mail to `to` whose text contains `needle`.
    async fn mail_to(&self, to: &str, needle: &str) -> String {
        let found = self
            .sink
            .wait_records(1, WAIT, |t| {
                t.rcpts.iter().any(|r| r.eq_ignore_ascii_case(to))
                    && t.data
                        .as_ref()
                        .is_some_and(|d| String::from_utf8_lossy(d).contains(needle))
            })
            .await
            .unwrap_or_else(|_| panic!("no mail to {to} with {needle:?}"));
        String::from_utf8_lossy(found[0].data.as_ref().unwrap()).into_owned()
    }

    /// Whether `address` is a member of `list` (the CLI, over the socket).
    fn is_member(&self, list: &str, address: &str) -> bool {
        self.lr
            .cli_ok(&["member", "list", list])
            .lines()
            .any(|l| l.trim().eq_ignore_ascii_case(address))
    }

    /// The Message-IDs held on `list`.
    fn held(&self, list: &str) -> String {
        self.lr.cli_ok(&["held", "list", list])
    }

    async fn wait_held(&self, list: &str, message_id: &str) {
        let end = tokio::time::Instant::now() + WAIT;
        while !self.held(list).contains(message_id) {
            assert!(
                tokio::time::Instant::now() < end,
                "{message_id} was not held on {list}: {}",
                self.lr.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The first word of `text` that contains `marker` (a link in a mail).
fn word_with(text: &str, marker: &str) -> String {
    text.split_whitespace()
        .find(|w| w.contains(marker))
        .unwrap_or_else(|| panic!("no {marker:?} in {text}"))
        .trim_matches(|c| c == '<' || c == '>' || c == ',')
        .to_string()
}

async fn text_of(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .text()
        .await
        .unwrap()
}

async fn body_text(c: &Client) -> String {
    text_of(c, "body").await
}

async fn fill(c: &Client, css: &str, value: &str) {
    let e = c.find(Locator::Css(css)).await.unwrap();
    e.clear().await.unwrap();
    e.send_keys(value).await.unwrap();
}

/// Presses a button that submits a form, and waits until the next page
/// replaced this one (the old page's root goes stale).
async fn submit(c: &Client, css: &str) {
    let old = c.find(Locator::Css("html")).await.unwrap();
    click(c, css).await;
    let end = tokio::time::Instant::now() + WAIT;
    while old.text().await.is_ok() {
        assert!(
            tokio::time::Instant::now() < end,
            "{css} did not load a page"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The new page is there once its body can be read.
    while c.find(Locator::Css("body")).await.is_err() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .click()
        .await
        .unwrap();
}

/// One raw HTTP POST (a form), as a forger would send it; the status and
/// body.
async fn post_form(port: u16, path: &str, cookie: &str, form: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Cookie: {cookie}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\n\r\n{form}",
        form.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// One raw HTTP GET without cookies; the status and the whole answer.
async fn get_page(port: u16, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The browser's session cookie, as a `Cookie` header value.
async fn cookie(c: &Client) -> String {
    let k = c
        .get_named_cookie("lr_session")
        .await
        .expect("session cookie");
    format!("lr_session={}", k.value())
}

async fn start() -> Site {
    let sink = Sink::builder().keep_data(true).start().await.unwrap();
    let port = support::ports::free_port();
    let mut lr = Listrelay::with_smtp(
        sink.port(),
        &format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\nbase_url = \"http://127.0.0.1:{port}/lists/\"\n"
        ),
    );
    lr.start();
    for list in [A, B] {
        lr.cli_ok(&["list", "create", list]);
    }
    lr.cli_ok(&["list", "set", A, "owners", OWNER]);
    lr.cli_ok(&["list", "set", A, "moderators", MODERATOR]);
    lr.cli_ok(&["list", "set", A, "description", "The A team's list"]);
    // Every copy gets its own envelope, and so its one-click link.
    lr.cli_ok(&["list", "set", A, "verp_percent", "100"]);
    lr.cli_ok(&["list", "set", B, "moderators", "modb@example.com"]);
    lr.cli_ok(&["member", "add", A, "m1@example.net", "m2@example.net"]);
    Site { lr, sink, port }
}

/// Logs `who` in through the login form and the mailed link; returns the
/// link (used).
async fn log_in(site: &Site, c: &Client, who: &str) -> String {
    c.goto(&site.url("login")).await.unwrap();
    fill(c, "#login input[name=address]", who).await;
    submit(c, "#login button").await;
    assert!(body_text(c).await.contains("login link is on its way"));
    let mail = site.mail_to(who, "/lists/login/").await;
    let link = word_with(&mail, "/lists/login/");
    c.goto(&link).await.unwrap();
    submit(c, "#go").await;
    assert!(
        c.current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/lists/admin/"),
        "{}",
        body_text(c).await
    );
    link
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_in_a_real_browser() {
    let site = start().await;
    let browser = Browser::start().await;
    let c = browser.client.clone();

    // 1. A visitor subscribes and confirms by mail.
    c.goto(&site.url(&format!("info/{A}"))).await.unwrap();
    assert!(body_text(&c).await.contains("The A team's list"));
    browser.screenshot("01-info").await;
    fill(&c, "#subscribe input[name=address]", VISITOR).await;
    submit(&c, "#subscribe button").await;
    assert!(text_of(&c, "#message")
        .await
        .contains("confirmation is on its way"));
    let confirm = site.mail_to(VISITOR, "a-confirm+").await;
    let reply_to = word_with(&confirm, "a-confirm+");
    let answer = format!(
        "From: {VISITOR}\r\nTo: {reply_to}\r\nSubject: Re: confirm\r\n\
         Message-ID: <confirm.1@example.org>\r\n\r\nyes\r\n"
    );
    let r = lmtp_post(site.lr.lmtp_port, &reply_to, answer.as_bytes()).await;
    assert_eq!(r.code, 250, "{}", r.text());
    let end = tokio::time::Instant::now() + WAIT;
    while !site.is_member(A, VISITOR) {
        assert!(
            tokio::time::Instant::now() < end,
            "the visitor never joined"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // 2. The moderator logs in with a mailed link.
    let used_link = log_in(&site, &c, MODERATOR).await;
    assert!(text_of(&c, "#lists").await.contains(A));
    browser.screenshot("02-overview").await;

    // 3. Hostile posts are held; the preview shows them as text.
    let xss = "From: \"<script>window.pwned=1</script>\" <evil@example.com>\r\n\
               To: a@lists.example.org\r\n\
               Subject: <img id=\"injected\" src=\"http://127.0.0.1:9/x.png\"><b class=\"injected\">bold</b>\r\n\
               Message-ID: <xss.1@example.com>\r\n\r\n\
               <script>document.title='pwned'</script>\r\n\
               <iframe id=\"frame\" src=\"http://127.0.0.1:9/\"></iframe><p class=\"injected\">hello</p>\r\n";
    let plain = "From: stranger@example.com\r\nTo: a@lists.example.org\r\n\
                 Subject: keep me\r\nMessage-ID: <plain.1@example.com>\r\n\r\nhi\r\n";
    let other = "From: stranger@example.com\r\nTo: b@lists.example.org\r\n\
                 Subject: on B\r\nMessage-ID: <b.1@example.com>\r\n\r\nhi\r\n";
    for (list, m) in [(A, xss), (A, plain), (B, other)] {
        let r = lmtp_post(site.lr.lmtp_port, list, m.as_bytes()).await;
        assert_eq!(r.code, 250, "{}", r.text());
    }
    site.wait_held(A, "xss.1@example.com").await;
    site.wait_held(A, "plain.1@example.com").await;
    site.wait_held(B, "b.1@example.com").await;

    c.goto(&site.url(&format!("admin/{A}/held"))).await.unwrap();
    let queue = text_of(&c, "#held").await;
    assert!(queue.contains("<b class=\"injected\">bold</b>"), "{queue}");
    browser.screenshot("03-held-queue").await;
    c.goto(&site.url(&format!("admin/{A}/held/xss.1@example.com")))
        .await
        .unwrap();
    browser.screenshot("04-held-preview").await;
    for css in [
        "script",
        "iframe",
        "img",
        "#injected",
        ".injected",
        "#frame",
    ] {
        let found = c.find_all(Locator::Css(css)).await.unwrap();
        assert!(found.is_empty(), "an injected {css} exists in the page");
    }
    let untouched = c
        .execute(
            "return window.pwned === undefined && document.title !== 'pwned'",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(untouched, serde_json::json!(true));
    assert!(text_of(&c, "#from")
        .await
        .contains("<script>window.pwned=1</script>"));
    assert!(text_of(&c, "#subject")
        .await
        .contains("<b class=\"injected\">bold</b>"));
    let body = text_of(&c, "#body").await;
    assert!(
        body.contains("<script>document.title='pwned'</script>"),
        "{body}"
    );
    assert!(body.contains("<iframe id=\"frame\""), "{body}");

    // 4. Approved from the queue, the post reaches the members.
    c.goto(&site.url(&format!("admin/{A}/held"))).await.unwrap();
    click(&c, "input[name=id][value='xss.1@example.com']").await;
    submit(&c, "#approve_selected").await;
    assert!(text_of(&c, "#flash").await.contains("Approved 1"));
    browser.screenshot("05-approved").await;
    for member in ["m1@example.net", "m2@example.net", VISITOR] {
        site.mail_to(member, "xss.1@example.com").await;
    }
    assert!(!site.held(A).contains("xss.1@example.com"));

    // 5. The one-click landing page of m2's copy.
    let copy = site.mail_to("m2@example.net", "xss.1@example.com").await;
    let header = copy
        .lines()
        .find(|l| l.starts_with("List-Unsubscribe:"))
        .expect("a List-Unsubscribe header");
    let url = word_with(header, "/unsubscribe/");
    c.goto(&url).await.unwrap();
    assert!(body_text(&c).await.contains("m2@example.net"));
    assert!(
        site.is_member(A, "m2@example.net"),
        "GET never unsubscribes"
    );
    browser.screenshot("06-one-click").await;
    submit(&c, "#unsubscribe").await;
    let done = body_text(&c).await;
    assert!(done.contains("will get no more mail"), "{done}");
    assert!(!site.is_member(A, "m2@example.net"));

    // 6. Refusals.
    c.goto(&site.url(&format!("login/{}", "a".repeat(52))))
        .await
        .unwrap();
    assert!(body_text(&c).await.contains("not valid"), "forged link");
    c.goto(&used_link).await.unwrap();
    submit(&c, "#go").await;
    assert!(
        body_text(&c).await.contains("already used"),
        "replayed link"
    );
    browser.screenshot("07-replayed-link").await;

    let session = cookie(&c).await;
    let held_a = format!("/lists/admin/{A}/held");
    let form = format!("id={}&action=discard", enc("plain.1@example.com"));
    let (status, _) = post_form(site.port, &held_a, &session, &form).await;
    assert_eq!(status, 403, "a POST without a CSRF token");
    // A real token of another (visitor) session.
    let (_, login_page) = get_page(site.port, "/lists/login").await;
    let stranger_csrf = login_page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a CSRF field")
        .to_string();
    let (status, _) = post_form(
        site.port,
        &held_a,
        &session,
        &format!("{form}&csrf={stranger_csrf}"),
    )
    .await;
    assert_eq!(status, 403, "a POST with another CSRF token");
    assert!(
        site.held(A).contains("plain.1@example.com"),
        "nothing changed"
    );

    c.goto(&site.url(&format!("admin/{A}/held"))).await.unwrap();
    let csrf = c
        .find(Locator::Css("input[name=csrf]"))
        .await
        .unwrap()
        .attr("value")
        .await
        .unwrap()
        .unwrap();
    c.goto(&site.url(&format!("admin/{B}/held"))).await.unwrap();
    assert!(
        body_text(&c).await.contains("may not"),
        "moderator of A on B"
    );
    browser.screenshot("08-other-list").await;
    let form_b = format!("id={}&action=approve&csrf={csrf}", enc("b.1@example.com"));
    let (status, _) = post_form(
        site.port,
        &format!("/lists/admin/{B}/held"),
        &session,
        &form_b,
    )
    .await;
    assert_eq!(status, 403, "moderator of A approving on B");
    assert!(site.held(B).contains("b.1@example.com"), "still held on B");
    let log_b = site.lr.cli_ok(&["audit", "--list", B]);
    assert!(
        log_b.contains(MODERATOR) && log_b.contains("forbidden"),
        "the refusal is in B's audit log: {log_b}"
    );
    // The same token works on the moderator's own list.
    let form_a = format!("{form}&csrf={csrf}");
    let (status, page) = post_form(site.port, &held_a, &session, &form_a).await;
    assert_eq!(status, 200, "{page}");
    assert!(!site.held(A).contains("plain.1@example.com"));

    // 7. The owner: settings, members, the audit log.
    c.goto(&site.url("admin/")).await.unwrap();
    submit(&c, "header form button").await;
    assert!(c
        .current_url()
        .await
        .unwrap()
        .path()
        .ends_with("/lists/login"));
    log_in(&site, &c, OWNER).await;
    c.goto(&site.url(&format!("admin/{A}/settings")))
        .await
        .unwrap();
    fill(&c, "#s_verp_percent", "150").await;
    fill(&c, "#s_subject_prefix", "[A] ").await;
    submit(&c, "#save").await;
    let error = text_of(&c, "#error_verp_percent").await;
    assert!(error.contains("100"), "{error}");
    assert!(text_of(&c, "#flash").await.contains("1 refused"));
    browser.screenshot("09-settings-error").await;
    let settings = site.lr.cli_ok(&["list", "show", A]);
    assert!(settings.contains("[A]"), "{settings}");

    c.goto(&site.url(&format!("admin/{A}/members?prefix=m1")))
        .await
        .unwrap();
    let members = text_of(&c, "#members").await;
    assert!(
        members.contains("m1@example.net") && !members.contains(VISITOR),
        "{members}"
    );
    browser.screenshot("10-members").await;

    c.goto(&site.url(&format!("admin/{A}/audit")))
        .await
        .unwrap();
    let audit = text_of(&c, "#audit").await;
    assert!(
        audit.lines().any(|l| l.contains(MODERATOR)
            && l.contains("web 127.0.0.1")
            && l.contains("held_act")
            && l.contains("xss.1@example.com")),
        "{audit}"
    );
    browser.screenshot("11-audit").await;

    browser.close().await;
}
