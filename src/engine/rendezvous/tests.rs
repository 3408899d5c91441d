//! The rendezvous's unit tests: who leads, who follows, the queue's
//! order and the look into the poller, with real threads.

use super::*;

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
    let (tx, woken) = std::sync::mpsc::channel();
    for _ in 0..2 {
        let (r, tx) = (r.clone(), tx.clone());
        std::thread::spawn(move || tx.send(r.next()));
    }
    while r.waiting() < 3 {
        std::thread::yield_now();
    }
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
