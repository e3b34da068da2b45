//! The bounce handler against a real (sled) store, with a recording outbox and
//! a clock the test moves: the scope matrix (list/domain/site × opaque/
//! transparent), disabling, warnings and removal over weeks, policy bounces
//! and post suspension, hand-off failures, forged tags, and every sample
//! format (auto-replies, delays and success notices are ignored).

mod support;

use support::outbox::Recorder;

use std::sync::Arc;

use listrelay::address::{Address, Suffix};
use listrelay::admin::protocol::BounceRecord;
use listrelay::admin::{Admin, Request, Response};
use listrelay::bounce::handler::{self, Handler};
use listrelay::bounce::score::Scored;
use listrelay::bounce::BounceScope;
use listrelay::clock::{ManualClock, DAY};
use listrelay::model::{Domain, List, Member};
use listrelay::notice::Notifier;
use listrelay::secret::Secret;
use listrelay::store::{new_id, DeliveryFailure, MessageMeta, MessageState, NewMessage, Store};
use listrelay::templates::Templates;

struct Rig {
    _site: support::pg::TestStore,
    store: Arc<dyn Store>,
    handler: Handler,
    sent: Arc<Recorder>,
    now: ManualClock,
}

const T0: u64 = 1_700_000_000 / DAY * DAY + 3600;

impl Rig {
    async fn new(scope: BounceScope) -> Rig {
        let site = support::pg::TestStore::open().await;
        let store: Arc<dyn Store> = site.store.clone();
        let sent = Arc::new(Recorder::default());
        let now = ManualClock::new(T0);
        let handler = Handler {
            store: store.clone(),
            secret: Secret::from_bytes(b"0123456789abcdef0123456789abcdef".to_vec()),
            scope,
            notifier: Notifier::new(sent.clone(), Templates::builtin(), "lists.test"),
            clock: now.clock(),
        };
        Rig {
            _site: site,
            store,
            handler,
            sent,
            now,
        }
    }

    fn advance(&self, secs: u64) {
        self.now.advance(secs);
    }

    async fn domain(&self, name: &str, opaque: bool) {
        self.store
            .create_domain(&Domain {
                name: name.into(),
                opaque,
                created_at: 0,
                arc_seal: None,
            })
            .await
            .unwrap();
    }

    async fn list(&self, address: &str, members: &[&str], tweak: impl FnOnce(&mut List)) -> List {
        let mut l = List::new(Address::parse(address).unwrap());
        l.settings.owners = vec![format!("boss@{}", l.address.domain())];
        tweak(&mut l);
        self.store.create_list(&l).await.unwrap();
        let ms: Vec<Member> = members
            .iter()
            .map(|m| Member::new(Address::parse(m).unwrap()))
            .collect();
        self.store.add_members(&l.key(), &ms).await.unwrap();
        l
    }

    async fn fail(
        &self,
        list: &str,
        member: &str,
        post: &str,
        reply: &str,
    ) -> Vec<(String, Scored)> {
        self.handler
            .handle_failure(&DeliveryFailure {
                list: list.into(),
                member: member.into(),
                message: post.into(),
                reply: reply.into(),
                at: 0,
            })
            .await
            .unwrap()
    }

    async fn shown(&self, list: &List) -> Vec<String> {
        bounce_records(&self.store, self.handler.scope, list)
            .await
            .into_iter()
            .map(|b| b.member)
            .collect()
    }

    async fn enabled(&self, list: &List, member: &str) -> bool {
        self.store
            .member(&list.key(), member)
            .await
            .unwrap()
            .unwrap()
            .delivery_enabled
    }

    /// Stores a bounce as intake would and handles it.
    async fn bounce(&self, list: &List, tag: Option<&str>, raw: &[u8]) -> handler::Handled {
        let id = new_id();
        let meta = MessageMeta {
            id: id.clone(),
            list: list.key(),
            suffix: Suffix::Bounces,
            tag: tag.map(str::to_string),
            mail_from: String::new(),
            rcpt: list.suffix_address(Suffix::Bounces),
            received_at: 0,
            message_id: None,
            dedup: None,
            size: raw.len() as u64,
            state: MessageState::Queued,
            policy: None,
            client: None,
            auth: None,
            audience: Default::default(),
        };
        self.store
            .accept(vec![NewMessage {
                meta: meta.clone(),
                body: raw.to_vec(),
            }])
            .await
            .unwrap();
        let h = self.handler.handle_message(&meta).await.unwrap();
        self.store.finish_message(&id, 0).await.unwrap();
        h
    }
}

const USER_UNKNOWN: &str = "550 5.1.1 <m@y.org>: Recipient address rejected: User unknown";

