use std::time::Duration;

use ingest_core::ingest::Outcome;

use super::handler::{data_prefix, job_ids, DATA_PREFIX_BYTES};
use super::LeaseExtension;

#[test]
fn lease_interval_is_kept_below_half_the_extension() {
    let lease = LeaseExtension {
        interval: Duration::from_secs(50),
        extend_by: Duration::from_secs(60),
    };
    assert_eq!(lease.effective_interval(), Duration::from_secs(30));
    assert_eq!(
        LeaseExtension::default().effective_interval(),
        Duration::from_secs(20)
    );
}

#[test]
fn lease_extension_is_clamped_to_what_pubsub_accepts() {
    let short = LeaseExtension {
        interval: Duration::from_secs(1),
        extend_by: Duration::from_secs(2),
    };
    assert_eq!(short.extend_by_seconds(), 10);
    let long = LeaseExtension {
        interval: Duration::from_secs(100),
        extend_by: Duration::from_secs(3600),
    };
    assert_eq!(long.extend_by_seconds(), 600);
    assert_eq!(long.effective_interval(), Duration::from_secs(100));
}

#[test]
fn data_prefix_is_bounded_and_lossy() {
    assert_eq!(data_prefix(b"{\"a\":1}"), "{\"a\":1}");
    let long = vec![b'x'; 1000];
    let prefix = data_prefix(&long);
    assert_eq!(prefix.chars().count(), DATA_PREFIX_BYTES + 1);
    assert!(prefix.ends_with('…'));
    assert_eq!(data_prefix(&[0xff, b'a']), "\u{fffd}a");
}

#[test]
fn job_ids_are_listed_for_outcomes_with_jobs() {
    use ingest_core::ports::JobRef;
    let job = |id: &str| JobRef {
        project: "p".into(),
        job_id: id.into(),
        location: None,
    };
    let done = Outcome::Done {
        jobs: vec![job("a"), job("b")],
        rows: 1,
        bytes: 2,
    };
    assert_eq!(job_ids(&done), "a,b");
    let ignored = Outcome::Ignored {
        reason: "data file".into(),
    };
    assert_eq!(job_ids(&ignored), "");
}
