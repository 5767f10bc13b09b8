//! Routing throughput: Pub/Sub push envelope → parse → classify (→ destination for markers).
//!
//! Targets on one core: ≥ 500,000 no-op data-file events/s and ≥ 200,000 success markers/s.
//!
//! The corpus is 100,000 realistic object paths generated deterministically (a linear
//! congruential generator, no `rand`): ~90 % data files in the layouts upstream writers use,
//! ~10 % `_SUCCESS` markers in the forms the default `DESTINATION_REGEX` accepts. Each is wrapped,
//! before timing, as the body of a Pub/Sub push request from a GCS notification configuration
//! (`payloadFormat=JSON_API_V1`, base64 of the object resource JSON).
//!
//! Each group reports the same work twice: `…/wall` (elapsed time) and `…/thread-cpu` (the
//! benchmark thread's own CPU time, Linux only). On a shared 2-core machine the wall figure
//! includes other processes' time slices; the thread-CPU figure is the one-core throughput.
//!
//! Run: `cargo bench -p ingest-core --bench routing` (or `-- noop` / `-- success` for one group).

use std::hint::black_box;
use std::ops::Range;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use criterion::{criterion_group, Criterion, Throughput};
use ingest_core::destination::resolve_batch;
use ingest_core::notification::{parse_push_envelope, parse_push_envelope_routed};
use ingest_core::settings::Settings;
use ingest_core::trigger::{IgnoreReason, Trigger};

/// How many object paths the corpus holds.
const CORPUS_SIZE: usize = 100_000;
/// How many events one timed iteration routes.
const EVENTS_PER_ITERATION: usize = 1_000;
const BUCKET: &str = "acme-datalake-landing";
/// The default project of destinations (`BQ_STORAGE_PROJECT`); a valid project id.
const PROJECT: &str = "acme-analytics";

/// Knuth's MMIX linear congruential generator: deterministic, good enough for picking shapes.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// One generated object: its name and whether it is a success marker.
struct ObjectPath {
    name: String,
    is_marker: bool,
}

fn generate_paths(count: usize) -> Vec<ObjectPath> {
    let mut rng = Lcg(0x5eed_b160_u64);
    (0..count)
        .map(|_| {
            let dataset = rng.below(40);
            let table = rng.below(25);
            let mm = 1 + rng.below(12);
            let dd = 1 + rng.below(28);
            let hh = rng.below(24);
            let batch = rng.below(10_000);
            let part = rng.below(200);
            let base = format!("dataset_{dataset}/table_{table}");
            let is_marker = rng.below(10) == 0;
            let name = if is_marker {
                match rng.below(5) {
                    0 => format!("{base}/_SUCCESS"),
                    1 => format!("{base}/$2020{mm:02}{dd:02}{hh:02}/_SUCCESS"),
                    2 => format!("{base}/2020/{mm:02}/{dd:02}/{hh:02}/batch_{batch}/_SUCCESS"),
                    3 => format!("{base}/historical/2020/{mm:02}/{dd:02}/_SUCCESS"),
                    _ => format!("{base}/incremental/batch-{batch}/_SUCCESS"),
                }
            } else {
                match rng.below(5) {
                    0 => format!("{base}/$2020{mm:02}{dd:02}{hh:02}/part-m-{part:05}"),
                    1 => format!(
                        "{base}/2020/{mm:02}/{dd:02}/{hh:02}/batch_{batch}/part-{part:04}.parquet"
                    ),
                    2 => format!("{base}/part-{part:05}-{batch:04x}.csv.gz"),
                    3 => format!("{base}/historical/2020/{mm:02}/{dd:02}/{part:012}.avro"),
                    _ => format!("{base}/incremental/batch-{batch}/part-{part:05}-c000.snappy.orc"),
                }
            };
            ObjectPath { name, is_marker }
        })
        .collect()
}

