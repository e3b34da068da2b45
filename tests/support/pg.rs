//! PostgreSQL for tests: `LISTRELAY_TEST_STORE=postgres` runs every
//! `listrelay serve` under test (and tests/claims.rs) on a fresh database
//! `lr_test_<random>` of the server at `LISTRELAY_TEST_PG`
//! (default `postgres://postgres@127.0.0.1:5432`), dropped afterwards.

use std::time::Duration;

/// Whether tests should use PostgreSQL rather than the embedded store.
pub fn selected() -> bool {
    std::env::var("LISTRELAY_TEST_STORE").is_ok_and(|v| v == "postgres")
}

/// The server, without a database name.
pub fn server_url() -> String {
    std::env::var("LISTRELAY_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
        .trim_end_matches('/')
        .to_string()
}

/// Runs SQL on the maintenance database, on a thread of its own (callers may
/// be inside a tokio runtime).
pub fn admin_sql(sql: &str) -> Result<(), String> {
    let url = format!("{}/postgres", server_url());
    let sql = sql.to_string();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async move {
            let connect = tokio_postgres::connect(&url, tokio_postgres::NoTls);
            let (client, conn) = tokio::time::timeout(Duration::from_secs(5), connect)
                .await
                .map_err(|_| format!("{url}: connection timed out"))?
                .map_err(|e| format!("{url}: {e}"))?;
            let task = tokio::spawn(conn);
            let r = client.batch_execute(&sql).await.map_err(|e| e.to_string());
            drop(client);
            let _ = task.await;
            r
        })
    })
    .join()
    .map_err(|_| "admin thread panicked".to_string())?
}

/// Whether a PostgreSQL server answers.
pub fn reachable() -> Result<(), String> {
    admin_sql("SELECT 1")
}

/// For tests that need PostgreSQL whatever the selected store: `false` (skip,
/// with a message) when none answers locally; in CI (`CI=true`) a missing
/// server is a failure.
pub fn required(test: &str) -> bool {
    match reachable() {
        Ok(()) => true,
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!(
                "{test}: needs PostgreSQL at {} and CI must have one: {e}",
                server_url()
            )
        }
        Err(e) => {
            eprintln!(
                "SKIPPED {test}: no PostgreSQL at {} ({e}); scripts/test starts one",
                server_url()
            );
            false
        }
    }
}

/// A fresh database, dropped (with its connections) on Drop.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub fn create() -> TestDb {
        let name = format!("lr_test_{:016x}", rand::random::<u64>());
        if let Err(e) = admin_sql(&format!("CREATE DATABASE {name}")) {
            panic!(
                "LISTRELAY_TEST_STORE=postgres but no database could be created at {}: {e}",
                server_url()
            );
        }
        let url = format!("{}/{name}", server_url());
        TestDb { name, url }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = admin_sql(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

/// A store for tests that drive it directly: the embedded one in a temp dir,
/// or, with `LISTRELAY_TEST_STORE=postgres`, a fresh database (migrated).
pub struct TestStore {
    pub store: std::sync::Arc<dyn listrelay::store::Store>,
    pub dir: tempfile::TempDir,
    /// Dropped last: the pool's connections go first.
    pub db: Option<TestDb>,
}

impl TestStore {
    pub async fn open() -> TestStore {
        let dir = tempfile::tempdir().unwrap();
        let db = selected().then(TestDb::create);
        let store: std::sync::Arc<dyn listrelay::store::Store> = match &db {
            Some(db) => std::sync::Arc::new(
                listrelay::store::PostgresStore::open(&db.url)
                    .await
                    .unwrap(),
            ),
            None => std::sync::Arc::new(listrelay::store::SledStore::open(dir.path()).unwrap()),
        };
        TestStore { store, dir, db }
    }
}
