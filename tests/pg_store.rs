//! The PostgreSQL store on its own (whatever `LISTRELAY_TEST_STORE` says;
//! skipped with a message when no server answers locally): what a database
//! that is not quite the expected one, concurrent writers and large lists do;
//! and the delivery audiences, checked against the embedded store's answers.

mod support;

use std::sync::Arc;

use listrelay::address::{Address, Suffix};
use listrelay::model::{BounceState, DeliveryMode, Domain, List, Member};
use listrelay::store::{
    Completion, Directory, Job, MessageMeta, MessageState, NewMessage, PostgresStore, Store,
    StoreError,
};
use support::pg::{self, TestDb};

/// A fresh database and a store on it (the database is dropped last).
async fn open(test: &str) -> Option<(TestDb, Arc<dyn Store>)> {
    if !pg::required(test) {
        return None;
    }
    let db = TestDb::create();
    let store: Arc<dyn Store> = Arc::new(PostgresStore::open(&db.url).await.unwrap());
    Some((db, store))
}

/// Runs SQL on the test database, as an operator's hand would; returns the
/// first column of the rows it answered, as text.
async fn sql(db: &TestDb, sql: &str) -> Vec<String> {
    let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let task = tokio::spawn(conn);
    let answer = client.simple_query(sql).await.unwrap();
    drop(client);
    let _ = task.await;
    answer
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .collect()
}

fn list(address: &str) -> List {
    List::new(Address::parse(address).unwrap())
}

fn domain(name: &str) -> Domain {
    Domain {
        name: name.into(),
        opaque: false,
        created_at: 0,
        arc_seal: None,
    }
}

fn member(address: &str) -> Member {
    Member::new(Address::parse(address).unwrap())
}