/// The JSON API object resource GCS publishes with `payloadFormat=JSON_API_V1`.
fn object_resource(name: &str, generation: u64, size: u64) -> String {
    let escaped = name.replace('/', "%2F").replace('$', "%24");
    serde_json::json!({
        "kind": "storage#object",
        "id": format!("{BUCKET}/{name}/{generation}"),
        "selfLink": format!("https://www.googleapis.com/storage/v1/b/{BUCKET}/o/{escaped}"),
        "mediaLink": format!(
            "https://storage.googleapis.com/download/storage/v1/b/{BUCKET}/o/{escaped}?generation={generation}&alt=media"
        ),
        "name": name,
        "bucket": BUCKET,
        "generation": generation.to_string(),
        "metageneration": "1",
        "contentType": "application/octet-stream",
        "timeCreated": "2020-05-06T15:19:27.123Z",
        "updated": "2020-05-06T15:19:27.123Z",
        "storageClass": "STANDARD",
        "timeStorageClassUpdated": "2020-05-06T15:19:27.123Z",
        "size": size.to_string(),
        "md5Hash": "xMpCOKC5I4INzFCab3WEmw==",
        "crc32c": "yZRlqg==",
        "etag": "CJ3l7pzo9+kCEAE=",
    })
    .to_string()
}

/// The body of the Pub/Sub push request carrying the notification of `name`.
fn push_envelope(name: &str, generation: u64, size: u64, message_id: u64) -> Vec<u8> {
    let data = STANDARD.encode(object_resource(name, generation, size));
    serde_json::to_vec(&serde_json::json!({
        "message": {
            "attributes": {
                "bucketId": BUCKET,
                "eventTime": "2020-05-06T15:19:27.123456Z",
                "eventType": "OBJECT_FINALIZE",
                "notificationConfig": format!("projects/_/buckets/{BUCKET}/notificationConfigs/7"),
                "objectGeneration": generation.to_string(),
                "objectId": name,
                "payloadFormat": "JSON_API_V1",
            },
            "data": data,
            "messageId": message_id.to_string(),
            "message_id": message_id.to_string(),
            "publishTime": "2020-05-06T15:19:28.525Z",
            "publish_time": "2020-05-06T15:19:28.525Z",
        },
        "subscription": "projects/acme-ingest/subscriptions/gcs-notifications-push",
    }))
    .expect("a JSON value serializes")
}

/// Prebuilt request bodies laid out back to back in one buffer, as a receive buffer would hold
/// them (so timing measures parsing, not the scatter of 100,000 separate heap blocks).
struct Bodies {
    bytes: Vec<u8>,
    ranges: Vec<Range<usize>>,
}

impl Bodies {
    fn new() -> Self {
        Bodies {
            bytes: Vec::new(),
            ranges: Vec::new(),
        }
    }

    fn push(&mut self, body: &[u8]) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(body);
        self.ranges.push(start..self.bytes.len());
    }

    fn len(&self) -> usize {
        self.ranges.len()
    }

    fn get(&self, index: usize) -> &[u8] {
        &self.bytes[self.ranges[index].clone()]
    }

    fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.ranges.iter().map(|range| &self.bytes[range.clone()])
    }

    fn average_len(&self) -> usize {
        self.bytes.len() / self.len().max(1)
    }
}

/// The prebuilt push bodies: `(no-op data files, success markers)`.
fn corpus() -> (Bodies, Bodies) {
    let mut noop = Bodies::new();
    let mut markers = Bodies::new();
    let mut rng = Lcg(42);
    for (i, path) in generate_paths(CORPUS_SIZE).into_iter().enumerate() {
        let generation = 1_588_778_367_000_000 + rng.below(1_000_000_000);
        if path.is_marker {
            markers.push(&push_envelope(&path.name, generation, 0, i as u64));
        } else {
            let size = 1 + rng.below(256 << 20);
            noop.push(&push_envelope(&path.name, generation, size, i as u64));
        }
    }
    (noop, markers)
}

/// Routes one no-op event: parse (as far as routing needs), classify. Returns whether it was
/// (correctly) ignored.
fn route_noop(settings: &Settings, body: &[u8]) -> bool {
    match parse_push_envelope_routed(settings, body) {
        Ok((event, trigger)) => {
            black_box(&event);
            matches!(trigger, Trigger::Ignore(IgnoreReason::NotATrigger))
        }
        Err(_) => false,
    }
}

/// Routes one success marker: parse, classify, resolve the destination. Returns whether it
/// resolved.
fn route_marker(settings: &Settings, body: &[u8]) -> bool {
    let Ok((event, trigger)) = parse_push_envelope_routed(settings, body) else {
        return false;
    };
    if trigger != Trigger::Success {
        return false;
    }
    resolve_batch(
        &settings.destination_regex,
        None,
        Some(PROJECT),
        None,
        &event.bucket,
        &event.name,
    )
    .map(|batch| !black_box(batch).destination.table.is_empty())
    .unwrap_or(false)
}

