//! The moderation and subscription service driven in process: its notices go
//! to a [`Recorder`] and its clock is one the test moves.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use listrelay::model::Domain;
use listrelay::moderation::Service;
use listrelay::notice::Notifier;
use listrelay::store::Store;

use super::outbox::Recorder;
use super::pg::TestStore;

pub struct Rig {
    /// Keeps the store's directory or database alive.
    pub site: TestStore,
    pub store: Arc<dyn Store>,
    pub svc: Service,
    pub outbox: Arc<Recorder>,
    /// Seconds since the epoch, as the service sees them.
    pub now: Arc<AtomicU64>,
}

impl Rig {
    /// A fresh store (the run's choice) with the domain lists.example.org and
    /// a service whose clock starts at `start`.
    pub async fn new(start: u64) -> Rig {
        let site = TestStore::open().await;
        let store = site.store.clone();
        store
            .create_domain(&Domain {
                name: "lists.example.org".into(),
                opaque: false,
                created_at: 0,
            })
            .await
            .unwrap();
        let now = Arc::new(AtomicU64::new(start));
        let clock_now = now.clone();
        let outbox = Arc::new(Recorder::default());
        let svc = Service {
            store: store.clone(),
            secret: listrelay::secret::Secret::from_bytes(vec![9; 32]),
            notifier: Notifier::new(
                outbox.clone(),
                listrelay::templates::Templates::builtin(),
                "h.example.org",
            ),
            clock: Arc::new(move || clock_now.load(Ordering::SeqCst)),
            config: Default::default(),
            delimiter: '+',
            grace_secs: 60,
            posts: None,
        };
        Rig {
            site,
            store,
            svc,
            outbox,
            now,
        }
    }
}
