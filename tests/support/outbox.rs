//! An outbox that records the notices a handler would send, for tests that
//! drive the bounce, moderation and subscription handlers in process.

use std::sync::Mutex;

use async_trait::async_trait;
use listrelay::notice::Outbox;
use listrelay::smtp::Envelope;

#[derive(Default)]
pub struct Recorder(Mutex<Vec<(Envelope, String)>>);

#[async_trait]
impl Outbox for Recorder {
    async fn send(&self, envelope: &Envelope, message: &[u8]) -> Result<(), String> {
        self.0.lock().unwrap().push((
            envelope.clone(),
            String::from_utf8_lossy(message).into_owned(),
        ));
        Ok(())
    }
}

impl Recorder {
    /// What was sent so far, in order.
    pub fn sent(&self) -> Vec<(Envelope, String)> {
        self.0.lock().unwrap().clone()
    }

    /// What was sent so far; forgets it.
    pub fn take(&self) -> Vec<(Envelope, String)> {
        std::mem::take(&mut self.0.lock().unwrap())
    }

    pub fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}