/// Benchmarks routing `EVENTS_PER_ITERATION` bodies per iteration, cycling through `bodies`.
fn bench_bodies(
    c: &mut Criterion,
    group_name: &str,
    function_name: &str,
    settings: &Settings,
    bodies: &Bodies,
    route: fn(&Settings, &[u8]) -> bool,
) {
    let mut group = c.benchmark_group(group_name);
    group.throughput(Throughput::Elements(EVENTS_PER_ITERATION as u64));
    let mut next = 0usize;
    let mut route_batch = move || {
        let mut routed = 0usize;
        for _ in 0..EVENTS_PER_ITERATION {
            routed += usize::from(route(settings, black_box(bodies.get(next))));
            next = (next + 1) % bodies.len();
        }
        routed
    };
    group.bench_function(format!("{function_name}/wall"), |b| {
        b.iter(&mut route_batch)
    });
    // On a shared machine wall time counts other processes' time slices; the thread's own CPU
    // time is what the one-core targets are about.
    if thread_cpu_time().is_some() {
        group.bench_function(format!("{function_name}/thread-cpu"), |b| {
            b.iter_custom(|iterations| {
                let start = thread_cpu_time().unwrap_or_default();
                for _ in 0..iterations {
                    black_box(route_batch());
                }
                thread_cpu_time().unwrap_or_default().saturating_sub(start)
            })
        });
    }
    group.finish();
}

/// The CPU time of the calling thread, from `/proc/thread-self/schedstat` (Linux; updated at
/// scheduler ticks, so it is precise only over many milliseconds — criterion's samples are).
fn thread_cpu_time() -> Option<Duration> {
    let schedstat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos = schedstat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

fn routing(c: &mut Criterion) {
    let settings = Settings::default();
    let (noop, markers) = corpus();
    println!(
        "corpus: {} no-op bodies (avg {} B), {} marker bodies (avg {} B)",
        noop.len(),
        noop.average_len(),
        markers.len(),
        markers.average_len()
    );

    // Check the corpus routes as intended before timing anything.
    let bad_noop = noop.iter().filter(|b| !route_noop(&settings, b)).count();
    assert_eq!(
        bad_noop, 0,
        "no-op bodies that do not route to Ignore(NotATrigger)"
    );
    let failed: Vec<String> = markers
        .iter()
        .filter(|b| !route_marker(&settings, b))
        .take(5)
        .map(|b| match parse_push_envelope(b) {
            Ok(event) => format!(
                "{}: {:?}",
                event.name,
                resolve_batch(
                    &settings.destination_regex,
                    None,
                    Some(PROJECT),
                    None,
                    &event.bucket,
                    &event.name
                )
                .err()
            ),
            Err(e) => e.to_string(),
        })
        .collect();
    assert!(failed.is_empty(), "markers that do not resolve: {failed:?}");

    bench_bodies(
        c,
        "noop",
        "parse_push_envelope_routed+classify",
        &settings,
        &noop,
        route_noop,
    );
    bench_bodies(
        c,
        "success",
        "parse_push_envelope_routed+classify+resolve_batch",
        &settings,
        &markers,
        route_marker,
    );
}

criterion_group!(benches, routing);

/// Routes one body; true when it routed as intended.
type Route = fn(&Settings, &[u8]) -> bool;

/// `ROUTING_ONCE=noop|success` routes each body of that corpus once and exits, without
/// criterion: run it under `valgrind --tool=callgrind` for an instruction count that does not
/// depend on what else the machine runs (`scripts/bench-routing-instructions.sh`).
fn main() {
    if let Ok(which) = std::env::var("ROUTING_ONCE") {
        let settings = Settings::default();
        let (noop, markers) = corpus();
        let (bodies, route): (&Bodies, Route) = match which.as_str() {
            "noop" => (&noop, route_noop),
            "success" => (&markers, route_marker),
            // The baseline: the corpus is built, nothing is routed.
            _ => return,
        };
        // Warm the regex and the decode buffer, then route every body once.
        route(&settings, bodies.get(0));
        let routed = bodies.iter().filter(|b| route(&settings, b)).count();
        println!("{which}: routed {routed} of {}", bodies.len());
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
