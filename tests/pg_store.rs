//! The PostgreSQL store on its own (whatever `LISTRELAY_TEST_STORE` says;
//! skipped with a message when no server answers locally): what a database
//! that is not quite the expected one, concurrent writers and large lists do.

mod support;

use std::sync::Arc;

use listrelay::address::Address;
use listrelay::model::{Domain, List, Member};
use listrelay::store::{PostgresStore, Store};
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

/// Runs SQL on the test database, as an operator's hand would.
async fn sql(db: &TestDb, sql: &str) {
    let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let task = tokio::spawn(conn);
    client.batch_execute(sql).await.unwrap();
    drop(client);
    let _ = task.await;
}

fn list(address: &str) -> List {
    List::new(Address::parse(address).unwrap())
}

fn domain(name: &str) -> Domain {
    Domain {
        name: name.into(),
        opaque: false,
        created_at: 0,
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
    // A hand-edited or half-migrated schema.
    sql(
        &db,
        "ALTER TABLE domains ALTER COLUMN data TYPE text;
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