#[tokio::test]
async fn a_column_of_an_unexpected_type_is_an_error_naming_it_not_a_panic() {
    let Some((db, store)) = open("unexpected column type").await else {
        return;
    };
    store
        .create_domain(&domain("lists.example.org"))
        .await
        .unwrap();
    store
        .create_list(&list("dev@lists.example.org"))
        .await
        .unwrap();
    store
        .add_members("dev@lists.example.org", &[member("a@example.com")])
        .await
        .unwrap();
    // A hand-edited or half-migrated schema (the members' generated
    // columns read `data` as JSON, so they go first).
    sql(
        &db,
        "ALTER TABLE domains ALTER COLUMN data TYPE text;
         ALTER TABLE members DROP COLUMN delivery_mode;
         ALTER TABLE members ALTER COLUMN data TYPE text;",
    )
    .await;
    let err = store
        .domain("lists.example.org")
        .await
        .expect_err("a text column where JSON is expected");
    let msg = err.to_string();
    assert!(msg.contains("domains.data"), "names the column: {msg}");
    assert!(msg.contains("listrelay migrate"), "says what to do: {msg}");
    let err = store
        .members("dev@lists.example.org")
        .await
        .expect_err("members.data is text");
    assert!(err.to_string().contains("members.data"), "{err}");
    // JSON that does not decode as the record is named as well.
    sql(
        &db,
        "ALTER TABLE domains ALTER COLUMN data TYPE jsonb USING '{\"nope\": 1}'::jsonb",
    )
    .await;
    let err = store
        .domains()
        .await
        .expect_err("a record that does not decode");
    assert!(err.to_string().contains("domains.data"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_domain_waits_for_a_list_being_created_in_it_and_refuses() {
    let Some((db, store)) = open("delete_domain against an in-flight create_list").await else {
        return;
    };
    store.create_domain(&domain("d.example.org")).await.unwrap();
    // Another host is creating a list in the domain: its transaction has
    // locked the domain row and inserted the list, and not committed yet.
    let (other, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let other_store = PostgresStore::connect(&db.url).unwrap();
    let l = list("dev@d.example.org");
    other.batch_execute("BEGIN").await.unwrap();
    other
        .execute(
            "SELECT 1 FROM domains WHERE name = $1 FOR KEY SHARE",
            &[&"d.example.org"],
        )
        .await
        .unwrap();
    other
        .execute(
            "INSERT INTO lists (key, domain, data) VALUES ($1, $2, $3)",
            &[&l.key(), &"d.example.org", &tokio_postgres::types::Json(&l)],
        )
        .await
        .unwrap();
    let deleting = tokio::spawn(async move { other_store.delete_domain("d.example.org").await });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!deleting.is_finished(), "the delete waits for the creation");
    other.batch_execute("COMMIT").await.unwrap();
    let err = deleting
        .await
        .unwrap()
        .expect_err("the domain has a list now");
    assert!(err.to_string().contains("still has lists"), "{err}");
    assert!(store.domain("d.example.org").await.unwrap().is_some());
    // Without lists it goes.
    store.delete_list(&l.key()).await.unwrap();
    store.delete_domain("d.example.org").await.unwrap();
    assert!(store.domain("d.example.org").await.unwrap().is_none());
}

#[tokio::test]
async fn a_deleted_list_takes_its_members_and_a_recreated_one_starts_empty() {
    let Some((_db, store)) = open("delete_list").await else {
        return;
    };
    let l = list("dev@d.example.org");
    store.create_list(&l).await.unwrap();
    let members: Vec<Member> = (0..100)
        .map(|i| member(&format!("m{i}@example.com")))
        .collect();
    store.add_members(&l.key(), &members).await.unwrap();
    store.delete_list(&l.key()).await.unwrap();
    assert!(store.list(&l.key()).await.unwrap().is_none());
    store.create_list(&l).await.unwrap();
    assert_eq!(store.member_count(&l.key()).await.unwrap(), 0);
    assert!(store.members(&l.key()).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_bounce_state_updates_are_never_lost() {
    let Some((db, store)) = open("replace_bounce_state").await else {
        return;
    };
    // Two hosts, four writers each, every one adding 1 to the count by
    // read, compare-and-swap, retry.
    let other: Arc<dyn Store> = Arc::new(PostgresStore::connect(&db.url).unwrap());
    let (scope, who) = ("dev@lists.example.org", "a@example.com");
    let mut tasks = Vec::new();
    for w in 0..8 {
        let store = if w % 2 == 0 {
            store.clone()
        } else {
            other.clone()
        };
        tasks.push(tokio::spawn(async move {
            let mut retries = 0u32;
            for _ in 0..25 {
                loop {
                    let old = store.bounce_state(scope, who).await.unwrap();
                    let mut new = old
                        .clone()
                        .unwrap_or_else(|| BounceState::new(scope, who, scope, 0));
                    new.bounces += 1;
                    if store
                        .replace_bounce_state(scope, who, old.as_ref(), Some(&new))
                        .await
                        .unwrap()
                    {
                        break;
                    }
                    retries += 1;
                }
            }
            retries
        }));
    }
    let mut retries = 0;
    for t in tasks {
        retries += t.await.unwrap();
    }
    let state = store.bounce_state(scope, who).await.unwrap().unwrap();
    assert_eq!(
        state.bounces, 200,
        "every update counted ({retries} retries)"
    );
    // A reset (delete) only if nothing changed since it read.
    let stale = {
        let mut s = state.clone();
        s.bounces -= 1;
        s
    };
    assert!(!store
        .replace_bounce_state(scope, who, Some(&stale), None)
        .await
        .unwrap());
    assert!(store
        .replace_bounce_state(scope, who, Some(&state), None)
        .await
        .unwrap());
    assert!(store.bounce_state(scope, who).await.unwrap().is_none());
    assert!(
        !store
            .replace_bounce_state(scope, who, Some(&state), None)
            .await
            .unwrap(),
        "nothing left to reset"
    );
}

/// Accepts a post to `list` with store id `id`.
async fn accept_post(store: &Arc<dyn Store>, list: &str, id: &str) {
    let post = NewMessage {
        meta: MessageMeta {
            id: id.into(),
            list: list.into(),
            suffix: Suffix::Post,
            tag: None,
            mail_from: "poster@example.com".into(),
            rcpt: list.into(),
            received_at: 0,
            message_id: Some(format!("{id}@example.com")),
            dedup: None,
            size: 20,
            state: MessageState::Queued,
            policy: None,
            client: None,
            auth: None,
            audience: Default::default(),
        },
        body: b"Subject: hi\r\n\r\nhi\r\n".to_vec(),
    };
    store.accept(vec![post]).await.unwrap();
}

fn job(post: &str, list: &str) -> Job {
    Job {
        post_id: post.into(),
        list: list.into(),
        seq: 0,
        verp_percent: 0,
        max_rcpt_per_txn: 100,
        chunks: 0,
        chunks_done: 0,
        recipients: 0,
        delivered: 0,
        refused: 0,
        created_at: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_whose_last_chunk_completes_while_another_host_plans_it_is_planned_once() {
    let Some((db, store)) = open("planning racing completion").await else {
        return;
    };
    let other: Arc<dyn Store> = Arc::new(PostgresStore::connect(&db.url).unwrap());
    let l = "dev@lists.example.org";
    store.create_list(&list(l)).await.unwrap();
    for round in 0..40 {
        let id = format!("post-{round:03}");
        accept_post(&store, l, &id).await;
        store
            .create_job(job(&id, l), vec![vec!["a@example.com".into()]])
            .await
            .unwrap();
        let claim = store
            .claim_chunk("host-a:w0", 60_000)
            .await
            .unwrap()
            .unwrap();
        let mut done = claim.chunk.clone();
        done.delivered = 1;
        // Host B listed the post as unplanned before host A planned it, and
        // plans it now, while A completes the job's only chunk.
        let planner = {
            let (other, id) = (other.clone(), id.clone());
            tokio::spawn(async move {
                other
                    .create_job(job(&id, l), vec![vec!["a@example.com".into()]])
                    .await
            })
        };
        let completion = store.complete_chunk("host-a:w0", &done).await;
        let planned = planner.await.unwrap();
        assert!(
            matches!(completion, Ok(Completion::JobDone(_))),
            "round {round}: the completion went through: {completion:?}"
        );
        assert!(
            matches!(planned, Err(StoreError::Exists(_))),
            "round {round}: the post was planned once: {planned:?}"
        );
        assert!(store.jobs().await.unwrap().is_empty(), "round {round}");
        store.finish_message(&id, 0).await.unwrap();
    }
}

#[tokio::test]
async fn orphan_jobs_are_reported_and_cleared_at_open() {
    let Some((db, store)) = open("orphan jobs").await else {
        return;
    };
    let l = "dev@lists.example.org";
    store.create_list(&list(l)).await.unwrap();
    for id in ["gone", "done", "live"] {
        accept_post(&store, l, id).await;
        store
            .create_job(job(id, l), vec![vec!["a@example.com".into()]])
            .await
            .unwrap();
    }
    // What a crash of an older listrelay could leave behind.
    sql(
        &db,
        "DELETE FROM messages WHERE id = 'gone';
         UPDATE messages SET state = 'done' WHERE id = 'done';",
    )
    .await;
    drop(store);
    let store: Arc<dyn Store> = Arc::new(PostgresStore::open(&db.url).await.unwrap());
    let jobs: Vec<String> = store
        .jobs()
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.post_id)
        .collect();
    assert_eq!(jobs, vec!["live".to_string()]);
    let chunks: Vec<String> = store
        .chunks()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.job)
        .collect();
    assert_eq!(chunks, vec!["live".to_string()]);
}

#[tokio::test]
async fn leases_are_released_by_host_id_in_the_new_and_the_old_owner_format() {
    let Some((_db, store)) = open("release_leases by host id").await else {
        return;
    };
    let l = "dev@lists.example.org";
    store.create_list(&list(l)).await.unwrap();
    accept_post(&store, l, "post").await;
    let chunks = (0..4).map(|i| vec![format!("m@d{i}.org")]).collect();
    store.create_job(job("post", l), chunks).await.unwrap();
    for owner in [
        "0123456789abcdef:mx1.example.org:10:aa:w0",
        "oldname.example.org#0123456789abcdef:11:bb:w0",
        "fedcba9876543210:mx2.example.org:12:cc:w0",
        "mx2.example.org#fedcba9876543210:13:dd:w0",
    ] {
        store.claim_chunk(owner, 600_000).await.unwrap().unwrap();
    }
    assert_eq!(
        store.release_leases("0123456789abcdef:").await.unwrap(),
        2,
        "this host's leases, whatever name it ran under"
    );
    let live: Vec<String> = store
        .chunks()
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.lease_expires_ms > 0)
        .filter_map(|c| c.owner)
        .collect();
    assert_eq!(
        live,
        vec![
            "fedcba9876543210:mx2.example.org:12:cc:w0".to_string(),
            "mx2.example.org#fedcba9876543210:13:dd:w0".to_string()
        ],
        "another host's leases run their course"
    );
}

#[tokio::test]
async fn a_roster_is_walked_page_by_page_in_key_order() {
    let Some((_db, store)) = open("members_page").await else {
        return;
    };
    let l = "dev@lists.example.org";
    store.create_list(&list(l)).await.unwrap();
    let joined = |address: &str, at: u64| Member {
        added_at: at,
        ..member(address)
    };
    let mut members: Vec<Member> = (0..250)
        .map(|i| joined(&format!("User{i}@d{}.example.net", i % 7), 0))
        .collect();
    let mut off = joined("off@example.com", 0);
    off.delivery_enabled = false;
    let late = joined("late@example.com", 2_000);
    members[0].added_at = 1_000;
    members.extend([off, late]);
    store.add_members(l, &members).await.unwrap();

    let mut walked = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.members_page(l, after.as_deref(), 40).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 40);
        after = page.last().map(|m| m.address.key());
        walked.extend(page);
    }
    let mut want: Vec<String> = members.iter().map(|m| m.address.key()).collect();
    want.sort();
    let keys: Vec<String> = walked.iter().map(|m| m.address.key()).collect();
    assert_eq!(keys, want, "every member once, in key order");
    assert_eq!(walked[0].address.to_string(), "late@example.com");

    // A post received at 1,500 goes to the members with delivery on who had
    // joined by then, as their addresses are spelled.
    let to = store.delivery_addresses(l, 1_500).await.unwrap();
    assert_eq!(to.len(), 250);
    assert!(to.contains(&"User1@d1.example.net".to_string()));
    assert!(!to
        .iter()
        .any(|a| a == "off@example.com" || a == "late@example.com"));
}

/// Right after a bulk import the planner knows the table's size: a post is
/// then planned by index-order pages, not by a sort of the whole list per
/// page (a million members took 41.6 s to plan before autovacuum's first
/// look, 11.4 s after; bench/README.md).
#[tokio::test]
async fn a_bulk_import_leaves_the_planner_statistics_of_its_size() {
    let Some((db, store)) = open("member statistics").await else {
        return;
    };
    let l = "big@lists.example.org";
    store.create_list(&list(l)).await.unwrap();
    for batch in 0..4 {
        let members: Vec<Member> = (0..5_000)
            .map(|i| member(&format!("m{batch}x{i}@d{}.example.net", i % 50)))
            .collect();
        store.add_members(l, &members).await.unwrap();
    }
    let estimate: i64 = sql(
        &db,
        "SELECT reltuples::bigint FROM pg_class WHERE oid = 'members'::regclass",
    )
    .await[0]
        .parse()
        .unwrap();
    assert!(
        estimate >= 10_000,
        "PostgreSQL estimates {estimate} members of 20,000 right after the import"
    );
}

/// The audiences of a list with a member in every mode, some disabled by
/// bounces, one joined late, walked in pages of `limit`.
async fn audiences(store: &dyn Store, limit: usize) -> Vec<(DeliveryMode, Vec<String>)> {
    let l = "modes@lists.example.org";
    store.create_list(&list(l)).await.unwrap();
    let mut members = Vec::new();
    for (i, mode) in DeliveryMode::ALL.into_iter().enumerate() {
        for d in ["a.example", "b.example"] {
            let mut on = member(&format!("{}{i}@{d}", mode.name()));
            on.delivery_mode = mode;
            let mut off = member(&format!("{}{i}-off@{d}", mode.name()));
            off.delivery_mode = mode;
            off.delivery_enabled = false;
            let mut late = member(&format!("{}{i}-late@{d}", mode.name()));
            late.delivery_mode = mode;
            late.added_at = 2_000;
            on.added_at = 1_000;
            off.added_at = 1_000;
            members.extend([on, off, late]);
        }
    }
    store.add_members(l, &members).await.unwrap();
    let mut out = Vec::new();
    for mode in DeliveryMode::ALL {
        let (mut got, mut after) = (Vec::new(), None::<String>);
        loop {
            let page = store
                .audience_page(l, mode, 1_500, after.as_deref(), limit)
                .await
                .unwrap();
            assert!(page.addresses.len() <= limit);
            got.extend(page.addresses);
            match page.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        out.push((mode, got));
    }
    // A post's audience is the regular one, whatever the page size.
    assert_eq!(
        store.delivery_addresses(l, 1_500).await.unwrap(),
        out[0].1,
        "delivery_addresses is the regular audience"
    );
    out
}

#[tokio::test]
async fn each_audience_is_its_modes_enabled_members_on_both_stores() {
    let dir = tempfile::tempdir().unwrap();
    let sled = listrelay::store::SledStore::open(dir.path()).unwrap();
    let want: Vec<(DeliveryMode, Vec<String>)> = DeliveryMode::ALL
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            let n = m.name();
            (
                m,
                vec![format!("{n}{i}@a.example"), format!("{n}{i}@b.example")],
            )
        })
        .collect();
    for limit in [1, 2, 5, 1000] {
        assert_eq!(
            audiences(&sled, limit).await,
            want,
            "sled, pages of {limit}"
        );
        sled.delete_list("modes@lists.example.org").await.unwrap();
    }
    let Some((_db, store)) = open("audiences").await else {
        return;
    };
    for limit in [1, 2, 5, 1000] {
        assert_eq!(
            audiences(store.as_ref(), limit).await,
            want,
            "PostgreSQL, pages of {limit}"
        );
        store.delete_list("modes@lists.example.org").await.unwrap();
    }
}

#[tokio::test]
async fn a_members_mode_is_set_alone_and_a_bounce_flag_beside_it_stays() {
    let Some((_db, store)) = open("set delivery mode").await else {
        return;
    };
    let l = "dev@lists.example.org";
    store.create_list(&list(l)).await.unwrap();
    store
        .add_members(l, &[member("Bob@x.example")])
        .await
        .unwrap();
    assert!(store.set_delivery(l, "bob@x.example", false).await.unwrap());
    let m = store
        .set_delivery_mode(l, "bob@x.example", DeliveryMode::DigestPlain)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.delivery_mode, DeliveryMode::DigestPlain);
    assert!(!m.delivery_enabled, "the bounce flag is left as it was");
    assert_eq!(m.address.to_string(), "Bob@x.example");
    assert_eq!(store.member(l, "bob@x.example").await.unwrap(), Some(m));
    assert!(store
        .set_delivery_mode(l, "nobody@x.example", DeliveryMode::Nomail)
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn a_database_migrated_from_version_5_keeps_its_members_regular() {
    if !pg::required("migrated from 5") {
        return;
    }
    let db = TestDb::create();
    // A database as listrelay left it at schema version 5, with a member
    // record written before modes existed.
    let mut schema = String::from(
        "CREATE TABLE listrelay_migrations (version integer PRIMARY KEY, name text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now());",
    );
    for (version, name, sql) in listrelay::store::postgres::schema::MIGRATIONS {
        if *version <= 5 {
            schema.push_str(sql);
            schema.push_str(&format!(
                "\nINSERT INTO listrelay_migrations (version, name) VALUES ({version}, '{name}');\n"
            ));
        }
    }
    sql(&db, &schema).await;
    let l = list("dev@lists.example.org");
    sql(
        &db,
        &format!(
            "INSERT INTO lists (key, domain, data) VALUES ('{}', 'lists.example.org', '{}');
             INSERT INTO members (list, domain, local, data) VALUES
               ('{}', 'x.example', 'old', '{{\"address\": \"old@x.example\", \"added_at\": 1,
                 \"delivery_enabled\": true, \"moderated\": false}}');",
            l.key(),
            serde_json::to_string(&l).unwrap(),
            l.key()
        ),
    )
    .await;
    let store: Arc<dyn Store> = Arc::new(PostgresStore::open(&db.url).await.unwrap());
    let m = store
        .member(&l.key(), "old@x.example")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.delivery_mode, DeliveryMode::Regular);
    assert_eq!(
        store.delivery_addresses(&l.key(), 10).await.unwrap(),
        vec!["old@x.example".to_string()]
    );
    // Its new mode moves it to the digest audience (the index's rows).
    store
        .set_delivery_mode(&l.key(), "old@x.example", DeliveryMode::DigestMime)
        .await
        .unwrap();
    assert!(store
        .delivery_addresses(&l.key(), 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .audience_addresses(&l.key(), DeliveryMode::DigestMime, 10)
            .await
            .unwrap(),
        vec!["old@x.example".to_string()]
    );
}

/// Issue 9, "a million members" (`--ignored`, release build):
/// `cargo test --release --test pg_store -- --ignored --nocapture`.
#[tokio::test]
#[ignore]
async fn bench_a_million_members() {
    let Some((_db, store)) = open("a million members").await else {
        return;
    };
    let l = "big@lists.example.org";
    store.create_list(&list(l)).await.unwrap();
    let (total, batch) = (1_000_000usize, 10_000usize);
    let started = std::time::Instant::now();
    for b in 0..total / batch {
        let members: Vec<Member> = (b * batch..(b + 1) * batch)
            .map(|i| member(&format!("user{i}@d{}.example.net", i % 1000)))
            .collect();
        let new = store.add_members(l, &members).await.unwrap();
        assert!(new.iter().all(|&n| n));
    }
    let added = started.elapsed();
    let again: Vec<Member> = (0..batch)
        .map(|i| member(&format!("user{i}@d{}.example.net", i % 1000)))
        .collect();
    let t = std::time::Instant::now();
    assert!(store
        .add_members(l, &again)
        .await
        .unwrap()
        .iter()
        .all(|&n| !n));
    let readded = t.elapsed();
    let t = std::time::Instant::now();
    assert_eq!(store.member_count(l).await.unwrap(), total as u64);
    let counted = t.elapsed();
    let t = std::time::Instant::now();
    let (mut after, mut walked, mut pages) = (None::<String>, 0, 0);
    loop {
        let page = store.members_page(l, after.as_deref(), 1000).await.unwrap();
        if page.is_empty() {
            break;
        }
        walked += page.len();
        pages += 1;
        after = page.last().map(|m| m.address.key());
    }
    let paged = t.elapsed();
    assert_eq!(walked, total);
    let t = std::time::Instant::now();
    let to = store
        .delivery_addresses(l, listrelay::clock::now())
        .await
        .unwrap();
    let delivery = t.elapsed();
    assert_eq!(to.len(), total);
    eprintln!(
        "a million members: add_members {total} in batches of {batch}: {added:?}; \
         a batch of {batch} already there: {readded:?}; member_count: {counted:?}; \
         members_page walk ({pages} pages of 1000): {paged:?}; delivery_addresses: {delivery:?}"
    );
}
