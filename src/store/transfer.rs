//! `listrelay export` / `import`: everything a store holds, as JSON lines, so
//! a site moves from the embedded store to PostgreSQL (and back) without
//! losing lists, members, bounce state, queued or held messages, pending
//! confirmations, Message-ID windows or fan-out work in progress.
//!
//! The first line is a [`Record::Header`]; then domains, lists, members, post
//! counters, messages (bodies in hex), window entries, jobs, chunks, delivery
//! failures, bounce states, post bounce records, held posts, pending
//! confirmations and daily mail counts, in that order (each record only needs
//! earlier ones). Version 1 files (without the last five kinds) still import.

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

use super::{
    ChunkState, DeliveryFailure, DigestEntry, DigestIssue, Job, MessageMeta, MessageState, Result,
    Store, StoreError, WindowEntry,
};
use crate::model::{BounceState, Domain, HeldPost, List, Member, Pending, PostBounces};

pub const FORMAT: &str = "listrelay-export";
/// Version 2 added bounce states, post bounce records, held posts, pending
/// confirmations and mail counts.
pub const VERSION: u32 = 2;
/// The oldest version `import` reads.
pub const MIN_VERSION: u32 = 1;

/// One line of an export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    Header {
        format: String,
        version: u32,
    },
    Domain {
        domain: Domain,
    },
    List {
        list: List,
    },
    Member {
        list: String,
        member: Member,
    },
    Counter {
        list: String,
        seq: u64,
    },
    Message {
        meta: MessageMeta,
        /// The raw message, hex-encoded.
        body: String,
    },
    Window {
        list: String,
        message_id: String,
        entry: WindowEntry,
    },
    Job {
        job: Job,
    },
    /// A chunk with its progress; its lease is not carried over (no worker of
    /// the exporting site is alive).
    Chunk {
        state: ChunkState,
        members: Vec<String>,
    },
    Failure {
        failure: DeliveryFailure,
    },
    /// A member's bounce score under a scope.
    BounceState {
        state: BounceState,
    },
    /// The policy bounces of one post.
    PostBounces {
        bounces: PostBounces,
    },
    /// A held post's index record (its message is a `Message` in state
    /// `held`).
    Held {
        held: HeldPost,
    },
    /// A confirmation waiting for its reply, under the hash of its token.
    Pending {
        token_hash: String,
        pending: Pending,
    },
    /// Mails sent to an address on a day (`clock::day_of`).
    Rate {
        address: String,
        day: u64,
        count: u32,
    },
    /// A post waiting for (or cut into) a digest issue.
    DigestEntry {
        entry: DigestEntry,
        /// The post as received, hex-encoded.
        body: String,
    },
    /// A digest issue as its cut recorded it.
    DigestIssue {
        issue: DigestIssue,
    },
}

/// What an export or an import counted, by kind.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Counts {
    pub domains: u64,
    pub lists: u64,
    pub members: u64,
    pub counters: u64,
    pub messages: u64,
    pub window: u64,
    pub jobs: u64,
    pub chunks: u64,
    pub failures: u64,
    pub bounce_states: u64,
    pub post_bounces: u64,
    pub held: u64,
    pub pending: u64,
    pub rates: u64,
    pub digest_entries: u64,
    pub digest_issues: u64,
}

impl Counts {
    fn add(&mut self, r: &Record) {
        match r {
            Record::Header { .. } => {}
            Record::Domain { .. } => self.domains += 1,
            Record::List { .. } => self.lists += 1,
            Record::Member { .. } => self.members += 1,
            Record::Counter { .. } => self.counters += 1,
            Record::Message { .. } => self.messages += 1,
            Record::Window { .. } => self.window += 1,
            Record::Job { .. } => self.jobs += 1,
            Record::Chunk { .. } => self.chunks += 1,
            Record::Failure { .. } => self.failures += 1,
            Record::BounceState { .. } => self.bounce_states += 1,
            Record::PostBounces { .. } => self.post_bounces += 1,
            Record::Held { .. } => self.held += 1,
            Record::Pending { .. } => self.pending += 1,
            Record::Rate { .. } => self.rates += 1,
            Record::DigestEntry { .. } => self.digest_entries += 1,
            Record::DigestIssue { .. } => self.digest_issues += 1,
        }
    }
}

fn io(e: std::io::Error) -> StoreError {
    StoreError::Io {
        path: "export".into(),
        source: e,
    }
}

