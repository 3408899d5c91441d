//! `linepool load --protocol chat`: a room of members that each say lines
//! on a schedule and check what the others said. Every line carries its
//! sender's number, its own number and when it was said, so each member
//! checks that it hears every other member's lines exactly once and in
//! order, and how long each took. Members may be spread over several
//! addresses (the instances of one room on a chat bus). A member whose
//! connection ends connects again (through a balancer, to another
//! instance); lines said around its absence are not owed to it.
//!
//! A few `mio` event-loop threads drive the members; each keeps its own
//! counts, added up at the end (`report.rs`).

mod report;

use std::collections::{BTreeSet, HashMap};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Barrier, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

pub use report::ChatReport;

/// How often the loop looks at the clock when nothing happens.
const TICK: Duration = Duration::from_millis(5);

/// How long the room must stay quiet before the lines start: joins are
/// still being announced until it does.
const SETTLE_QUIET: Duration = Duration::from_millis(500);

/// How long the last deliveries are awaited after the last line.
const LAST_WAIT: Duration = Duration::from_secs(3);

/// The shape of a chat load run.
#[derive(Clone, Debug)]
pub struct ChatLoad {
    /// Where members connect, in turn.
    pub targets: Vec<SocketAddr>,
    /// Members in the room.
    pub members: usize,
    /// Lines per second each member says.
    pub rate: f64,
    /// How long members speak.
    pub duration: Duration,
    /// Length of each line said, newline not counted (at least what the
    /// numbers and the time take).
    pub payload: usize,
    /// How long a connect or a welcome may take.
    pub timeout: Duration,
    /// Event-loop threads.
    pub threads: usize,
}

/// One member: its socket and what it said, heard and missed.
struct Member {
    id: usize,
    addr: SocketAddr,
    stream: TcpStream,
    out: Vec<u8>,
    input: Vec<u8>,
    welcomed: bool,
    /// When its lines are due: the next one's time.
    due: Instant,
    /// When each of its lines was said, microseconds since the epoch.
    said_at: Vec<u64>,
    /// Per sender: the next number expected.
    next: Vec<u64>,
    /// Per sender: numbers skipped and not heard yet.
    skipped: HashMap<usize, BTreeSet<u64>>,
    /// Times it was away (connection ended until welcomed again), in
    /// microseconds since the epoch.
    away: Vec<(u64, u64)>,
    reconnects: u64,
}

/// What one thread counted.
struct Tally {
    members: Vec<Member>,
    duplicated: u64,
    reordered: u64,
    echoed: u64,
    latency: Histogram<u64>,
    last_join: Instant,
}

fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A member's connection to `addr`, its name sent.
fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let stream = std::net::TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_nodelay(true)?;
    stream.set_nonblocking(true)?;
    Ok(TcpStream::from_std(stream))
}

/// The start line shared by the threads: set once every member has joined.
struct Start {
    joined: Barrier,
    at: Mutex<Option<(Instant, u64)>>,
    set: Condvar,
}

/// Runs the room and returns what it saw. Setting `stop` ends the lines
/// early.
pub fn run(load: &ChatLoad, stop: &AtomicBool) -> io::Result<ChatReport> {
    if load.targets.is_empty() || load.members < 2 {
        return Err(io::Error::other("a chat room needs two members at least"));
    }
    let threads = load.threads.clamp(1, load.members);
    let start = Start {
        joined: Barrier::new(threads + 1),
        at: Mutex::new(None),
        set: Condvar::new(),
    };
    let (tallies, begin, elapsed) = thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let ids: Vec<usize> = (t..load.members).step_by(threads).collect();
                let start = &start;
                scope.spawn(move || drive(load, &ids, start, stop))
            })
            .collect();
        start.joined.wait();
        let begin = (Instant::now(), unix_micros());
        *start.at.lock().unwrap_or_else(|e| e.into_inner()) = Some(begin);
        start.set.notify_all();
        let tallies = handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| io::Error::other("a chat load thread panicked"))?
            })
            .collect::<io::Result<Vec<_>>>()?;
        // The rate counts the time lines were said, not the last wait.
        let elapsed = begin.0.elapsed().saturating_sub(LAST_WAIT);
        io::Result::Ok((tallies, begin.1, elapsed))
    })?;
    Ok(ChatReport::merge(load, tallies, begin, elapsed))
}

