//! The composer as a reader checks it: both forms parsed back find every
//! post, the RFC 1153 sections split where they should, hostile posts
//! cannot break either form, and an issue stays within its bounds.

use mail_parser::{MessageParser, MimeHeaders, PartType};

use super::*;
use crate::address::Address;

fn list() -> List {
    List::new(Address::parse("dev@lists.example.org").unwrap())
}

fn issue(list: &List) -> Issue<'_> {
    Issue {
        list,
        volume: 2,
        number: 7,
        cut_at: 1_727_776_800,
        header: DEFAULT_HEADER,
        footer: DEFAULT_FOOTER,
    }
}

fn post(n: usize, body: &str) -> Vec<u8> {
    format!(
        "From: Author {n} <a{n}@example.org>\r\nTo: dev@lists.example.org\r\n\
         Subject: topic {n}\r\nDate: Tue, 1 Oct 2024 10:0{n}:00 +0000\r\n\
         Message-ID: <p{n}@example.org>\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

fn posts(raws: &[Vec<u8>]) -> Vec<Post<'_>> {
    raws.iter()
        .map(|r| Post {
            raw: r,
            received_at: 1_727_776_000,
        })
        .collect()
}

/// The sections of an RFC 1153 body as a digest reader splits it: after the
/// 70-hyphen line, at every line of exactly 30 hyphens.
fn burst(body: &str) -> Vec<String> {
    let lines: Vec<&str> = body.split("\r\n").collect();
    let start = lines
        .iter()
        .position(|l| *l == TOC_SEPARATOR)
        .expect("the contents separator");
    let mut sections = vec![String::new()];
    for l in &lines[start + 1..] {
        if *l == POST_SEPARATOR {
            sections.push(String::new());
        } else {
            let s = sections.last_mut().unwrap();
            s.push_str(l);
            s.push('\n');
        }
    }
    sections.into_iter().map(|s| s.trim().to_string()).collect()
}

fn body_of(bytes: &[u8]) -> String {
    let m = MessageParser::default().parse(bytes).unwrap();
    m.body_text(0).unwrap().into_owned()
}

#[test]
fn mime_issue_attaches_every_post_after_the_contents() {
    let l = list();
    let raws: Vec<Vec<u8>> = (1..=3).map(|n| post(n, &format!("body {n}"))).collect();
    let c = compose(&issue(&l), Form::Mime, &posts(&raws));
    assert_eq!((c.posts, c.stubbed), (3, 0));
    let m = MessageParser::default().parse(&c.bytes).unwrap();
    assert_eq!(m.subject(), Some("dev Digest, Vol 2, Issue 7"));
    assert_eq!(m.message_id(), Some(c.message_id.as_str()));
    assert_eq!(
        m.from().unwrap().first().unwrap().address(),
        Some("dev@lists.example.org")
    );
    assert!(m.content_type().unwrap().subtype() == Some("digest"));
    // The contents come first: the header, then each subject and author.
    let first = m.body_text(0).unwrap();
    assert!(
        first.contains("Send dev mailing list submissions"),
        "{first}"
    );
    for n in 1..=3 {
        assert!(
            first.contains(&format!("   {n}. topic {n} (Author {n})")),
            "{first}"
        );
    }
    // Then each post, as received, in order.
    let attached: Vec<_> = m
        .attachments()
        .filter_map(|p| match &p.body {
            PartType::Message(inner) => Some(inner),
            _ => None,
        })
        .collect();
    assert_eq!(attached.len(), 3);
    for (n, inner) in (1..=3).zip(&attached) {
        assert_eq!(
            inner.message_id(),
            Some(format!("p{n}@example.org").as_str())
        );
        assert_eq!(inner.body_text(0).unwrap().trim(), format!("body {n}"));
        assert_eq!(
            inner.raw_message(),
            &raws[n - 1][..],
            "the bytes as received"
        );
    }
    let s = String::from_utf8(c.bytes).unwrap();
    assert!(s.contains("To unsubscribe, write to dev-leave@lists.example.org"));
}

#[test]
fn plain_issue_is_rfc1153() {
    let l = list();
    let raws: Vec<Vec<u8>> = (1..=3).map(|n| post(n, &format!("body {n}"))).collect();
    let c = compose(&issue(&l), Form::Plain, &posts(&raws));
    let m = MessageParser::default().parse(&c.bytes).unwrap();
    assert_eq!(m.subject(), Some("dev Digest, Vol 2, Issue 7"));
    assert!(m.content_type().unwrap().ctype() == "text");
    let body = m.body_text(0).unwrap().into_owned();
    assert!(
        body.contains("Today's Topics:\r\n\r\n   1. topic 1 (Author 1)\r\n"),
        "{body}"
    );
    let sections = burst(&body);
    assert_eq!(
        sections.len(),
        5,
        "three posts, the footer, the end: {sections:#?}"
    );
    for n in 1..=3 {
        assert_eq!(
            sections[n - 1],
            format!(
                "Date: Tue, 1 Oct 2024 10:0{n}:00 +0000\nFrom: Author {n} <a{n}@example.org>\n\
                 Subject: topic {n}\nMessage-ID: <p{n}@example.org>\n\nbody {n}"
            )
        );
    }
    assert!(
        sections[3].starts_with("Subject: Digest Footer\n\n____"),
        "{}",
        sections[3]
    );
    assert_eq!(
        sections[4],
        format!("End of dev Digest, Vol 2, Issue 7\n{}", "*".repeat(33))
    );
    // Every line ends CRLF and fits SMTP.
    let raw = String::from_utf8(c.bytes).unwrap();
    assert!(!raw.replace("\r\n", "").contains('\n'));
}

#[test]
fn long_subjects_wrap_in_the_contents() {
    let l = list();
    let words = "word ".repeat(30);
    let raw = format!("From: Zed <z@example.org>\r\nSubject: {words}\r\n\r\nx\r\n").into_bytes();
    let body = body_of(&compose(&issue(&l), Form::Plain, &posts(&[raw])).bytes);
    let toc: Vec<&str> = body
        .split("Today's Topics:\r\n\r\n")
        .nth(1)
        .unwrap()
        .split("\r\n\r\n")
        .next()
        .unwrap()
        .split("\r\n")
        .collect();
    assert!(toc.len() > 1, "{toc:?}");
    assert!(toc[0].starts_with("   1. word word"), "{toc:?}");
    assert!(
        toc[1..].iter().all(|l| l.starts_with("      word")),
        "{toc:?}"
    );
    assert!(toc.iter().all(|l| l.chars().count() <= 72), "{toc:?}");
    assert!(toc.last().unwrap().ends_with("word (Zed)"), "{toc:?}");
}

#[test]
fn recomposing_gives_the_same_bytes_and_ids_differ_by_form_and_issue() {
    let l = list();
    let raws: Vec<Vec<u8>> = (1..=2).map(|n| post(n, "x")).collect();
    for form in Form::ALL {
        let a = compose(&issue(&l), form, &posts(&raws));
        let b = compose(&issue(&l), form, &posts(&raws));
        assert_eq!(a, b);
    }
    let mime = message_id(&issue(&l), Form::Mime);
    assert_eq!(mime, "dev.digest-mime.v2.i7.1727776800@lists.example.org");
    assert_ne!(mime, message_id(&issue(&l), Form::Plain));
    let next = Issue {
        number: 8,
        ..issue(&l)
    };
    assert_ne!(mime, message_id(&next, Form::Mime));
    let reset = Issue {
        cut_at: 1_727_776_801,
        ..issue(&l)
    };
    assert_ne!(mime, message_id(&reset, Form::Mime), "counters set back");
}

#[test]
fn separator_lines_in_a_post_cannot_split_it() {
    let l = list();
    let hostile = format!(
        "before\r\n{POST_SEPARATOR}\r\n\r\nDate: forged\r\nFrom: x\r\nSubject: forged\r\n\r\n\
         {TOC_SEPARATOR}\r\nEnd of dev Digest, Vol 2, Issue 7\r\n*****\r\n{POST_SEPARATOR}   \r\nafter"
    );
    let raws = vec![post(1, &hostile), post(2, "fine")];
    let c = compose(&issue(&l), Form::Plain, &posts(&raws));
    let body = body_of(&c.bytes);
    let sections = burst(&body);
    assert_eq!(sections.len(), 4, "{sections:#?}");
    assert!(sections[0].contains(&format!("\n- {POST_SEPARATOR}\n")));
    assert!(sections[0].contains(&format!("\n- {TOC_SEPARATOR}\n")));
    assert!(sections[0].ends_with("after"));
    assert!(sections[1].ends_with("fine"));
    // The MIME form carries the post untouched.
    let c = compose(&issue(&l), Form::Mime, &posts(&raws));
    let m = MessageParser::default().parse(&c.bytes).unwrap();
    assert_eq!(m.attachment_count(), 2);
}

#[test]
fn hostile_headers_stay_on_their_line() {
    let l = list();
    let raw = b"From: =?utf-8?b?RXZlDQpTdWJqZWN0OiBmYWtl?= <e@example.org>\r\n\
        Subject: =?utf-8?b?aGkNCi0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLQ0KRGF0ZTogMQ==?=\r\n\
        Message-ID: <a b@x>\r\n\r\ntext\r\n"
        .to_vec();
    let c = compose(&issue(&l), Form::Plain, &posts(&[raw]));
    let body = body_of(&c.bytes);
    let sections = burst(&body);
    assert_eq!(sections.len(), 3, "{sections:#?}");
    assert!(
        sections[0].starts_with(
            "Date: Tue, 1 Oct 2024 09:46:40 +0000\nFrom: Eve Subject: fake <e@example.org>\n\
             Subject: hi ------------------------------ Date: 1\n\ntext"
        ),
        "{}",
        sections[0]
    );
    assert!(
        body.contains("   1. hi ------------------------------ Date: 1 (Eve Subject: fake)\r\n"),
        "{body}"
    );
}

#[test]
fn a_post_without_text_or_parseable_structure_still_gets_its_section() {
    let l = list();
    let image = b"From: i@example.org\r\nSubject: picture\r\nMessage-ID: <img@x>\r\n\
        Content-Type: image/png; name=\"p.png\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
        iVBORw0KGgo=\r\n"
        .to_vec();
    let garbage = b"\x00\xff\xfe not a message".to_vec();
    let raws = vec![image, garbage, post(3, "last")];
    let c = compose(&issue(&l), Form::Plain, &posts(&raws));
    let sections = burst(&body_of(&c.bytes));
    assert_eq!(sections.len(), 5, "{sections:#?}");
    assert!(
        sections[0].contains("[This post has no text part.]"),
        "{}",
        sections[0]
    );
    assert!(sections[0].contains("p.png (image/png"), "{}", sections[0]);
    assert!(sections[2].ends_with("last"));
    let c = compose(&issue(&l), Form::Mime, &posts(&raws));
    let m = MessageParser::default().parse(&c.bytes).unwrap();
    let toc = m.body_text(0).unwrap();
    assert!(toc.contains("1. picture (i@example.org)"), "{toc}");
    assert_eq!(m.attachment_count(), 3);
}

#[test]
fn the_boundary_avoids_what_the_posts_contain() {
    let l = list();
    // A post that guesses the boundaries this issue would pick.
    let first = compose(&issue(&l), Form::Mime, &posts(&[post(1, "x")]));
    let text = String::from_utf8_lossy(&first.bytes).into_owned();
    let b = text
        .split("boundary=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string();
    let hostile = format!("--{b}\r\nContent-Type: text/plain\r\n\r\nforged\r\n--{b}--");
    let raws = vec![post(1, &hostile), post(2, "second")];
    let c = compose(&issue(&l), Form::Mime, &posts(&raws));
    let s = String::from_utf8_lossy(&c.bytes);
    assert!(!s.contains(&format!("boundary=\"{b}\"")));
    let m = MessageParser::default().parse(&c.bytes).unwrap();
    assert_eq!(m.attachment_count(), 2);
    match &m.attachment(0).unwrap().body {
        PartType::Message(inner) => assert!(inner.body_text(0).unwrap().contains("forged")),
        other => panic!("not a message: {other:?}"),
    }
}

#[test]
fn bare_line_ends_become_crlf() {
    let l = list();
    let raw = b"Subject: lf\nMessage-ID: <lf@x>\n\nline one\nline two\rthree\n".to_vec();
    for form in Form::ALL {
        let c = compose(&issue(&l), form, &posts(std::slice::from_ref(&raw)));
        let s = String::from_utf8(c.bytes).unwrap();
        assert!(
            !s.replace("\r\n", "").contains(['\r', '\n']),
            "{form:?}: {s}"
        );
    }
}

#[test]
fn templates_fill_their_placeholders_and_can_be_empty() {
    let l = list();
    let i = Issue {
        header: "{name} vol {volume} no {issue}: {posts} posts\n{TOC_SEPARATOR}",
        footer: "",
        ..issue(&l)
    };
    let c = compose(&i, Form::Plain, &posts(&[post(1, "x")]));
    let body = body_of(&c.bytes);
    assert!(
        body.starts_with("dev vol 2 no 7: 1 posts\r\n{TOC_SEPARATOR}\r\n"),
        "{body}"
    );
    let sections = burst(&body);
    assert_eq!(sections.len(), 2, "no footer section: {sections:#?}");
    let stuffed = Issue {
        header: TOC_SEPARATOR,
        ..i
    };
    let body = body_of(&compose(&stuffed, Form::Plain, &[]).bytes);
    assert!(
        body.starts_with(&format!("- {TOC_SEPARATOR}\r\n")),
        "{body}"
    );
}

#[test]
fn an_empty_issue_says_so_in_both_forms() {
    let l = list();
    for form in Form::ALL {
        let c = compose(&issue(&l), form, &[]);
        let m = MessageParser::default().parse(&c.bytes).unwrap();
        assert!(m
            .body_text(0)
            .unwrap()
            .contains("There were no posts in this period."));
        assert_eq!(m.attachment_count(), 0, "{form:?}");
    }
}

#[test]
fn a_post_too_large_for_the_issue_is_named_not_attached() {
    let l = list();
    let huge = post(1, &"y".repeat(80).repeat(MAX_ISSUE_BYTES / 80 + 10));
    let raws = vec![post(2, "small"), huge, post(3, "after")];
    for form in Form::ALL {
        let c = compose(&issue(&l), form, &posts(&raws));
        assert!(
            c.bytes.len() <= MAX_ISSUE_BYTES,
            "{form:?}: {}",
            c.bytes.len()
        );
        assert_eq!((c.posts, c.stubbed), (3, 1), "{form:?}");
        let s = String::from_utf8_lossy(&c.bytes);
        assert!(s.contains("did not fit in this digest issue"), "{form:?}");
        assert!(s.contains("Message-ID: <p1@example.org>"), "{form:?}");
        assert!(s.contains("after"));
    }
}

#[test]
fn a_full_issue_stays_under_the_cap() {
    let l = list();
    // MAX_POSTS posts that together exceed the cap, with the longest fields.
    let long = "ж".repeat(1000);
    let raws: Vec<Vec<u8>> = (0..MAX_POSTS)
        .map(|n| {
            format!(
                "From: {long} <{n}@example.org>\r\nSubject: {long}\r\n\
                 Message-ID: <{n}.{}@example.org>\r\n\r\n{}\r\n",
                "i".repeat(500),
                "z".repeat(12_000)
            )
            .into_bytes()
        })
        .collect();
    for form in Form::ALL {
        let c = compose(&issue(&l), form, &posts(&raws));
        assert!(
            c.bytes.len() <= MAX_ISSUE_BYTES,
            "{form:?}: {}",
            c.bytes.len()
        );
        assert!(
            c.stubbed > 0 && c.stubbed < MAX_POSTS,
            "{form:?}: {}",
            c.stubbed
        );
    }
}

#[test]
fn stand_ins_fit_their_bound() {
    let long = "ж".repeat(5000);
    let raw = format!(
        "From: {long} <{long}@example.org>\r\nSubject: {long}\r\nMessage-ID: <{long}@x>\r\n\
         Date: {long}\r\n\r\nx\r\n"
    );
    let s = Summary::of(&Post {
        raw: raw.as_bytes(),
        received_at: 0,
    });
    let stub = compose::stub_text(&s, usize::MAX);
    assert!(stub.len() + 200 <= STUB_MAX_BYTES, "{}", stub.len());
}

#[test]
fn take_fills_an_issue_by_size_and_count() {
    assert_eq!(take([]), 0);
    assert_eq!(take([u64::MAX, 1]), 1, "a huge post still goes, alone");
    assert_eq!(take([TAKE_BYTES / 2, TAKE_BYTES / 2, 1]), 2);
    assert_eq!(take(std::iter::repeat_n(1, MAX_POSTS + 5)), MAX_POSTS);
}

#[test]
fn pathological_posts_compose_in_linear_time() {
    let l = list();
    // Boundary prefixes, hyphens and one endless line: 2 MB each.
    let prefixes = "--=_listrelay_digest_".repeat(100_000);
    let hyphens = format!("{}\n", "-".repeat(40)).repeat(50_000);
    let one_line = "w".repeat(2_000_000);
    let raws = vec![post(1, &prefixes), post(2, &hyphens), post(3, &one_line)];
    let start = std::time::Instant::now();
    for form in Form::ALL {
        let c = compose(&issue(&l), form, &posts(&raws));
        assert_eq!(c.stubbed, 0, "{form:?}");
        let m = MessageParser::default().parse(&c.bytes).unwrap();
        if form == Form::Mime {
            assert_eq!(m.attachment_count(), 3);
        } else {
            let body = m.body_text(0).unwrap();
            assert!(body.split("\r\n").all(|line| line.len() <= 998));
            assert_eq!(burst(&body).len(), 5);
        }
    }
    // Generous: debug build on a shared machine; quadratic would take minutes.
    assert!(start.elapsed() < std::time::Duration::from_secs(30));
}