/// Domains a.org and b.org (transparent) and x.org (opaque), two lists in
/// a.org and x.org, one in b.org; m@y.org is on all of them. One hard
/// failure (threshold 1) through one list: who sees the record, and where is
/// delivery disabled?
#[tokio::test]
async fn scope_matrix() {
    use BounceScope::*;
    let names = ["a1@a.org", "a2@a.org", "b1@b.org", "x1@x.org", "x2@x.org"];
    // (scope, list the failure comes through, lists that share it)
    let cases: &[(BounceScope, usize, &[usize])] = &[
        (List, 0, &[0]),
        (List, 3, &[3]),
        (Domain, 0, &[0, 1]),
        (Domain, 3, &[3, 4]),
        (Domain, 2, &[2]),
        (Site, 0, &[0, 1, 2]),
        (Site, 2, &[0, 1, 2]),
        (Site, 3, &[3, 4]),
    ];
    for &(scope, via, shared) in cases {
        let r = Rig::new(scope).await;
        r.domain("a.org", false).await;
        r.domain("b.org", false).await;
        r.domain("x.org", true).await;
        let mut lists = Vec::new();
        for n in names {
            lists.push(
                r.list(n, &["m@y.org", "ok@y.org"], |l| {
                    l.settings.bounce_score_threshold = 1.0
                })
                .await,
            );
        }
        let scored = r
            .fail(&lists[via].key(), "m@y.org", "p1", USER_UNKNOWN)
            .await;
        assert!(
            matches!(scored[..], [(_, Scored::Disable { .. })]),
            "{scored:?}"
        );
        for (i, l) in lists.iter().enumerate() {
            let sees = shared.contains(&i);
            let what = format!("{scope:?} via {} on {}", names[via], names[i]);
            assert_eq!(r.shown(l).await == ["m@y.org"], sees, "{what}: record");
            assert_eq!(!r.enabled(l, "m@y.org").await, sees, "{what}: disabled");
            assert!(r.enabled(l, "ok@y.org").await, "{what}");
        }
        // reset through any sharing list re-enables everywhere it applied
        let last = *shared.last().unwrap();
        let reset = Request::BounceReset {
            list: lists[last].address.to_string(),
            member: "m@y.org".into(),
        };
        admin(&r.store, scope)
            .execute(reset, &mut Vec::new())
            .await
            .unwrap();
        for l in &lists {
            assert!(r.enabled(l, "m@y.org").await);
            assert!(r.shown(l).await.is_empty());
        }
    }
}

#[tokio::test]
async fn threshold_warnings_and_removal_over_weeks() {
    let r = Rig::new(BounceScope::List).await;
    let l = r
        .list("dev@a.org", &["bob@y.org", "amy@y.org"], |_| {})
        .await;
    for day in 0..5 {
        let s = r
            .fail(&l.key(), "bob@y.org", &format!("p{day}"), USER_UNKNOWN)
            .await;
        // a second bounce the same day adds nothing
        let again = r
            .fail(&l.key(), "bob@y.org", &format!("p{day}"), USER_UNKNOWN)
            .await;
        if day < 4 {
            assert_eq!(
                s,
                [(
                    "bob@y.org".to_string(),
                    Scored::Added {
                        score: day as f64 + 1.0
                    }
                )]
            );
            assert_eq!(again, [("bob@y.org".to_string(), Scored::SameDay)]);
            assert!(r.enabled(&l, "bob@y.org").await);
        } else {
            assert_eq!(
                s,
                [("bob@y.org".to_string(), Scored::Disable { score: 5.0 })]
            );
        }
        r.advance(DAY);
    }
    assert!(
        !r.enabled(&l, "bob@y.org").await,
        "disabled, still subscribed"
    );
    let sent = r.sent.take();
    assert_eq!(sent.len(), 1, "first warning at once");
    assert_eq!(sent[0].0.mail_from, "dev-bounces@a.org");
    assert_eq!(sent[0].0.rcpts, ["bob@y.org"]);
    assert!(
        sent[0].1.contains("Auto-Submitted: auto-generated"),
        "{}",
        sent[0].1
    );
    assert!(sent[0].1.contains("warning 1 of 3"), "{}", sent[0].1);
    for week in 1..=2 {
        r.advance(7 * DAY);
        r.handler.periodic().await.unwrap();
        let sent = r.sent.take();
        assert_eq!(sent.len(), 1, "week {week}");
        assert!(sent[0].1.contains(&format!("warning {} of 3", week + 1)));
    }
    r.advance(7 * DAY - 2 * DAY);
    r.handler.periodic().await.unwrap();
    assert!(r.sent.take().is_empty());
    assert!(r
        .store
        .member(&l.key(), "bob@y.org")
        .await
        .unwrap()
        .is_some());
    r.advance(2 * DAY);
    r.handler.periodic().await.unwrap();
    assert!(
        r.store
            .member(&l.key(), "bob@y.org")
            .await
            .unwrap()
            .is_none(),
        "removed"
    );
    let sent = r.sent.take();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0.rcpts, ["boss@a.org"]);
    assert!(
        sent[0].1.contains("bob@y.org removed from dev@a.org"),
        "{}",
        sent[0].1
    );
    assert!(r.shown(&l).await.is_empty());
    assert!(r.enabled(&l, "amy@y.org").await);
}

