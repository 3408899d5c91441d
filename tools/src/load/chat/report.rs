//! What a chat load run saw, added up over its threads, and how it is
//! printed.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use linepool::logfmt;

use super::{ChatLoad, Tally};

/// A line is not owed to a member that was away (or whose sender was) this
/// close to when it was said, in microseconds: its connection was ending
/// or just made.
const AWAY_MARGIN: u64 = 250_000;

/// What a chat load run saw.
#[derive(Debug)]
pub struct ChatReport {
    /// Members in the room.
    pub members: usize,
    /// Addresses they were spread over.
    pub targets: usize,
    /// Lines said.
    pub sent: u64,
    /// Deliveries owed: every line to every other member present.
    pub expected: u64,
    /// Deliveries that came, once each.
    pub delivered: u64,
    /// Owed deliveries that never came.
    pub lost: u64,
    /// Deliveries not owed: the member, or the sender, was reconnecting.
    pub excused: u64,
    /// Deliveries that came more than once.
    pub duplicated: u64,
    /// Deliveries that came after a later line of the same sender.
    pub reordered: u64,
    /// Lines heard by every other member they were owed to.
    pub delivered_to_all: u64,
    /// Lines a member heard from itself.
    pub echoed: u64,
    /// Members that had to connect again.
    pub reconnects: u64,
    /// Owed deliveries lost, by the second (from the start) they were said.
    pub lost_by_second: BTreeMap<u64, u64>,
    /// From the first line said to the end of the wait for the last.
    pub elapsed: Duration,
    /// Delivery latency, microseconds.
    pub latency: Histogram<u64>,
    /// When the lines started, microseconds since the epoch.
    pub begin: u64,
}

/// A histogram with fixed, valid bounds (which cannot fail to be made).
pub(super) fn histogram() -> Histogram<u64> {
    Histogram::new(3).unwrap_or_else(|_| histogram())
}

impl ChatReport {
    /// Whether every owed line reached every member exactly once, in order.
    pub fn clean(&self) -> bool {
        self.sent > 0
            && self.lost == 0
            && self.duplicated == 0
            && self.reordered == 0
            && self.echoed == 0
    }

    /// Adds up what the threads counted; `begin` is when lines started,
    /// in microseconds since the epoch.
    pub(super) fn merge(
        load: &ChatLoad,
        tallies: Vec<Tally>,
        begin: u64,
        elapsed: Duration,
    ) -> Self {
        let n = load.members;
        let mut report = ChatReport {
            members: n,
            targets: load.targets.len(),
            sent: 0,
            expected: 0,
            delivered: 0,
            lost: 0,
            excused: 0,
            duplicated: 0,
            reordered: 0,
            delivered_to_all: 0,
            echoed: 0,
            reconnects: 0,
            lost_by_second: BTreeMap::new(),
            elapsed,
            latency: histogram(),
            begin,
        };
        // Every member's lines (send times) and absences, by member id.
        let mut said: Vec<&[u64]> = vec![&[]; n];
        let mut away: Vec<&[(u64, u64)]> = vec![&[]; n];
        for tally in &tallies {
            for m in &tally.members {
                said[m.id] = &m.said_at;
                away[m.id] = &m.away;
            }
        }
        let absent = |id: usize, at: u64| {
            away[id]
                .iter()
                .any(|&(from, to)| at + AWAY_MARGIN >= from && at <= to.saturating_add(AWAY_MARGIN))
        };
        let mut lost_lines = vec![Vec::<bool>::new(); n];
        for (s, times) in said.iter().enumerate() {
            lost_lines[s] = vec![false; times.len()];
            report.sent += times.len() as u64;
        }
        for tally in &tallies {
            report.duplicated += tally.duplicated;
            report.reordered += tally.reordered;
            report.echoed += tally.echoed;
            let _ = report.latency.add(&tally.latency);
            for m in &tally.members {
                report.reconnects += m.reconnects;
                for s in (0..n).filter(|&s| s != m.id) {
                    let heard_up_to = m.next[s] as usize;
                    let skipped = m.skipped.get(&s);
                    for (seq, &at) in said[s].iter().enumerate() {
                        let missed = seq >= heard_up_to
                            || skipped.is_some_and(|k| k.contains(&(seq as u64)));
                        if absent(m.id, at) || absent(s, at) {
                            report.excused += u64::from(missed);
                            continue;
                        }
                        report.expected += 1;
                        if missed {
                            report.lost += 1;
                            lost_lines[s][seq] = true;
                            let second = at.saturating_sub(begin) / 1_000_000;
                            *report.lost_by_second.entry(second).or_default() += 1;
                        } else {
                            report.delivered += 1;
                        }
                    }
                }
            }
        }
        report.delivered_to_all = lost_lines.iter().flatten().filter(|&&lost| !lost).count() as u64;
        report
    }

    /// The report as one JSON object.
    pub fn to_json(&self) -> String {
        let q = |p: f64| self.latency.value_at_quantile(p);
        serde_json::json!({
            "members": self.members,
            "targets": self.targets,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "sent": self.sent,
            "expected": self.expected,
            "delivered": self.delivered,
            "lost": self.lost,
            "excused": self.excused,
            "duplicated": self.duplicated,
            "reordered": self.reordered,
            "echoed": self.echoed,
            "reconnects": self.reconnects,
            "delivered_to_all": self.delivered_to_all,
            "fanout_per_s": self.delivered as f64 / self.elapsed.as_secs_f64().max(1e-9),
            "latency_us": {"p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "p999": q(0.999), "max": self.latency.max()},
            "lost_by_second": self.lost_by_second,
            "begin_unix_us": self.begin,
        })
        .to_string()
    }
}

impl fmt::Display for ChatReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let pct = 100.0 * self.delivered_to_all as f64 / self.sent.max(1) as f64;
        let q = |p: f64| self.latency.value_at_quantile(p) as f64 / 1000.0;
        writeln!(
            f,
            "chat room  {} over {}, {:.1} s, {}",
            logfmt::count(self.members as u64, "member"),
            match self.targets {
                1 => "1 address".to_string(),
                n => format!("{n} addresses"),
            },
            secs,
            logfmt::count(self.reconnects, "reconnect")
        )?;
        writeln!(
            f,
            "lines      sent {}  delivered to all {} ({pct:.3} %)",
            self.sent, self.delivered_to_all
        )?;
        writeln!(
            f,
            "deliveries owed {}  delivered {}  lost {}  duplicated {}  reordered {}  echoed {}  (not owed, reconnecting: {})",
            self.expected,
            self.delivered,
            self.lost,
            self.duplicated,
            self.reordered,
            self.echoed,
            self.excused
        )?;
        writeln!(
            f,
            "fan-out    {:.0} deliveries/s",
            self.delivered as f64 / secs
        )?;
        write!(
            f,
            "latency ms p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
            q(0.5),
            q(0.9),
            q(0.99),
            q(0.999),
            self.latency.max() as f64 / 1000.0
        )?;
        if !self.lost_by_second.is_empty() {
            let by: Vec<String> = self
                .lost_by_second
                .iter()
                .map(|(s, n)| format!("{s}s:{n}"))
                .collect();
            write!(f, "\nlost by the second they were said: {}", by.join(" "))?;
        }
        Ok(())
    }
}
