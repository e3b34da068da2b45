//! The moderation and subscription service driven in process: its notices go
//! to a [`Recorder`] and its clock is one the test moves.

use std::sync::Arc;

use listrelay::clock::ManualClock;
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
    pub now: ManualClock,
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
                arc_seal: None,
            })
            .await
            .unwrap();
        let now = ManualClock::new(start);
        let outbox = Arc::new(Recorder::default());
        let svc = Service {
            store: store.clone(),
            secret: listrelay::secret::Secret::from_bytes(vec![9; 32]),
            notifier: Notifier::new(
                outbox.clone(),
                listrelay::templates::Templates::builtin(),
                "h.example.org",
            ),
            clock: now.clock(),
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
