//! Bounce scoring, Mailman-compatible but aware of reasons: the pure rules,
//! with "now" passed in so that tests can move through days.
//!
//! * a hard failure scores 1, a soft one 0.5, at most 1 per member per day
//!   (a soft bounce followed by a hard one on the same day adds the 0.5
//!   difference);
//! * policy, spam, DMARC and feedback reports never count;
//! * a score whose last bounce is older than `bounce_info_stale_after_secs`
//!   starts again from zero;
//! * at `bounce_score_threshold` delivery is disabled; the member then gets a
//!   warning at once and every `bounce_warning_interval_secs` until
//!   `bounce_warnings` were sent, and is removed one interval after the last.

use super::Reason;
use crate::clock::day_of;
use crate::model::ListSettings;
pub use crate::model::{BounceState, PostBounces};

/// One failure to score.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub reason: Reason,
    pub status: Option<String>,
    pub hard: bool,
}

/// What a failure did to a record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scored {
    /// A policy/spam/DMARC or feedback report: says nothing about the member.
    NotCounted,
    /// The member already had a full score today.
    SameDay,
    Added {
        score: f64,
    },
    /// The score reached the threshold: delivery is to be disabled now.
    Disable {
        score: f64,
    },
    /// Delivery is already disabled; only the last bounce was updated.
    AlreadyDisabled,
    /// The bounce is for a post whose scoring is suspended (too many policy
    /// rejections): not counted.
    PostSuspended,
}

/// What the periodic pass has to do for a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    Nothing,
    Warn,
    Remove,
    /// The score is stale and delivery enabled: the record can go.
    Forget,
}

/// The name serde gives a reason (`user_unknown`, `policy`…).
pub fn reason_name(r: Reason) -> String {
    serde_json::to_value(r)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{r:?}"))
}

pub fn weight(hard: bool) -> f64 {
    if hard {
        1.0
    } else {
        0.5
    }
}

/// The scoring rules on a member's [`BounceState`] (the record lives in the
/// model; the rules live here).
pub trait Scoring {
    /// Scores one failure that came through `list` (whose `settings` apply).
    fn record(&mut self, f: &Failure, list: &str, settings: &ListSettings, now: u64) -> Scored;
    /// What the periodic pass has to do for the record at `now`.
    fn due(&self, settings: &ListSettings, now: u64) -> Due;
    /// Notes a warning sent at `now`.
    fn warned(&mut self, now: u64);
}

impl Scoring for BounceState {
    fn record(&mut self, f: &Failure, list: &str, settings: &ListSettings, now: u64) -> Scored {
        if !f.reason.counts_against_member() {
            return Scored::NotCounted;
        }
        if !self.disabled
            && self.bounces > 0
            && now.saturating_sub(self.last_bounce) > settings.bounce_info_stale_after_secs
        {
            self.score = 0.0;
            self.scored_that_day = 0.0;
            self.first_bounce = now;
        }
        self.bounces += 1;
        self.last_bounce = now;
        self.last_reason = reason_name(f.reason);
        self.last_status = f.status.clone();
        self.last_hard = f.hard;
        self.list = list.to_string();
        if self.disabled {
            return Scored::AlreadyDisabled;
        }
        let day = day_of(now);
        if day != self.scored_day {
            self.scored_day = day;
            self.scored_that_day = 0.0;
        }
        let add = (weight(f.hard) - self.scored_that_day).max(0.0);
        if add == 0.0 {
            return Scored::SameDay;
        }
        self.score += add;
        self.scored_that_day += add;
        if self.score >= settings.bounce_score_threshold {
            self.disabled = true;
            self.disabled_at = Some(now);
            Scored::Disable { score: self.score }
        } else {
            Scored::Added { score: self.score }
        }
    }

    fn due(&self, settings: &ListSettings, now: u64) -> Due {
        let interval = settings.bounce_warning_interval_secs;
        if self.disabled {
            if self.warnings_sent >= settings.bounce_warnings {
                let since = self.last_warning_at.or(self.disabled_at).unwrap_or(0);
                if settings.bounce_warnings == 0 || now >= since.saturating_add(interval) {
                    return Due::Remove;
                }
                return Due::Nothing;
            }
            return match self.last_warning_at {
                None => Due::Warn,
                Some(t) if now >= t.saturating_add(interval) => Due::Warn,
                Some(_) => Due::Nothing,
            };
        }
        if now.saturating_sub(self.last_bounce) > settings.bounce_info_stale_after_secs {
            return Due::Forget;
        }
        Due::Nothing
    }

    fn warned(&mut self, now: u64) {
        self.warnings_sent += 1;
        self.last_warning_at = Some(now);
    }
}

/// The suspension rule on a post's [`PostBounces`].
pub trait PolicyShare {
    /// Counts a member's policy bounce; `true` when this suspends the post
    /// (more than `share` of its recipients bounced for policy).
    fn add_policy(&mut self, member: &str, share: f64) -> bool;
}

