//! The bus's unit tests: its back-off, its queue, its instance ids.

use super::*;

#[test]
fn backoff_doubles_jittered_up_to_its_cap() {
    let mut backoff = Backoff::new(Duration::from_millis(400));
    let mut steps = Vec::new();
    for _ in 0..6 {
        steps.push(backoff.next());
    }
    for (wait, step) in steps.iter().zip([50u64, 100, 200, 400, 400, 400]) {
        let step = Duration::from_millis(step);
        assert!(*wait >= step / 2 && *wait <= step, "{wait:?} for {step:?}");
    }
    backoff.reset();
    assert!(backoff.next() <= FIRST_BACKOFF);
}

#[test]
fn a_full_queue_drops_lines_but_not_heartbeats() {
    let out = Outgoing::new(1);
    out.send(Body::Left { name: "a".into() }, 0);
    out.send(Body::Left { name: "b".into() }, 0);
    out.send(
        Body::Beat {
            members: vec![],
            hears: true,
        },
        0,
    );
    assert_eq!(
        out.counters.dropped[Loss::QueueFull as usize].load(Ordering::Relaxed),
        1
    );
    let soon = Instant::now();
    assert!(matches!(
        out.next(soon),
        Some(Job::Send(Body::Left { .. }, _))
    ));
    assert!(matches!(
        out.next(soon),
        Some(Job::Send(Body::Beat { .. }, _))
    ));
    assert!(out.next(soon).is_none());
}

#[test]
fn instance_ids_differ() {
    assert_ne!(random_u64(), random_u64());
}