/// One thread: joins its members, waits for the others, speaks, listens.
fn drive(load: &ChatLoad, ids: &[usize], start: &Start, stop: &AtomicBool) -> io::Result<Tally> {
    // Every thread meets the others at the start line even when it failed
    // to join its members, so that none waits there for ever.
    let joined = join(load, ids);
    start.joined.wait();
    let (mut tally, mut loop_) = joined?;
    let (begin, _) = {
        let mut at = start.at.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(begin) = *at {
                break begin;
            }
            at = start.set.wait(at).unwrap_or_else(|e| e.into_inner());
        }
    };
    let interval = Duration::from_secs_f64(1.0 / load.rate);
    let count = tally.members.len().max(1) as f64;
    for (i, m) in tally.members.iter_mut().enumerate() {
        // Spread the members' first lines over one interval.
        m.due = begin + interval.mul_f64(i as f64 / count);
    }
    let pad = vec![b'x'; load.payload];
    while Instant::now() < begin + load.duration && !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        for m in tally.members.iter_mut() {
            while m.due <= now {
                m.due += interval;
                // A member away says nothing meanwhile.
                if m.welcomed {
                    say(m, &pad)?;
                }
            }
            flush(m)?;
        }
        let next = tally.members.iter().map(|m| m.due).min().unwrap_or(now);
        let wait = next.saturating_duration_since(Instant::now()).min(TICK);
        loop_.pump(&mut tally, wait)?;
    }
    let spoken = Instant::now();
    while spoken.elapsed() < LAST_WAIT {
        loop_.pump(&mut tally, TICK)?;
    }
    Ok(tally)
}

/// Connects and names the members `ids`, and waits until every one is
/// welcomed and the room has stopped announcing joins.
fn join(load: &ChatLoad, ids: &[usize]) -> io::Result<(Tally, Loop)> {
    let poll = Poll::new()?;
    let n = load.members;
    let mut tally = Tally {
        members: Vec::with_capacity(ids.len()),
        duplicated: 0,
        reordered: 0,
        echoed: 0,
        latency: report::histogram(),
        last_join: Instant::now(),
    };
    for (i, &id) in ids.iter().enumerate() {
        let addr = load.targets[id % load.targets.len()];
        let mut stream = connect(addr, load.timeout)?;
        let interest = Interest::READABLE | Interest::WRITABLE;
        poll.registry().register(&mut stream, Token(i), interest)?;
        tally.members.push(Member {
            id,
            addr,
            stream,
            out: format!("m{id}\n").into_bytes(),
            input: Vec::new(),
            welcomed: false,
            due: Instant::now(),
            said_at: Vec::new(),
            next: vec![0; n],
            skipped: HashMap::new(),
            away: Vec::new(),
            reconnects: 0,
        });
    }
    let mut loop_ = Loop {
        poll,
        events: Events::with_capacity(1024),
        buf: vec![0u8; 64 * 1024],
        timeout: load.timeout,
    };
    loop_.welcome(&mut tally, load.timeout * 5)?;
    Ok((tally, loop_))
}

/// Queues `m`'s next line: `<id> <number> <micros> xxx…`.
fn say(m: &mut Member, pad: &[u8]) -> io::Result<()> {
    let at = unix_micros();
    let head = format!("{} {} {at} ", m.id, m.said_at.len());
    m.out.extend_from_slice(head.as_bytes());
    m.out
        .extend_from_slice(&pad[..pad.len().saturating_sub(head.len())]);
    m.out.push(b'\n');
    m.said_at.push(at);
    Ok(())
}

/// Writes what `m` owes, as far as its socket takes it. A connection
/// that is gone is left to the reader to find.
fn flush(m: &mut Member) -> io::Result<()> {
    while !m.out.is_empty() {
        match m.stream.write(&m.out) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                m.out.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Ok(()),
        }
    }
    Ok(())
}

/// The thread's poller and buffers.
struct Loop {
    poll: Poll,
    events: Events,
    buf: Vec<u8>,
    timeout: Duration,
}