/// Writes every record of `store` to `out`. Run it with the servers stopped
/// for a consistent copy.
pub async fn export(store: &dyn Store, out: &mut dyn Write) -> Result<Counts> {
    let mut counts = Counts::default();
    let mut emit = |r: Record, counts: &mut Counts| -> Result<()> {
        counts.add(&r);
        serde_json::to_writer(&mut *out, &r)?;
        out.write_all(b"\n").map_err(io)
    };
    emit(
        Record::Header {
            format: FORMAT.into(),
            version: VERSION,
        },
        &mut counts,
    )?;
    for domain in store.domains().await? {
        emit(Record::Domain { domain }, &mut counts)?;
    }
    let lists = store.lists(None).await?;
    for list in &lists {
        emit(Record::List { list: list.clone() }, &mut counts)?;
    }
    // Members a page at a time, so a million-member list exports with flat
    // memory.
    const PAGE: usize = 1_000;
    for list in &lists {
        let mut after: Option<String> = None;
        loop {
            let page = store
                .members_page(&list.key(), after.as_deref(), PAGE)
                .await?;
            let full = page.len() == PAGE;
            after = page.last().map(|m| m.address.key());
            for member in page {
                emit(
                    Record::Member {
                        list: list.key(),
                        member,
                    },
                    &mut counts,
                )?;
            }
            if !full {
                break;
            }
        }
    }
    for (list, seq) in store.counters().await? {
        emit(Record::Counter { list, seq }, &mut counts)?;
    }
    for meta in store.messages(false).await? {
        // A post whose fan-out is complete is only waiting to be dropped.
        if meta.state == MessageState::Done {
            continue;
        }
        let body = hex::encode(store.message_body(&meta.id).await?);
        emit(Record::Message { meta, body }, &mut counts)?;
    }
    for (list, message_id, entry) in store.window_entries().await? {
        emit(
            Record::Window {
                list,
                message_id,
                entry,
            },
            &mut counts,
        )?;
    }
    for job in store.jobs().await? {
        emit(Record::Job { job }, &mut counts)?;
    }
    for mut state in store.chunks().await? {
        let members = store.chunk_members(&state.job, state.index).await?;
        state.owner = None;
        state.lease_expires_ms = 0;
        emit(Record::Chunk { state, members }, &mut counts)?;
    }
    for list in &lists {
        for failure in store.failures(&list.key()).await? {
            emit(Record::Failure { failure }, &mut counts)?;
        }
    }
    for state in store.bounce_states(None).await? {
        emit(Record::BounceState { state }, &mut counts)?;
    }
    for bounces in store.all_post_bounces().await? {
        emit(Record::PostBounces { bounces }, &mut counts)?;
    }
    for held in store.held_posts(None).await? {
        emit(Record::Held { held }, &mut counts)?;
    }
    for (token_hash, pending) in store.pendings().await? {
        emit(
            Record::Pending {
                token_hash,
                pending,
            },
            &mut counts,
        )?;
    }
    for (address, day, count) in store.rate_counts().await? {
        emit(
            Record::Rate {
                address,
                day,
                count,
            },
            &mut counts,
        )?;
    }
    for entry in store.digest_entries().await? {
        let body = hex::encode(&entry.body);
        emit(Record::DigestEntry { entry, body }, &mut counts)?;
    }
    for issue in store.digest_issues(None, None).await? {
        emit(Record::DigestIssue { issue }, &mut counts)?;
    }
    out.flush().map_err(io)?;
    Ok(counts)
}

/// Records written per [`Store::restore`] call.
const BATCH: usize = 1000;

/// Reads an export into `store`, which must be empty.
pub async fn import(store: &dyn Store, input: &mut dyn BufRead) -> Result<Counts> {
    if !store.domains().await?.is_empty()
        || !store.lists(None).await?.is_empty()
        || !store.messages(false).await?.is_empty()
        || !store.jobs().await?.is_empty()
    {
        return Err(StoreError::Invalid(
            "the target store is not empty; import into a new store".into(),
        ));
    }
    let mut counts = Counts::default();
    let mut batch = Vec::with_capacity(BATCH);
    let mut header = false;
    for (n, line) in input.lines().enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        let record: Record = serde_json::from_str(&line)
            .map_err(|e| StoreError::Invalid(format!("line {}: {e}", n + 1)))?;
        if let Record::Header { format, version } = &record {
            if format != FORMAT || !(MIN_VERSION..=VERSION).contains(version) {
                return Err(StoreError::Invalid(format!(
                    "line {}: not a {FORMAT} version {MIN_VERSION} to {VERSION} file ({format} {version})",
                    n + 1
                )));
            }
            header = true;
            continue;
        }
        if !header {
            return Err(StoreError::Invalid(format!(
                "line {}: the file does not start with a {FORMAT} header",
                n + 1
            )));
        }
        if let Record::Message { body, .. } = &record {
            hex::decode(body)
                .map_err(|e| StoreError::Invalid(format!("line {}: body: {e}", n + 1)))?;
        }
        counts.add(&record);
        batch.push(record);
        if batch.len() >= BATCH {
            store.restore(std::mem::take(&mut batch)).await?;
        }
    }
    if !header {
        return Err(StoreError::Invalid("empty export file".into()));
    }
    if !batch.is_empty() {
        store.restore(batch).await?;
    }
    store.sync().await?;
    Ok(counts)
}

/// A message body from its export form.
pub fn body(hex_body: &str) -> Result<Vec<u8>> {
    hex::decode(hex_body).map_err(|e| StoreError::Invalid(format!("message body: {e}")))
}
