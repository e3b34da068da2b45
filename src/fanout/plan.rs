//! Pure planning: members cut into chunks grouped by domain, and a chunk cut
//! into SMTP transactions. Deterministic, so a recovered chunk replays exactly
//! the transactions the first worker planned and its cursor stays meaningful.

use crate::verp;

/// Cuts members (already grouped by domain, as the store returns them) into
/// chunks of at most `size`, without splitting a domain's run unless it alone
/// is larger than a chunk.
pub fn chunks(members: Vec<String>, size: usize) -> Vec<Vec<String>> {
    let mut chunker = Chunker::new(size);
    let mut out: Vec<Vec<String>> = members
        .into_iter()
        .filter_map(|m| chunker.push(m))
        .collect();
    out.extend(chunker.finish());
    out
}

/// [`chunks`] one member at a time, so that a list of any size is cut with
/// the memory of one chunk and one domain run of at most a chunk: the
/// planner streams a million members through it page by page.
///
/// A domain's members go into a chunk together when they fit; `run` holds
/// the current domain's members until that is known. Once the run alone
/// no longer fits beside the chunk being filled, the answer is known (that
/// chunk closes and the run starts the next), and the domain's further
/// members go straight into chunks.
pub struct Chunker {
    size: usize,
    /// The chunk being filled.
    current: Vec<String>,
    /// The current domain's members not yet placed in `current`.
    run: Vec<String>,
    /// Whether the current domain's run is being placed as it comes
    /// (`run` then stays empty).
    streaming: bool,
    /// The domain of the last member pushed.
    domain: Option<String>,
    /// Chunks completed and not yet returned: placing a run may complete
    /// two at once.
    ready: std::collections::VecDeque<Vec<String>>,
}

impl Chunker {
    pub fn new(size: usize) -> Chunker {
        Chunker {
            size: size.max(1),
            current: Vec::new(),
            run: Vec::new(),
            streaming: false,
            domain: None,
            ready: std::collections::VecDeque::new(),
        }
    }

    /// Adds the next member; returns a chunk when one is complete.
    pub fn push(&mut self, member: String) -> Option<Vec<String>> {
        if self.domain.as_deref() != Some(domain(&member)) {
            self.place_run();
            self.streaming = false;
            self.domain = Some(domain(&member).to_string());
        }
        if self.streaming {
            self.place(member);
        } else {
            self.run.push(member);
            if self.current.len() + self.run.len() > self.size {
                // The run does not fit beside the current chunk: close it
                // and place the run as it comes from here on.
                self.place_run();
                self.streaming = true;
            }
        }
        self.ready.pop_front()
    }

    /// The chunks left once every member was pushed.
    pub fn finish(mut self) -> Vec<Vec<String>> {
        self.place_run();
        let mut out: Vec<Vec<String>> = self.ready.drain(..).collect();
        if !self.current.is_empty() {
            out.push(std::mem::take(&mut self.current));
        }
        out
    }

    /// Puts the pending run into chunks: after the current chunk if it fits
    /// there, else from a new chunk.
    fn place_run(&mut self) {
        if self.current.len() + self.run.len() > self.size && !self.current.is_empty() {
            self.ready.push_back(std::mem::take(&mut self.current));
        }
        for m in std::mem::take(&mut self.run) {
            self.place(m);
        }
    }

    fn place(&mut self, member: String) {
        if self.current.len() == self.size {
            self.ready.push_back(std::mem::take(&mut self.current));
        }
        self.current.push(member);
    }
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

    /// The cut as it was written before the chunker streamed (the whole
    /// list at once): the chunker must give the same chunks.
    fn reference(members: Vec<String>, size: usize) -> Vec<Vec<String>> {
        let size = size.max(1);
        let (mut out, mut current, mut run) = (Vec::new(), Vec::new(), Vec::<String>::new());
        let flush =
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
            if run.last().is_some_and(|l| domain(l) != domain(&m)) {
                flush(&mut run, &mut current, &mut out);
            }
            run.push(m);
        }
        flush(&mut run, &mut current, &mut out);
        if !current.is_empty() {
            out.push(current);
        }
        out
    }

    #[test]
    fn the_streaming_chunker_cuts_as_the_whole_list_cut() {
        let mut seed = 7u64;
        let mut next = |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        for _ in 0..300 {
            let domains: Vec<(String, usize)> = (0..next(8) + 1)
                .map(|d| (format!("d{d}.org"), next(25) as usize + 1))
                .collect();
            let spec: Vec<(&str, usize)> = domains.iter().map(|(d, n)| (d.as_str(), *n)).collect();
            let size = next(12) as usize + 1;
            let m = members(&spec);
            assert_eq!(
                chunks(m.clone(), size),
                reference(m, size),
                "{spec:?} size {size}"
            );
        }
    }

    #[test]
    fn the_chunker_holds_at_most_a_chunk_of_one_domain() {
        let mut c = Chunker::new(10);
        let mut out = Vec::new();
        for i in 0..1000 {
            out.extend(c.push(format!("u{i}@big.org")));
            assert!(c.run.len() <= 10 && c.current.len() <= 10 && c.ready.len() <= 2);
        }
        out.extend(c.finish());
        assert_eq!(out.len(), 100);
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
