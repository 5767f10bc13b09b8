//! # bq-ingest-e2e
//!
//! The harness of bq-ingest's end-to-end tests: the real `bq-ingest` binary against the local
//! emulator stack (fake-gcs-server, local-bigquery, the Pub/Sub emulator) that
//! `scripts/test.sh` (or `scripts/dev-stack.sh up`) starts and describes in the environment.
//!
//! Every test builds one [`TestCase`]: a unique dataset (`e2e_<name>_<random>`, the first path
//! segment of every object the test writes), its own Pub/Sub subscription on `INGEST_TOPIC`
//! (pull, or push to the test's `bq-ingest serve` with [`TestCase::with_push`]) created before
//! any upload, and helpers for uploads, tables, queries, jobs and the load-state table.
//! [`TestCase::spawn_service`] starts the binary ([`Service`]) with `INCLUDE_PREFIXES=<dataset>/`
//! (so it ignores the other tests' objects, which the shared topic also carries),
//! `BQ_LOAD_STATE_TABLE=<dataset>.load_state`, `LOG_FORMAT=json` and its stdout/stderr in
//! `target/e2e-logs/<test>/`. [`CountingProxy`] counts the HTTP requests the service sends to an
//! emulator.
//!
//! | need | call |
//! | --- | --- |
//! | set up | [`TestCase::new`], [`TestCase::with_push`], [`TestCase::create_table`] / [`create_table_json`](TestCase::create_table_json) |
//! | write objects (relative to the dataset) | [`upload`](TestCase::upload), [`upload_file`](TestCase::upload_file), [`upload_dir`](TestCase::upload_dir) (`_SUCCESS` last), [`upload_dir_only`](TestCase::upload_dir_only) |
//! | names | [`object`](TestCase::object), [`uri`](TestCase::uri), [`table_sql`](TestCase::table_sql), [`testdata`] |
//! | run the binary | [`spawn_service`](TestCase::spawn_service) → [`Service`] (`sigterm`, `sigkill`, `restart`, `stop`, `wait_exit`); [`run_command`](TestCase::run_command) for `backfill` / `explain` |
//! | its log | [`Service::wait_for_log`], [`Service::outcomes_for`] / [`wait_for_outcomes`](Service::wait_for_outcomes) (one line per handled delivery of an object), [`Service::log_tail`] |
//! | notifications by hand | [`publish_object_event`](TestCase::publish_object_event) (to the topic), [`push_envelope`](TestCase::push_envelope) + [`post_json`](TestCase::post_json) (to `serve`) |
//! | assert | [`rows`](TestCase::rows), [`count`](TestCase::count), [`wait_for_count`](TestCase::wait_for_count), [`jobs`](TestCase::jobs) (emulator `jobs.list`), [`state_rows`](TestCase::state_rows), [`wait_for_state_row`](TestCase::wait_for_state_row) |
//! | count API requests | [`CountingProxy`] |
//!
//! When the stack's environment is missing, [`TestCase::new`] fails the test with a message to
//! run `scripts/test.sh`, unless `BQ_INGEST_SKIP_EMULATOR_TESTS=1`: then it prints `skipped`
//! and returns `None`.
//!
//! The binary is `<target>/<profile>/bq-ingest` next to the test executable (or
//! `BQ_INGEST_BIN`); the harness runs `cargo build -p bq-ingest` once per test process so that
//! it is never stale.
//!
//! ```no_run
//! use std::time::Duration;
//! use bq_ingest_e2e::{testdata, Mode, TestCase};
//!
//! # async fn example() {
//! let Some(t) = TestCase::new("nation_pull").await else { return }; // skipped
//! t.create_table("nation", testdata("nation_schema.json")).await;
//! t.upload("_config/load.json", br#"{"fieldDelimiter": "|"}"#.to_vec()).await;
//! let service = t.spawn_service(Mode::Pull, &[]).await;
//! t.upload_dir("nation", testdata("nation")).await; // data files, then _SUCCESS
//! t.wait_for_count("nation", 25, Duration::from_secs(60)).await;
//! assert_eq!(t.jobs().await.len(), 1);
//! drop(service); // SIGTERM, then SIGKILL after 5 s
//! # }
//! ```
#![warn(missing_docs)]

mod balancer;
mod case;
mod proxy;
mod service;
mod stack;

pub use balancer::Balancer;
pub use case::{free_port, testdata, Job, TestCase, Usage};
pub use proxy::{CountingProxy, RecordedRequest};
pub use service::{Mode, Service};
pub use stack::{Stack, SKIP_VAR};

/// Re-exported for tests: object metadata returned by uploads.
pub use ingest_core::ports::ObjectMeta;