impl PolicyShare for PostBounces {
    fn add_policy(&mut self, member: &str, share: f64) -> bool {
        if !self.policy_members.iter().any(|m| m == member) {
            self.policy_members.push(member.to_string());
        }
        if !self.suspended
            && self.policy_members.len() as f64 > share * self.recipients.max(1) as f64
        {
            self.suspended = true;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::DAY;

    const T0: u64 = 1_700_000_000 / DAY * DAY + 3600;

    fn hard() -> Failure {
        Failure {
            reason: Reason::UserUnknown,
            status: Some("5.1.1".into()),
            hard: true,
        }
    }

    fn soft() -> Failure {
        Failure {
            reason: Reason::MailboxFull,
            status: Some("5.2.2".into()),
            hard: false,
        }
    }

    fn state() -> BounceState {
        BounceState::new("l@x.org", "bob@example.com", "l@x.org", T0)
    }

    #[test]
    fn one_score_per_day_hard_one_soft_half() {
        let s = ListSettings::default();
        let mut b = state();
        assert_eq!(
            b.record(&soft(), "l@x.org", &s, T0),
            Scored::Added { score: 0.5 }
        );
        assert_eq!(b.record(&soft(), "l@x.org", &s, T0 + 60), Scored::SameDay);
        // a hard bounce the same day tops the day up to 1, no more
        assert_eq!(
            b.record(&hard(), "l@x.org", &s, T0 + 120),
            Scored::Added { score: 1.0 }
        );
        assert_eq!(b.record(&hard(), "l@x.org", &s, T0 + 180), Scored::SameDay);
        assert_eq!(
            b.record(&hard(), "l@x.org", &s, T0 + DAY),
            Scored::Added { score: 2.0 }
        );
        assert_eq!(b.bounces, 5);
        assert_eq!(b.last_reason, "user_unknown");
    }

    #[test]
    fn stale_scores_start_again() {
        let s = ListSettings::default();
        let mut b = state();
        for d in 0..3 {
            b.record(&hard(), "l@x.org", &s, T0 + d * DAY);
        }
        assert_eq!(b.score, 3.0);
        assert_eq!(b.due(&s, T0 + 2 * DAY + 7 * DAY), Due::Nothing);
        assert_eq!(b.due(&s, T0 + 2 * DAY + 7 * DAY + 1), Due::Forget);
        let later = T0 + 2 * DAY + 8 * DAY;
        assert_eq!(
            b.record(&hard(), "l@x.org", &s, later),
            Scored::Added { score: 1.0 }
        );
    }

    #[test]
    fn threshold_disables_then_warnings_then_removal() {
        let s = ListSettings::default();
        let mut b = state();
        for d in 0..4 {
            assert!(matches!(
                b.record(&hard(), "l@x.org", &s, T0 + d * DAY),
                Scored::Added { .. }
            ));
        }
        let t = T0 + 4 * DAY;
        assert_eq!(
            b.record(&hard(), "l@x.org", &s, t),
            Scored::Disable { score: 5.0 }
        );
        assert!(b.disabled);
        assert_eq!(
            b.record(&hard(), "l@x.org", &s, t + DAY),
            Scored::AlreadyDisabled
        );
        assert_eq!(b.score, 5.0);
        // a disabled record never goes stale
        assert_eq!(b.due(&s, t), Due::Warn);
        b.warned(t);
        assert_eq!(b.due(&s, t + 7 * DAY - 1), Due::Nothing);
        assert_eq!(b.due(&s, t + 7 * DAY), Due::Warn);
        b.warned(t + 7 * DAY);
        assert_eq!(b.due(&s, t + 14 * DAY), Due::Warn);
        b.warned(t + 14 * DAY);
        assert_eq!(b.warnings_sent, 3);
        assert_eq!(b.due(&s, t + 21 * DAY - 1), Due::Nothing);
        assert_eq!(b.due(&s, t + 21 * DAY), Due::Remove);
        assert_eq!(b.due(&s, t + 100 * DAY), Due::Remove);
    }

    #[test]
    fn zero_warnings_remove_at_once_and_threshold_is_a_setting() {
        let s = ListSettings {
            bounce_warnings: 0,
            bounce_score_threshold: 1.5,
            ..Default::default()
        };
        let mut b = state();
        b.record(&soft(), "l@x.org", &s, T0);
        b.record(&soft(), "l@x.org", &s, T0 + DAY);
        assert_eq!(
            b.record(&soft(), "l@x.org", &s, T0 + 2 * DAY),
            Scored::Disable { score: 1.5 }
        );
        assert_eq!(b.due(&s, T0 + 2 * DAY), Due::Remove);
    }

    #[test]
    fn policy_and_feedback_never_count() {
        let s = ListSettings::default();
        let mut b = state();
        for (i, reason) in [Reason::Policy, Reason::Feedback].into_iter().enumerate() {
            let f = Failure {
                reason,
                status: Some("5.7.1".into()),
                hard: true,
            };
            for d in 0..10 {
                assert_eq!(
                    b.record(&f, "l@x.org", &s, T0 + (i as u64 * 10 + d) * DAY),
                    Scored::NotCounted
                );
            }
        }
        assert_eq!(b, state());
    }

    #[test]
    fn policy_share_suspends_a_post() {
        let mut p = PostBounces::new("l@x.org", "post@x", 100, T0);
        for i in 0..10 {
            assert!(!p.add_policy(&format!("m{i}@x.org"), 0.1), "{i}");
        }
        // the same member again does not count twice
        assert!(!p.add_policy("m0@x.org", 0.1));
        assert!(p.add_policy("m10@x.org", 0.1));
        assert!(p.suspended);
        assert!(
            !p.add_policy("m11@x.org", 0.1),
            "suspends (and alerts) once"
        );
    }
}
