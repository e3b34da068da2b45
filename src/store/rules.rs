//! The store's rules, written once above the backends as pure functions that
//! both the embedded and the PostgreSQL store call inside their own atomic
//! step (a sled transaction or compare-and-swap, a PostgreSQL transaction
//! holding the row lock): the held-post state transitions, the order in
//! which restored records are written, and the guard on deleting a domain.

use super::{MessageMeta, MessageState, PolicyMark, Record, Result, StoreError};
use crate::model::List;

/// What marking a post as accepted by the posting policy does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// The post is no longer queued: nothing to mark.
    NotQueued,
    /// Already marked (accepted or approved): nothing to write.
    AlreadyMarked,
    /// Marked now: write the record.
    Marked,
}

/// Marks a queued post as accepted by the posting policy.
pub fn mark_accepted(meta: &mut MessageMeta) -> Mark {
    if meta.state != MessageState::Queued {
        return Mark::NotQueued;
    }
    if meta.policy.is_some() {
        return Mark::AlreadyMarked;
    }
    meta.policy = Some(PolicyMark::Accepted);
    Mark::Marked
}

/// Holds a post for the moderators: only a queued post can be held.
/// `false`: nothing changed (it was acted on meanwhile).
pub fn hold(meta: &mut MessageMeta) -> bool {
    if meta.state != MessageState::Queued {
        return false;
    }
    meta.state = MessageState::Held;
    true
}

/// Takes a post out of the hold, once: approved, it is queued again marked
/// `Approved` (the policy is not applied twice); otherwise it is done (the
/// caller finishes it). `false`: it was not held (already acted on).
pub fn release(meta: &mut MessageMeta, approve: bool) -> bool {
    if meta.state != MessageState::Held {
        return false;
    }
    if approve {
        meta.state = MessageState::Queued;
        meta.policy = Some(PolicyMark::Approved);
    } else {
        meta.state = MessageState::Done;
    }
    true
}

/// A domain is deleted only once it has no lists (their members, posts and
/// settings would be left without a home).
pub fn may_delete_domain(name: &str, lists: &[List]) -> Result<()> {
    if lists.is_empty() {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "domain {name} still has lists; delete them first"
        )))
    }
}

/// The position of a record kind in an export and a restore: each record
/// only needs records of earlier kinds (a member its list, a chunk its job,
/// a held post its message).
pub fn restore_rank(r: &Record) -> u8 {
    match r {
        Record::Header { .. } => 0,
        Record::Domain { .. } => 1,
        Record::List { .. } => 2,
        Record::Member { .. } => 3,
        Record::Counter { .. } => 4,
        Record::Message { .. } => 5,
        Record::Window { .. } => 6,
        Record::Job { .. } => 7,
        Record::Chunk { .. } => 8,
        Record::Failure { .. } => 9,
        Record::BounceState { .. } => 10,
        Record::PostBounces { .. } => 11,
        Record::Held { .. } => 12,
        Record::Pending { .. } => 13,
        Record::Rate { .. } => 14,
        Record::DigestEntry { .. } => 15,
        Record::DigestIssue { .. } => 16,
    }
}

/// Puts a batch of records in restore order (stable: records of one kind
/// keep their order). An export is already in this order; the backends
/// call it so that a batch restores the same whatever its order.
pub fn in_restore_order(mut records: Vec<Record>) -> Vec<Record> {
    records.sort_by_key(restore_rank);
    records
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::Suffix;

    fn post(state: MessageState) -> MessageMeta {
        MessageMeta {
            id: "m1".into(),
            list: "dev@l.org".into(),
            suffix: Suffix::Post,
            tag: None,
            mail_from: "a@x.org".into(),
            rcpt: "dev@l.org".into(),
            received_at: 0,
            message_id: Some("p@x.org".into()),
            dedup: None,
            size: 1,
            state,
            policy: None,
            client: None,
            auth: None,
            audience: Default::default(),
        }
    }

    #[test]
    fn a_held_post_is_released_once() {
        let mut m = post(MessageState::Queued);
        assert!(!release(&mut m, true), "a queued post is not held");
        assert!(hold(&mut m));
        assert_eq!(m.state, MessageState::Held);
        assert!(!hold(&mut m), "held once");
        assert_eq!(mark_accepted(&mut m), Mark::NotQueued);
        let mut rejected = m.clone();
        assert!(release(&mut m, true));
        assert_eq!(
            (m.state, m.policy),
            (MessageState::Queued, Some(PolicyMark::Approved))
        );
        assert!(!release(&mut m, false), "released once");
        assert_eq!(mark_accepted(&mut m), Mark::AlreadyMarked);
        assert!(release(&mut rejected, false));
        assert_eq!(
            (rejected.state, rejected.policy),
            (MessageState::Done, None)
        );
    }

    #[test]
    fn a_queued_post_is_marked_once() {
        let mut m = post(MessageState::Queued);
        assert_eq!(mark_accepted(&mut m), Mark::Marked);
        assert_eq!(m.policy, Some(PolicyMark::Accepted));
        assert_eq!(mark_accepted(&mut m), Mark::AlreadyMarked);
    }

    #[test]
    fn restore_order_puts_what_a_record_needs_first() {
        let header = Record::Header {
            format: "f".into(),
            version: 2,
        };
        let rate = Record::Rate {
            address: "a@x.org".into(),
            day: 1,
            count: 1,
        };
        let counter = Record::Counter {
            list: "dev@l.org".into(),
            seq: 3,
        };
        let ordered = in_restore_order(vec![rate.clone(), counter.clone(), header.clone()]);
        assert_eq!(ordered, vec![header, counter, rate]);
    }
}
