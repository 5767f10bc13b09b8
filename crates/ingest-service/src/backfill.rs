//! Many success markers driven through the normal path — what `bq-ingest backfill` and
//! `reconcile --apply` do — in bounded memory: the markers are listed page by page as they are
//! needed, at most `concurrency` are in flight, and each result is handed to the caller as it
//! comes instead of being collected.
//!
//! ```
//! # use std::sync::Arc;
//! # use ingest_core::ingest::Ingestor;
//! # use ingest_core::settings::Settings;
//! # use ingest_memory::{MemoryClock, MemoryStore, MemoryWarehouse};
//! use futures::StreamExt;
//! use ingest_service::backfill::{drive, markers, Action, MarkerResult};
//!
//! # futures::executor::block_on(async {
//! let store = Arc::new(MemoryStore::new());
//! store.create_bucket("b");
//! store.put_str("b", "ds/t/part-0.csv", "1\n");
//! store.insert("b", "ds/t/_SUCCESS", Vec::new());
//! let settings = Settings { bq_project: Some("my-project".into()), ..Settings::default() };
//! let warehouse = Arc::new(MemoryWarehouse::with_store(store.clone()));
//! let ingestor = Ingestor::new(settings.clone(), store.clone(), warehouse, Arc::new(MemoryClock::new()));
//!
//! let listed = markers(store.as_ref(), &settings, "b", "ds/").boxed();
//! let mut ingested = 0;
//! let summary = drive(&ingestor, &Action::Local, listed, 4, |_, result| {
//!     assert!(matches!(result, MarkerResult::Ingested), "{result:?}");
//!     ingested += 1;
//! })
//! .await
//! .unwrap();
//! assert_eq!((summary.markers, ingested), (1, 1));
//! # });
//! ```

use futures::stream::{self, BoxStream, Stream, StreamExt};
use ingest_core::event::ObjectEvent;
use ingest_core::ingest::{DryRun, Ingestor, Outcome};
use ingest_core::operate::MarkerPages;
use ingest_core::ports::{ObjectStore, StoreError};
use ingest_core::settings::Settings;
use ingest_pubsub::Publisher;

/// What is done with each marker.
#[derive(Debug)]
pub enum Action<'a> {
    /// Plan it and change nothing ([`Ingestor::dry_run`]); results come in listing order.
    DryRun,
    /// Ingest it in this process (ordered tables are skipped: their batches go through their
    /// backlog, so they are backfilled with notifications).
    Local,
    /// Publish the notification GCS would have sent for it.
    Publish(&'a Publisher),
}

/// What became of one marker.
#[derive(Debug)]
pub enum MarkerResult {
    /// Its plan ([`Action::DryRun`]).
    Planned(Box<DryRun>),
    /// Ingested here, or found already done.
    Ingested,
    /// Its notification was published.
    Published,
    /// Not ingested, and why (an ordered table in local mode, a marker the ingest ignores).
    Skipped(String),
    /// Failed, and why.
    Failed(String),
}

/// What a [`drive`] went through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Markers handled.
    pub markers: usize,
}

/// Every success marker under `gs://bucket/prefix` (see [`MarkerPages`]), listed one page at a
/// time as the stream is read.
pub fn markers<'a>(
    store: &'a dyn ObjectStore,
    settings: &'a Settings,
    bucket: &'a str,
    prefix: &'a str,
) -> impl Stream<Item = Result<ObjectEvent, StoreError>> + Send + 'a {
    let pages = MarkerPages::new(store, settings, bucket, prefix);
    stream::try_unfold(pages, |mut pages| async move {
        Ok(pages.next_page().await?.map(|page| (page, pages)))
    })
    .map(|page| match page {
        Ok(page) => stream::iter(page).map(Ok).left_stream(),
        Err(e) => stream::once(async { Err(e) }).right_stream(),
    })
    .flatten()
}

/// Applies `action` to every marker of `markers`, at most `concurrency` at once, and calls
/// `each` with each marker and its result as it comes (in listing order for
/// [`Action::DryRun`]). Memory is bounded by `concurrency` and one listing page, whatever the
/// number of markers.
///
/// Errors: the first listing error, after the markers listed before it were handled.
pub async fn drive(
    ingestor: &Ingestor,
    action: &Action<'_>,
    markers: BoxStream<'_, Result<ObjectEvent, StoreError>>,
    concurrency: usize,
    mut each: impl FnMut(&ObjectEvent, MarkerResult),
) -> Result<Summary, StoreError> {
    let mut summary = Summary::default();
    let mut listing_error = None;
    let work = markers.map(|listed| async move {
        match listed {
            Ok(event) => {
                let result = apply(ingestor, action, &event).await;
                Ok((event, result))
            }
            Err(e) => Err(e),
        }
    });
    let mut handled = |done: Result<(ObjectEvent, MarkerResult), StoreError>| {
        match done {
            Ok((event, result)) => {
                summary.markers += 1;
                each(&event, result);
            }
            Err(e) => {
                listing_error.get_or_insert(e);
            }
        }
        std::future::ready(())
    };
    let concurrency = concurrency.max(1);
    match action {
        Action::DryRun => work.buffered(concurrency).for_each(&mut handled).await,
        _ => {
            work.buffer_unordered(concurrency)
                .for_each(&mut handled)
                .await
        }
    }
    match listing_error {
        Some(e) => Err(e),
        None => Ok(summary),
    }
}

/// One marker: planned, published, or ingested here.
async fn apply(ingestor: &Ingestor, action: &Action<'_>, event: &ObjectEvent) -> MarkerResult {
    match action {
        Action::DryRun => match ingestor.dry_run(event).await {
            Ok(plan) => MarkerResult::Planned(Box::new(plan)),
            Err(e) => MarkerResult::Failed(e.to_string()),
        },
        Action::Publish(publisher) => match publisher.publish_object_event(event).await {
            Ok(_) => MarkerResult::Published,
            Err(e) => MarkerResult::Failed(e.to_string()),
        },
        Action::Local => local(ingestor, event).await,
    }
}

/// Ingests one marker here, unless its table is ordered.
async fn local(ingestor: &Ingestor, event: &ObjectEvent) -> MarkerResult {
    match ingestor.dry_run(event).await {
        Ok(d) if d.ordered => {
            return MarkerResult::Skipped(
                "ordered table: backfill it with --mode notifications".into(),
            )
        }
        Ok(_) => {}
        Err(e) => return MarkerResult::Failed(e.to_string()),
    }
    match ingestor.handle(event).await {
        Ok(Outcome::Done { .. }) => MarkerResult::Ingested,
        Ok(Outcome::Ignored { reason }) => MarkerResult::Skipped(reason),
        Ok(Outcome::Failed { error } | Outcome::Rejected { error }) => MarkerResult::Failed(error),
        Ok(Outcome::Running { jobs }) => MarkerResult::Failed(format!(
            "still running after WAIT_FOR_JOB_SECONDS ({}); run again to follow it",
            jobs.iter()
                .map(|j| j.job_id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
        Ok(other) => MarkerResult::Skipped(format!("{other:?}")),
        Err(e) => MarkerResult::Failed(e.to_string()),
    }
}
