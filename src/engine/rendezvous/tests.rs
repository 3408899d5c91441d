//! The rendezvous's unit tests: who leads, who follows, the queue's
//! order and the look into the poller, with real threads.

use super::*;

/// Starts `n` workers that each ask what to do next, and waits until all
/// of them wait as followers; their answers come on the channel.
fn followers(
    r: &std::sync::Arc<Rendezvous<u32>>,
    n: usize,
) -> std::sync::mpsc::Receiver<Next<u32>> {
    let before = r.waiting();
    let (tx, next) = std::sync::mpsc::channel();
    for _ in 0..n {
        let (r, tx) = (r.clone(), tx.clone());
        std::thread::spawn(move || tx.send(r.next()));
    }
    while r.waiting() < before + n {
        std::thread::yield_now();
    }
    next
}

#[test]
fn a_worker_with_nothing_ready_leads_and_the_next_follows() {
    let r = std::sync::Arc::new(Rendezvous::<u32>::new());
    assert_eq!(r.next(), Next::Lead);
    // A second worker follows until the leader hands something off.
    let follower = {
        let r = r.clone();
        std::thread::spawn(move || r.next())
    };
    while r.waiting() < 2 {
        std::thread::yield_now();
    }
    assert_eq!(r.hand_off([1, 2], true), Some(1));
    assert_eq!(follower.join().expect("follower"), Next::Serve(2));
    // Both serve: nobody waits or leads.
    assert_eq!(r.waiting(), 0);
}

/// A leader that keeps one item and queues another wakes two
/// followers: one to serve the queued item, one to lead meanwhile.
#[test]
fn a_hand_off_wakes_a_follower_per_item_and_one_to_lead() {
    let r = std::sync::Arc::new(Rendezvous::<u32>::new());
    assert_eq!(r.next(), Next::Lead);
    let woken = followers(&r, 2);
    assert_eq!(r.hand_off([1, 2], true), Some(1));
    let mut got: Vec<Next<u32>> = (0..2)
        .map(|_| {
            woken
                .recv_timeout(std::time::Duration::from_secs(10))
                .expect("a follower was left waiting")
        })
        .collect();
    got.sort_by_key(|n| matches!(n, Next::Lead));
    assert_eq!(got, [Next::Serve(2), Next::Lead]);
}

#[test]
fn queued_items_are_served_in_order() {
    let r = Rendezvous::new();
    assert_eq!(r.next(), Next::Lead);
    assert_eq!(r.hand_off([1, 2, 3], false), None);
    assert_eq!(r.ready(), 3);
    assert_eq!(r.next(), Next::Serve(1));
    r.requeue(1);
    assert_eq!(r.next(), Next::Serve(2));
    assert_eq!(r.next(), Next::Serve(3));
    assert_eq!(r.next(), Next::Serve(1));
    assert_eq!(r.ready(), 0);
}

#[test]
fn after_enough_turns_a_worker_looks_into_the_poller() {
    let r = Rendezvous::new();
    assert_eq!(r.next(), Next::Lead);
    r.hand_off([0], false);
    for _ in 0..POLL_EVERY {
        let Next::Serve(item) = r.next() else {
            panic!("expected to serve");
        };
        r.requeue(item);
    }
    assert_eq!(r.next(), Next::Look);
    r.hand_off([], false);
    assert_eq!(r.next(), Next::Serve(0));
}

#[test]
fn items_queued_from_outside_wake_a_follower() {
    let r = std::sync::Arc::new(Rendezvous::<u32>::new());
    assert_eq!(r.next(), Next::Lead);
    let (tx, next) = std::sync::mpsc::channel();
    {
        let r = r.clone();
        std::thread::spawn(move || tx.send(r.next()));
    }
    while r.waiting() < 2 {
        std::thread::yield_now();
    }
    r.queue([7]);
    let woken = next.recv_timeout(std::time::Duration::from_secs(10));
    assert_eq!(woken.expect("the follower was never woken"), Next::Serve(7));
}

/// A leader lost to a panic is forgotten, so another worker leads.
#[test]
fn after_a_lost_leader_another_worker_leads() {
    let r = std::sync::Arc::new(Rendezvous::<u32>::new());
    assert_eq!(r.next(), Next::Lead);
    r.leader_lost();
    let (tx, next) = std::sync::mpsc::channel();
    {
        let r = r.clone();
        std::thread::spawn(move || tx.send(r.next()));
    }
    let next = next.recv_timeout(std::time::Duration::from_secs(10));
    assert_eq!(next.expect("nobody leads"), Next::Lead);
}

#[test]
fn finish_ends_every_worker() {
    let r = std::sync::Arc::new(Rendezvous::<u32>::new());
    assert_eq!(r.next(), Next::Lead);
    let follower = {
        let r = r.clone();
        std::thread::spawn(move || r.next())
    };
    r.finish();
    assert_eq!(follower.join().expect("follower"), Next::Done);
    assert_eq!(r.next(), Next::Done);
}

/// A worker that asks what to do next while the pool has too many
/// retires; with work queued behind a leader in the poller and no
/// follower to take it, it says the leader must be woken.
#[test]
fn a_worker_too_many_retires_and_wakes_the_leader_for_queued_work() {
    let r = Rendezvous::new();
    assert_eq!(r.resize(3), 3);
    assert_eq!(r.next(), Next::Lead);
    r.resize(2);
    assert_eq!(r.next(), Next::Retire { wake_leader: false });
    // The pool has its size: the next worker follows the rules again.
    r.queue([7]);
    assert_eq!(r.next(), Next::Serve(7));
    r.resize(1);
    r.requeue(7);
    assert_eq!(r.next(), Next::Retire { wake_leader: true });
    assert_eq!(r.wanted(), 1);
}

/// Growing says how many loops to start, counting loops not yet retired:
/// shrunk and grown again before anyone retired, none is started.
#[test]
fn a_resize_counts_the_loops_to_start() {
    let r = Rendezvous::<u32>::new();
    assert_eq!(r.resize(2), 2);
    assert_eq!(r.resize(4), 2);
    assert_eq!(r.resize(1), 0);
    assert_eq!(r.resize(4), 0);
    assert_eq!(r.next(), Next::Lead);
    assert_eq!(r.wanted(), 4);
}

/// A shrink retires a waiting follower at once; the follower that stays
/// is woken to lead as before.
#[test]
fn a_shrink_retires_a_waiting_follower_at_once() {
    let r = std::sync::Arc::new(Rendezvous::<u32>::new());
    assert_eq!(r.resize(3), 3);
    assert_eq!(r.next(), Next::Lead);
    let next = followers(&r, 2);
    r.resize(2);
    let first = next.recv_timeout(std::time::Duration::from_secs(10));
    assert_eq!(
        first.expect("no follower retired"),
        Next::Retire { wake_leader: false }
    );
    // The leader serves the item it kept: the follower left must lead.
    assert_eq!(r.hand_off([1], true), Some(1));
    let second = next.recv_timeout(std::time::Duration::from_secs(10));
    assert_eq!(second.expect("nobody leads"), Next::Lead);
}
