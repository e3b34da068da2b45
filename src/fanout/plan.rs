//! Pure planning: members cut into chunks grouped by domain, and a chunk cut
//! into SMTP transactions. Deterministic, so a recovered chunk replays exactly
//! the transactions the first worker planned and its cursor stays meaningful.

use crate::verp;

/// Cuts members (already grouped by domain, as the store returns them) into
/// chunks of at most `size`, without splitting a domain's run unless it alone
/// is larger than a chunk.
pub fn chunks(members: Vec<String>, size: usize) -> Vec<Vec<String>> {
    let size = size.max(1);
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut run: Vec<String> = Vec::new();
    let flush_run =
        |run: &mut Vec<String>, current: &mut Vec<String>, out: &mut Vec<Vec<String>>| {
            if current.len() + run.len() > size && !current.is_empty() {
                out.push(std::mem::take(current));
            }
            for m in run.drain(..) {
                if current.len() == size {
                    out.push(std::mem::take(current));
                }
                current.push(m);
            }
        };
    for m in members {
        if run.last().is_some_and(|last| domain(last) != domain(&m)) {
            flush_run(&mut run, &mut current, &mut out);
        }
        run.push(m);
    }
    flush_run(&mut run, &mut current, &mut out);
    if !current.is_empty() {
        out.push(current);
    }
    out
}

fn domain(address: &str) -> &str {
    address.rsplit_once('@').map_or("", |(_, d)| d)
}

/// One SMTP transaction of a chunk's plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Txn {
    /// A VERP transaction has exactly one recipient and its own sender.
    pub verp: bool,
    pub rcpts: Vec<String>,
}

/// The transactions for `members` of a post: per domain, the batched
/// (non-VERP) members in transactions of up to `max_rcpt`, then one
/// transaction per VERP member.
pub fn transactions(members: &[String], seq: u64, verp_percent: u8, max_rcpt: usize) -> Vec<Txn> {
    let max_rcpt = max_rcpt.max(1);
    let mut out = Vec::new();
    let mut i = 0;
    while i < members.len() {
        let d = domain(&members[i]);
        let end = members[i..]
            .iter()
            .position(|m| domain(m) != d)
            .map_or(members.len(), |n| i + n);
        let (verp, batch): (Vec<&String>, Vec<&String>) = members[i..end]
            .iter()
            .partition(|m| verp::selected(seq, verp_percent, &m.to_lowercase()));
        for group in batch.chunks(max_rcpt) {
            out.push(Txn {
                verp: false,
                rcpts: group.iter().map(|s| s.to_string()).collect(),
            });
        }
        out.extend(verp.into_iter().map(|m| Txn {
            verp: true,
            rcpts: vec![m.clone()],
        }));
        i = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(spec: &[(&str, usize)]) -> Vec<String> {
        spec.iter()
            .flat_map(|(d, n)| (0..*n).map(move |i| format!("u{i}@{d}")))
            .collect()
    }

    #[test]
    fn chunks_keep_domains_together() {
        let c = chunks(members(&[("a.org", 3), ("b.org", 4), ("c.org", 2)]), 5);
        assert_eq!(c.iter().map(Vec::len).collect::<Vec<_>>(), vec![3, 4, 2]);
        let c = chunks(members(&[("a.org", 12)]), 5);
        assert_eq!(c.iter().map(Vec::len).collect::<Vec<_>>(), vec![5, 5, 2]);
        let c = chunks(members(&[("a.org", 2), ("b.org", 2), ("c.org", 1)]), 5);
        assert_eq!(c.len(), 1);
        assert!(chunks(Vec::new(), 5).is_empty());
        let all = members(&[("a.org", 7), ("b.org", 9)]);
        assert_eq!(
            chunks(all.clone(), 4).concat(),
            all,
            "nothing lost or reordered"
        );
    }

    #[test]
    fn transactions_batch_per_domain_and_split_verp() {
        let m = members(&[("a.org", 250), ("b.org", 3)]);
        let t = transactions(&m, 0, 0, 100);
        assert_eq!(
            t.iter().map(|t| t.rcpts.len()).collect::<Vec<_>>(),
            vec![100, 100, 50, 3]
        );
        assert!(t.iter().all(|t| !t.verp));
        let t = transactions(&m, 0, 100, 100);
        assert_eq!(t.len(), m.len());
        assert!(t.iter().all(|t| t.verp && t.rcpts.len() == 1));
        let t = transactions(&m, 3, 30, 100);
        let verp = t.iter().filter(|t| t.verp).count();
        assert!((40..110).contains(&verp), "{verp}");
        assert_eq!(t.iter().map(|t| t.rcpts.len()).sum::<usize>(), m.len());
        assert_eq!(t, transactions(&m, 3, 30, 100), "deterministic");
    }
}
