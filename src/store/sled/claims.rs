//! The `Claims` role: planning jobs, claiming, progressing and completing
//! chunks (the record logic lives in fanout.rs, the progress journal in
//! journal.rs) and hand-off failures.

use super::*;

#[async_trait]
impl Claims for SledStore {
    async fn unplanned_posts(&self) -> Result<Vec<MessageMeta>> {
        self.blocking(|t| {
            let mut out = Vec::new();
            for kv in t.messages.iter() {
                let (_, v) = kv?;
                let m: MessageMeta = serde_json::from_slice(&v)?;
                if m.suffix == crate::address::Suffix::Post
                    && m.state == MessageState::Queued
                    && !t.jobs.contains_key(&m.id)?
                {
                    out.push(m);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn begin_job(&self, job: &Job, planner: &str, lease_ms: u64) -> Result<()> {
        let (job, planner) = (job.clone(), planner.to_string());
        self.blocking(move |t| fanout::begin_job(t, &job, &planner, lease_ms))
            .await
    }

    async fn add_chunks(
        &self,
        post: &str,
        planner: &str,
        chunks: Vec<Vec<String>>,
        lease_ms: u64,
    ) -> Result<()> {
        let (post, planner) = (post.to_string(), planner.to_string());
        self.blocking(move |t| fanout::add_chunks(t, &post, &planner, &chunks, lease_ms))
            .await
    }

    async fn seal_job(&self, post: &str, planner: &str) -> Result<Job> {
        let digest = self.digest_body(post).await?;
        let (post, planner) = (post.to_string(), planner.to_string());
        let job = self
            .blocking(move |t| fanout::seal_job(t, &post, &planner, digest.as_deref()))
            .await?;
        // Chunk lists written by the adds are made durable by this flush
        // too: nothing is claimed before it returns.
        self.durable().await?;
        Ok(job)
    }

    async fn seal_digest_only(&self, post: &str) -> Result<bool> {
        let Some(body) = self.digest_body(post).await? else {
            return Ok(false);
        };
        let post = post.to_string();
        let entered = self
            .blocking(move |t| fanout::seal_digest_only(t, &post, &body))
            .await?;
        self.durable().await?;
        Ok(entered)
    }

    async fn claim_chunk(&self, owner: &str, lease_ms: u64) -> Result<Option<Claim>> {
        let owner = owner.to_string();
        let journal = self.journal.clone();
        let claim = self
            .blocking(move |t| {
                // Claims see every holder's latest progress and lease.
                let mut j = journal.lock().map_err(|_| StoreError::Closed)?;
                j.checkpoint(t)?;
                fanout::claim_chunk(t, &owner, lease_ms)
            })
            .await?;
        if claim.is_some() {
            self.durable().await?;
        }
        Ok(claim)
    }

    async fn chunk_members(&self, job: &str, index: u32) -> Result<Vec<String>> {
        let job = job.to_string();
        self.blocking(move |t| fanout::chunk_members(t, &job, index))
            .await
    }

    async fn update_chunk(&self, owner: &str, state: &ChunkState, lease_ms: u64) -> Result<bool> {
        self.journal.lock().map_err(|_| StoreError::Closed)?.record(
            &self.trees,
            owner,
            state,
            lease_ms,
        )
    }

    async fn complete_chunk(&self, owner: &str, state: &ChunkState) -> Result<Completion> {
        let (owner, state) = (owner.to_string(), state.clone());
        let journal = self.journal.clone();
        let done = self
            .blocking(move |t| {
                let mut j = journal.lock().map_err(|_| StoreError::Closed)?;
                let done = fanout::complete_chunk(t, &owner, &state)?;
                if !t
                    .chunks
                    .contains_key(fanout::chunk_key(&state.job, state.index))?
                {
                    j.forget(&state.job, state.index);
                }
                Ok(done)
            })
            .await?;
        self.durable().await?;
        Ok(done)
    }

    async fn release_leases(&self, owner_prefix: &str) -> Result<usize> {
        let n = {
            let mut j = self.journal.lock().map_err(|_| StoreError::Closed)?;
            j.checkpoint(&self.trees)?;
            fanout::expire_leases_of(&self.trees, owner_prefix)?
        };
        self.durable().await?;
        Ok(n)
    }

    async fn jobs(&self) -> Result<Vec<Job>> {
        self.blocking(|t| values(t.jobs.iter())).await
    }

    async fn chunks(&self) -> Result<Vec<ChunkState>> {
        self.blocking(|t| values(t.chunks.iter())).await
    }

    async fn record_failure(&self, failure: &DeliveryFailure) -> Result<()> {
        fanout::record_failure(&self.trees, failure)
    }

    async fn failures(&self, list: &str) -> Result<Vec<DeliveryFailure>> {
        fanout::failures(&self.trees, list)
    }

    async fn pending_failures(&self, max: usize) -> Result<Vec<(String, DeliveryFailure)>> {
        bounce::pending_failures(&self.trees, max)
    }

    async fn delete_failure(&self, list: &str, id: &str) -> Result<()> {
        self.trees.failures.remove(key2(list, id))?;
        Ok(())
    }
}