#[tokio::test]
async fn stale_scores_are_forgotten() {
    let r = Rig::new(BounceScope::List).await;
    let l = r.list("dev@a.org", &["bob@y.org"], |_| {}).await;
    r.fail(&l.key(), "bob@y.org", "p", USER_UNKNOWN).await;
    r.advance(7 * DAY);
    r.handler.periodic().await.unwrap();
    assert_eq!(r.shown(&l).await, ["bob@y.org"]);
    r.advance(1);
    r.handler.periodic().await.unwrap();
    assert!(r.shown(&l).await.is_empty());
}

#[tokio::test]
async fn policy_bounces_never_count_and_suspend_the_post() {
    let r = Rig::new(BounceScope::List).await;
    let members: Vec<String> = (0..20).map(|i| format!("m{i}@y.org")).collect();
    let refs: Vec<&str> = members.iter().map(String::as_str).collect();
    let l = r
        .list("dev@a.org", &refs, |l| {
            l.settings.bounce_score_threshold = 1.0
        })
        .await;
    let dmarc =
        "550 5.7.26 Unauthenticated email from a.org is not accepted due to domain's DMARC policy";
    // 2 of 20 is not more than 10 %
    for m in &members[..2] {
        assert_eq!(
            r.fail(&l.key(), m, "post-1", dmarc).await,
            [(m.clone(), Scored::NotCounted)]
        );
    }
    assert!(r.sent.take().is_empty());
    assert_eq!(
        r.fail(&l.key(), "m2@y.org", "post-1", dmarc).await,
        [("m2@y.org".to_string(), Scored::NotCounted)]
    );
    let alert = r.sent.take();
    assert_eq!(alert.len(), 1, "owners alerted once");
    assert_eq!(alert[0].0.rcpts, ["boss@a.org"]);
    assert!(alert[0].1.contains("3 of 20"), "{}", alert[0].1);
    r.fail(&l.key(), "m3@y.org", "post-1", dmarc).await;
    assert!(r.sent.take().is_empty(), "no second alert");
    // other failures for that post are not scored either
    assert_eq!(
        r.fail(&l.key(), "m4@y.org", "post-1", USER_UNKNOWN).await,
        [("m4@y.org".to_string(), Scored::PostSuspended)]
    );
    assert!(r.shown(&l).await.is_empty());
    for m in &members {
        assert!(r.enabled(&l, m).await);
    }
    // another post scores normally
    assert!(matches!(
        r.fail(&l.key(), "m4@y.org", "post-2", USER_UNKNOWN).await[..],
        [(_, Scored::Disable { .. })]
    ));
}

