//! Bounce records: a member's bounce state under a scope key, the policy
//! bounces of one post, and the site setting that says which lists share a
//! state. The scoring rules that change these records live in
//! `bounce::score`; the scope keys in `bounce::scope` (docs/bounces.md).

use serde::{Deserialize, Serialize};

/// The site-wide sharing of bounce state (`[bounce] scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BounceScope {
    /// Each list keeps its own state (Mailman's behaviour).
    #[default]
    List,
    /// Lists of one virtual domain share the state.
    Domain,
    /// All lists of all transparent domains share the state; an opaque domain
    /// keeps its own, shared by its lists.
    Site,
}

/// A member's bounce record under one scope key (docs/bounces.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BounceState {
    /// The scope key (`bounce::scope_key`).
    pub scope: String,
    /// The member's lowercased address.
    pub member: String,
    /// The list the last bounce came through: its settings apply.
    pub list: String,
    pub score: f64,
    /// Bounces seen (counted ones; policy bounces are not recorded here).
    pub bounces: u32,
    pub first_bounce: u64,
    pub last_bounce: u64,
    /// Day number (`clock::day_of`) of the last scored bounce.
    pub scored_day: u64,
    /// What was added to the score on `scored_day`.
    pub scored_that_day: f64,
    /// Reason of the last bounce, as `bounce parse` names it (`user_unknown`…).
    pub last_reason: String,
    pub last_status: Option<String>,
    pub last_hard: bool,
    pub disabled: bool,
    pub disabled_at: Option<u64>,
    pub warnings_sent: u32,
    pub last_warning_at: Option<u64>,
}

impl BounceState {
    pub fn new(scope: &str, member: &str, list: &str, now: u64) -> Self {
        BounceState {
            scope: scope.to_string(),
            member: member.to_string(),
            list: list.to_string(),
            score: 0.0,
            bounces: 0,
            first_bounce: now,
            last_bounce: now,
            scored_day: 0,
            scored_that_day: 0.0,
            last_reason: String::new(),
            last_status: None,
            last_hard: false,
            disabled: false,
            disabled_at: None,
            warnings_sent: 0,
            last_warning_at: None,
        }
    }
}

/// Policy bounces of one post, to tell a post the world refuses (DMARC, spam)
/// from members that bounce.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostBounces {
    pub list: String,
    /// The post's Message-ID (or `id:STORE_ID` for a hand-off failure whose
    /// post is gone).
    pub post: String,
    /// The members whose bounce for this post was a policy rejection.
    pub policy_members: Vec<String>,
    /// Recipients of the post (the list's members with delivery on when the
    /// first bounce came).
    pub recipients: u64,
    /// Scoring for this post is suspended (the owners were alerted).
    pub suspended: bool,
    pub first_at: u64,
}

impl PostBounces {
    pub fn new(list: &str, post: &str, recipients: u64, now: u64) -> Self {
        PostBounces {
            list: list.to_string(),
            post: post.to_string(),
            policy_members: Vec::new(),
            recipients,
            suspended: false,
            first_at: now,
        }
    }
}