impl Loop {
    /// Waits until every member is welcomed and no join has been announced
    /// for [`SETTLE_QUIET`], for `within` at most.
    fn welcome(&mut self, tally: &mut Tally, within: Duration) -> io::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            self.pump(tally, TICK)?;
            let welcomed = tally.members.iter().filter(|m| m.welcomed).count();
            if welcomed == tally.members.len() && tally.last_join.elapsed() >= SETTLE_QUIET {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "{welcomed} of {} members welcomed in {within:?}",
                    tally.members.len()
                )));
            }
        }
    }

    /// Waits up to `wait` for events, reads what came and checks it; a
    /// member whose connection ended connects again.
    fn pump(&mut self, tally: &mut Tally, wait: Duration) -> io::Result<()> {
        self.poll.poll(&mut self.events, Some(wait))?;
        let ready: Vec<(usize, bool)> = self
            .events
            .iter()
            .map(|e| (e.token().0, e.is_writable()))
            .collect();
        for (i, writable) in ready {
            if writable {
                flush(&mut tally.members[i])?;
            }
            let mut ended = false;
            loop {
                match tally.members[i].stream.read(&mut self.buf) {
                    Ok(0) => {
                        ended = true;
                        break;
                    }
                    Ok(n) => tally.members[i].input.extend_from_slice(&self.buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        ended = true;
                        break;
                    }
                }
            }
            let input = std::mem::take(&mut tally.members[i].input);
            let mut from = 0;
            while let Some(end) = memchr::memchr(b'\n', &input[from..]) {
                hear(i, &input[from..from + end], tally);
                from += end + 1;
            }
            tally.members[i].input = input[from..].to_vec();
            if ended {
                self.reconnect(i, tally)?;
            }
        }
        Ok(())
    }

    /// Member `i`'s connection ended: it connects again (to the same
    /// address: through a balancer, another instance) and joins again.
    fn reconnect(&mut self, i: usize, tally: &mut Tally) -> io::Result<()> {
        let m = &mut tally.members[i];
        let _ = self.poll.registry().deregister(&mut m.stream);
        m.welcomed = false;
        m.reconnects += 1;
        m.away.push((unix_micros(), u64::MAX));
        m.input.clear();
        m.out = format!("m{}\n", m.id).into_bytes();
        let until = Instant::now() + self.timeout;
        let mut stream = loop {
            match connect(m.addr, self.timeout) {
                Ok(stream) => break stream,
                Err(e) if Instant::now() >= until => return Err(e),
                Err(_) => thread::sleep(Duration::from_millis(20)),
            }
        };
        self.poll.registry().register(
            &mut stream,
            Token(i),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        m.stream = stream;
        Ok(())
    }
}

/// Checks one line member `i` of the thread heard.
fn hear(i: usize, line: &[u8], tally: &mut Tally) {
    let Ok(line) = std::str::from_utf8(line) else {
        return;
    };
    let m = &mut tally.members[i];
    if line.starts_with("Welcome ") {
        m.welcomed = true;
        if let Some(last) = m.away.last_mut() {
            last.1 = unix_micros();
        }
        tally.last_join = Instant::now();
        return;
    }
    if line.starts_with("* ") || line.starts_with("Enter your name") || line.contains("; you are ")
    {
        tally.last_join = Instant::now();
        return;
    }
    // `<name>: <id> <number> <micros> xxx`
    let Some((_, said)) = line.split_once(": ") else {
        return;
    };
    let mut words = said.split(' ');
    let (Some(Ok(from)), Some(Ok(seq)), Some(Ok(at))) = (
        words.next().map(str::parse::<usize>),
        words.next().map(str::parse::<u64>),
        words.next().map(str::parse::<u64>),
    ) else {
        return;
    };
    if from >= m.next.len() {
        return;
    }
    if from == m.id {
        tally.echoed += 1;
        return;
    }
    let next = &mut m.next[from];
    if seq == *next {
        *next += 1;
    } else if seq > *next {
        m.skipped.entry(from).or_default().extend(*next..seq);
        *next = seq + 1;
    } else if m
        .skipped
        .get_mut(&from)
        .is_some_and(|skipped| skipped.remove(&seq))
    {
        tally.reordered += 1;
    } else {
        tally.duplicated += 1;
        return;
    }
    let _ = tally
        .latency
        .record(unix_micros().saturating_sub(at).max(1));
}
