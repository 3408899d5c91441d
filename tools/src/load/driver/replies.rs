//! Checking replies: each complete reply in a connection's input answers
//! its oldest request in flight; a match is timed from when that request
//! was sent (or due), anything else is a mismatch, and the server's
//! refusal (`ERR server busy`) closes the connection.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{Driver, Phase};
use crate::load::payload::{busy, is_reply_to, split_reply};

impl Driver<'_> {
    /// Checks every complete reply in the input buffer.
    pub(super) fn replies(&mut self, i: usize) {
        let now = Instant::now();
        // Whatever was counted before this batch belongs to the intervals
        // that ended before `now`.
        self.series.advance(now, &self.counts);
        let protocol = self.config.protocol;
        let mut consumed = 0;
        let mut replies = 0;
        loop {
            let conn = &mut self.conns[i];
            let input = &conn.input[consumed..];
            if conn.answered == 0
                && let Some(refusal) = busy(input, protocol)
            {
                self.counts.rejected += 1;
                self.progress.errors.fetch_add(1, Ordering::Relaxed);
                conn.in_flight.clear();
                conn.phase = Phase::Closing;
                conn.since = now;
                consumed += refusal;
                break;
            }
            let Some((body, used)) = split_reply(input, protocol) else {
                break;
            };
            let body = &input[body];
            consumed += used;
            let Some(sent) = conn.in_flight.pop_front() else {
                self.counts.mismatch += 1;
                self.progress.errors.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let expected = (conn.id, conn.answered, self.config.payload);
            if is_reply_to(
                body,
                protocol,
                expected.0,
                expected.1,
                expected.2,
                &mut self.scratch,
            ) {
                let nanos = u64::try_from(now.duration_since(sent).as_nanos()).unwrap_or(u64::MAX);
                self.series.record(nanos);
                self.counts.replies += 1;
                replies += 1;
            } else {
                self.counts.mismatch += 1;
                self.progress.errors.fetch_add(1, Ordering::Relaxed);
            }
            conn.answered += 1;
            if self.config.connect_per_request {
                // One request per connection, then close as a short-lived
                // client does: end our side (the request went out whole,
                // as its reply came) and wait for the server's close.
                if let Some(stream) = &conn.stream {
                    let _ = stream.shutdown(std::net::Shutdown::Write);
                }
                conn.phase = Phase::Closing;
                conn.since = now;
                break;
            }
        }
        let conn = &mut self.conns[i];
        conn.input.drain(..consumed.min(conn.input.len()));
        if replies > 0 {
            self.progress.replies.fetch_add(replies, Ordering::Relaxed);
        }
    }
}
