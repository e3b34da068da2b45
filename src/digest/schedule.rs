//! When an issue is due, and which volume it belongs to: pure functions of
//! times (seconds, UTC), so the server's task and the tests that move a
//! clock read the same rules.
//!
//! A period is a calendar one, as Mailman counts it: an issue is due once
//! the oldest post waiting for it was received in an earlier day (week,
//! month) than now, so "a day of posts" becomes one issue the next day
//! whenever the task looks. The size threshold makes it due at once.

use crate::clock::DAY;

/// The calendar periods a digest can follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Calendar {
    /// UTC days.
    Day,
    /// ISO weeks (Monday to Sunday, UTC).
    Week,
    /// Calendar months.
    Month,
}

/// The (year, month 1–12) of a time. Howard Hinnant's civil_from_days, as
/// `notice::rfc5322_date` computes it for dates.
pub fn year_month(secs: u64) -> (i64, u32) {
    let z = (secs / DAY) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m as u32)
}

/// The number of the period `secs` falls in: equal numbers, same period.
pub fn period_of(calendar: Calendar, secs: u64) -> i64 {
    let days = (secs / DAY) as i64;
    match calendar {
        Calendar::Day => days,
        // 1970-01-01 was a Thursday: shifting by 3 makes weeks start on Monday.
        Calendar::Week => (days + 3).div_euclid(7),
        Calendar::Month => {
            let (y, m) = year_month(secs);
            y * 12 + i64::from(m) - 1
        }
    }
}

/// What the scheduler knows about a list's pending posts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    /// How many posts wait.
    pub posts: u64,
    /// Their size in bytes.
    pub bytes: u64,
    /// When the oldest was received (seconds), if any waits.
    pub oldest: Option<u64>,
}

/// Why an issue is due now, if it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// The period of the oldest pending post (or of the last issue, for an
    /// empty issue) is over.
    Period,
    /// The pending posts reached the size threshold.
    Size,
}

/// Whether an issue is due at `now`. `last_issue` is when the list's last
/// issue was cut (`None` before the first); `threshold_bytes` 0 means no
/// threshold; an empty issue is only due with `send_empty`, once per period
/// after the last issue (or after `since`, the time digests were enabled).
pub fn due(
    calendar: Calendar,
    pending: Pending,
    threshold_bytes: u64,
    send_empty: bool,
    last_issue: Option<u64>,
    since: u64,
    now: u64,
) -> Option<Due> {
    let now_period = period_of(calendar, now);
    match pending.oldest {
        Some(oldest) if pending.posts > 0 => {
            if threshold_bytes > 0 && pending.bytes >= threshold_bytes {
                Some(Due::Size)
            } else if period_of(calendar, oldest) < now_period {
                Some(Due::Period)
            } else {
                None
            }
        }
        _ if send_empty => {
            let from = last_issue.unwrap_or(since);
            (period_of(calendar, from) < now_period).then_some(Due::Period)
        }
        _ => None,
    }
}

/// The volume and issue number of the next issue cut at `now`, from the
/// list's current counters (`volume`, the last `issue` number, 0 before the
/// first) and when its last issue was cut: a new year starts a new volume
/// at issue 1.
pub fn next_number(volume: u32, issue: u32, last_issue: Option<u64>, now: u64) -> (u32, u32) {
    match last_issue {
        Some(last) if year_month(now).0 > year_month(last).0 => (volume.saturating_add(1), 1),
        _ => (volume.max(1), issue.saturating_add(1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-10-01 10:00:00 UTC, a Tuesday.
    const TUE: u64 = 1_727_776_800;

    fn pending(oldest: u64, bytes: u64) -> Pending {
        Pending {
            posts: 3,
            bytes,
            oldest: Some(oldest),
        }
    }

    #[test]
    fn calendar_periods() {
        assert_eq!(year_month(0), (1970, 1));
        assert_eq!(year_month(TUE), (2024, 10));
        assert_eq!(year_month(1_709_164_800), (2024, 2), "29 Feb 2024");
        // Monday 2024-09-30 starts the week of Tuesday 2024-10-01; Sunday
        // 2024-09-29 belongs to the week before.
        let monday = TUE - DAY - 10 * 3600;
        assert_eq!(
            period_of(Calendar::Week, monday),
            period_of(Calendar::Week, TUE)
        );
        assert_eq!(
            period_of(Calendar::Week, monday - 1) + 1,
            period_of(Calendar::Week, TUE)
        );
        assert_eq!(
            period_of(Calendar::Month, TUE) - 1,
            period_of(Calendar::Month, TUE - DAY)
        );
    }

    #[test]
    fn a_day_of_posts_is_due_the_next_day() {
        let p = pending(TUE, 10);
        assert_eq!(due(Calendar::Day, p, 0, false, None, 0, TUE + 3600), None);
        let midnight = TUE - TUE % DAY + DAY;
        assert_eq!(
            due(Calendar::Day, p, 0, false, None, 0, midnight),
            Some(Due::Period)
        );
        assert_eq!(due(Calendar::Week, p, 0, false, None, 0, midnight), None);
        assert_eq!(due(Calendar::Month, p, 0, false, None, 0, midnight), None);
    }

    #[test]
    fn the_size_threshold_makes_it_due_at_once() {
        let p = pending(TUE, 40_000);
        assert_eq!(
            due(Calendar::Month, p, 30_000, false, None, 0, TUE),
            Some(Due::Size)
        );
        assert_eq!(
            due(Calendar::Month, p, 0, false, None, 0, TUE),
            None,
            "0: none"
        );
    }

    #[test]
    fn empty_issues_only_when_asked_once_per_period() {
        let none = Pending {
            posts: 0,
            bytes: 0,
            oldest: None,
        };
        let next_day = TUE + DAY;
        assert_eq!(
            due(Calendar::Day, none, 0, false, Some(TUE), 0, next_day),
            None
        );
        assert_eq!(
            due(Calendar::Day, none, 0, true, Some(TUE), 0, next_day),
            Some(Due::Period)
        );
        assert_eq!(
            due(Calendar::Day, none, 0, true, Some(TUE), 0, TUE + 60),
            None
        );
        assert_eq!(
            due(Calendar::Day, none, 0, true, None, TUE, next_day),
            Some(Due::Period)
        );
    }

    #[test]
    fn a_new_year_starts_a_new_volume() {
        assert_eq!(next_number(0, 0, None, TUE), (1, 1));
        assert_eq!(next_number(1, 41, Some(TUE), TUE + DAY), (1, 42));
        let new_year = 1_735_689_600; // 2025-01-01
        assert_eq!(next_number(1, 42, Some(TUE), new_year), (2, 1));
        assert_eq!(next_number(5, 3, Some(new_year), new_year + DAY), (5, 4));
    }
}