fn sample(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/bounce-samples/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// Every sample format: the members it names are scored as the format says;
/// policy and feedback reports count for nothing; auto-replies, delays and
/// success notices are ignored.
#[tokio::test]
async fn samples() {
    // (file, the member scored and the score; None = nothing recorded)
    let cases: &[(&str, Option<(&str, f64)>)] = &[
        ("postfix-dsn.eml", Some(("alice@example.net", 1.0))),
        ("exim-dsn.eml", Some(("bob@example.com", 1.0))),
        ("exim-dsn-crlf.eml", Some(("bob@example.com", 1.0))),
        ("sendmail-dsn.eml", Some(("frank@example.net", 1.0))),
        ("qmail.eml", Some(("carol@example.com", 1.0))),
        ("qmail-cr.eml", Some(("carol@example.com", 1.0))),
        ("gmail.eml", Some(("erin@example.org", 0.5))),
        ("exchange-ndr.eml", Some(("dave@contoso.example.com", 1.0))),
        ("mailbox-full.eml", Some(("mallory@example.com", 0.5))),
        ("dmarc-policy.eml", None),
        ("arf.eml", None),
        ("delayed-dsn.eml", None),
        ("success-dsn.eml", None),
        ("vacation.eml", None),
        ("autoreply.eml", None),
    ];
    let mut report = Vec::new();
    for (i, (file, _)) in cases.iter().enumerate() {
        let raw = sample(file);
        let parsed = listrelay::bounce::parse(&raw);
        let r = Rig::new(BounceScope::List).await;
        // everyone the report names, and everyone in its headers, is a member
        let mut who: Vec<String> = parsed.recipients.iter().map(|a| a.to_lowercase()).collect();
        for f in listrelay::bounce::addr::find_all(&String::from_utf8_lossy(&raw)) {
            who.push(f.addr.to_lowercase());
        }
        who.retain(|a| Address::parse(a).is_ok());
        who.sort();
        who.dedup();
        let refs: Vec<&str> = who.iter().map(String::as_str).collect();
        let l = r
            .list(&format!("l{i}@lists.example.org"), &refs, |_| {})
            .await;
        let h = r.bounce(&l, None, &raw).await;
        let scores: Vec<(String, f64)> = bounce_records(&r.store, BounceScope::List, &l)
            .await
            .into_iter()
            .map(|s| (s.member, s.score))
            .collect();
        report.push(format!(
            "{file}: {:?} {:?} -> {h:?}",
            parsed.kind, parsed.reason
        ));
        let want: Vec<(String, f64)> = cases[i]
            .1
            .iter()
            .map(|(m, s)| (m.to_string(), *s))
            .collect();
        assert_eq!(scores, want, "{file}\n{}", report.join("\n"));
    }
    eprintln!("{}", report.join("\n"));
}

/// A forged or stale tag never acts on the member it names; a valid one does,
/// even when the report names another (rewritten) address.
#[tokio::test]
async fn verp_tags() {
    let r = Rig::new(BounceScope::List).await;
    let l = r
        .list(
            "list@lists.example.org",
            &["victim@example.net", "alice@example.net"],
            |_| {},
        )
        .await;
    let raw = sample("postfix-dsn.eml"); // names alice@Example.NET, 5.1.1
    let h = r
        .bounce(&l, Some("victim=example.net=aaaaaaaaaaaaa"), &raw)
        .await;
    assert_eq!(
        h.scored,
        [(
            "alice@example.net".to_string(),
            Scored::Added { score: 1.0 }
        )]
    );
    assert_eq!(r.shown(&l).await, ["alice@example.net"]);
    let h = r
        .bounce(&l, Some("victim=example.net"), &sample("vacation.eml"))
        .await;
    assert_eq!(h.ignored.as_deref(), Some("auto_reply"));
    let tag = listrelay::verp::encode(&r.handler.secret, &l.key(), "victim@example.net");
    let h = r.bounce(&l, Some(&tag), &sample("vacation.eml")).await;
    assert!(h.scored.is_empty(), "an auto-reply to a valid tag: {h:?}");
    let h = r.bounce(&l, Some(&tag), &raw).await;
    assert_eq!(
        h.scored,
        [(
            "victim@example.net".to_string(),
            Scored::Added { score: 1.0 }
        )]
    );
}

/// Refusals recorded by fan-out at SMTP hand-off are consumed once and go
/// through the same scoring.
#[tokio::test]
async fn hand_off_failures_are_consumed_and_scored() {
    let r = Rig::new(BounceScope::List).await;
    let l = r
        .list("dev@a.org", &["bob@y.org", "amy@y.org"], |_| {})
        .await;
    for (member, reply) in [
        ("Bob@y.org", USER_UNKNOWN),
        ("amy@y.org", "552 5.2.2 mailbox full"),
        ("gone@y.org", USER_UNKNOWN),
    ] {
        r.store
            .record_failure(&DeliveryFailure {
                list: l.key(),
                member: member.into(),
                message: "post".into(),
                reply: reply.into(),
                at: 0,
            })
            .await
            .unwrap();
    }
    assert_eq!(r.handler.process_failures().await.unwrap(), 3);
    assert!(r.store.pending_failures(10).await.unwrap().is_empty());
    assert_eq!(r.handler.process_failures().await.unwrap(), 0);
    let got: Vec<(String, f64, String)> = bounce_records(&r.store, BounceScope::List, &l)
        .await
        .into_iter()
        .map(|s| (s.member, s.score, s.last_status.unwrap_or("-".into())))
        .collect();
    assert_eq!(
        got,
        [
            ("amy@y.org".to_string(), 0.5, "5.2.2".to_string()),
            ("bob@y.org".to_string(), 1.0, "5.1.1".to_string())
        ]
    );
}

/// The administration of `store`, as `bounce show` and `bounce reset` reach it.
fn admin(store: &Arc<dyn Store>, scope: BounceScope) -> Admin {
    Admin {
        store: store.clone(),
        delimiter: '+',
        bounce_scope: scope,
        moderation: None,
    }
}

/// What `bounce show LIST` answers.
async fn bounce_records(
    store: &Arc<dyn Store>,
    scope: BounceScope,
    list: &List,
) -> Vec<BounceRecord> {
    let show = Request::BounceShow {
        list: list.address.to_string(),
        member: None,
    };
    match admin(store, scope).execute(show, &mut Vec::new()).await {
        Ok(Response::BounceRecords(records)) => records,
        other => panic!("bounce show: {other:?}"),
    }
}
