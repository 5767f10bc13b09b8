//! Cloud Run's conventions through the real binary on the emulators (issue 9):
//!
//! - SIGTERM while a batch's job runs: `serve` answers the push 503 and exits within the
//!   shutdown grace, `pull` hands the message back and exits within it; the redelivery loads
//!   the batch exactly once, following the job that kept running.
//! - No project setting: the project comes from the metadata server (`GCE_METADATA_HOST`).
//! - `pull --health-port`: `/health` and `/healthz` while it pulls.

use std::time::{Duration, Instant};

use bq_ingest_e2e::{free_port, testdata, CountingProxy, Mode, TestCase};

const TIMEOUT: Duration = Duration::from_secs(90);
const PIPE: &[u8] = br#"{"fieldDelimiter": "|"}"#;
/// The shutdown grace the tests give (`SHUTDOWN_GRACE_SECONDS`).
const GRACE: Duration = Duration::from_secs(2);
/// What exiting may take beyond the grace: answering, closing, logging.
const EXIT_SLACK: Duration = Duration::from_secs(3);

/// Waits until `proxy` holds a request it will never answer.
async fn until_hung(proxy: &CountingProxy) {
    let deadline = Instant::now() + TIMEOUT;
    while proxy.hung() == 0 {
        assert!(Instant::now() < deadline, "no request reached the hang");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A test case with the nation table, a bucket-level `load.json`, and the nation files
/// uploaded without their marker.
async fn nation_case(name: &str) -> Option<TestCase> {
    let t = TestCase::new(name).await?;
    t.create_table("nation", testdata("nation_schema.json"))
        .await;
    t.upload("_config/load.json", PIPE).await;
    Some(t)
}

fn grace_seconds() -> String {
    GRACE.as_secs().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_503_and_exits_within_the_grace_on_sigterm_during_a_job() {
    let Some(t) = nation_case("sigterm_serve").await else {
        return;
    };
    // BigQuery runs the load, but its answer to jobs.insert never comes back: the service
    // waits on a job that BigQuery has, as it would on a long one.
    let bigquery = CountingProxy::start(&t.stack.bigquery_host).await;
    bigquery.hang_after_forwarding("POST", "/jobs");
    let grace = grace_seconds();
    let mut service = t
        .spawn_service(
            Mode::Serve,
            &[
                ("BIGQUERY_EMULATOR_HOST", &bigquery.url()),
                ("SHUTDOWN_GRACE_SECONDS", &grace),
            ],
        )
        .await;
    let url = format!("{}/", service.url().expect("serve has a url"));
    let marker = t
        .upload_dir_only("nation", testdata("nation"), |_| true)
        .await
        .unwrap();
    let push = t.push_envelope(&marker, "m-sigterm");
    let pushed = {
        let http = t.stack.http.clone();
        let url = url.clone();
        let push = push.clone();
        tokio::spawn(async move {
            let response = http.post(&url).json(&push).send().await.expect("POST");
            let status = response.status().as_u16();
            (status, response.text().await.unwrap_or_default())
        })
    };
    until_hung(&bigquery).await;

    let stopped_at = Instant::now();
    service.sigterm();
    let (status, body) = pushed.await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"outcome\":\"stopping\""), "{body}");
    let exit = service
        .wait_exit(GRACE + EXIT_SLACK + Duration::from_secs(5))
        .await
        .expect("serve exits after SIGTERM");
    let took = stopped_at.elapsed();
    assert!(exit.success(), "{exit}\n{}", service.log_tail(20));
    assert!(
        took >= GRACE && took < GRACE + EXIT_SLACK,
        "exited {took:?} after SIGTERM (grace {GRACE:?})"
    );

    // The redelivery, to a new instance: it finds the job BigQuery ran and follows it.
    let service = t.spawn_service(Mode::Serve, &[]).await;
    let url = format!("{}/", service.url().expect("serve has a url"));
    let (status, body) = t.post_json(&url, &push).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"outcome\":\"done\""), "{body}");
    assert_eq!(t.count("nation").await, 25, "loaded once");
    assert_eq!(t.jobs().await.len(), 1, "one job");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_hands_back_and_exits_within_the_grace_on_sigterm_during_a_job() {
    let Some(t) = nation_case("sigterm_pull").await else {
        return;
    };
    let bigquery = CountingProxy::start(&t.stack.bigquery_host).await;
    bigquery.hang_after_forwarding("POST", "/jobs");
    let grace = grace_seconds();
    let mut service = t
        .spawn_service(
            Mode::Pull,
            &[
                ("BIGQUERY_EMULATOR_HOST", &bigquery.url()),
                ("SHUTDOWN_GRACE_SECONDS", &grace),
            ],
        )
        .await;
    let marker = t
        .upload_dir_only("nation", testdata("nation"), |_| true)
        .await
        .unwrap();
    until_hung(&bigquery).await;

    let stopped_at = Instant::now();
    service.sigterm();
    let exit = service
        .wait_exit(GRACE + EXIT_SLACK + Duration::from_secs(5))
        .await
        .expect("pull exits after SIGTERM");
    let took = stopped_at.elapsed();
    assert!(exit.success(), "{exit}\n{}", service.log_tail(20));
    assert!(
        took >= GRACE && took < GRACE + EXIT_SLACK,
        "exited {took:?} after SIGTERM (grace {GRACE:?})"
    );
    let handed_back = service.log_matching(|line| {
        bq_ingest_e2e::Service::message(line)
            .contains("unfinished at the end of the shutdown grace")
    });
    assert_eq!(handed_back.len(), 1, "{}", service.log_tail(20));

    // The handed-back message goes to the next consumer at once.
    let service = t.spawn_service(Mode::Pull, &[]).await;
    let object = t.uri("nation/_SUCCESS");
    let outcomes = service.wait_for_outcomes(&object, 1, TIMEOUT).await;
    assert_eq!(outcomes[0]["outcome"], "done", "{outcomes:?}");
    assert_eq!(t.count("nation").await, 25, "loaded once");
    assert_eq!(t.jobs().await.len(), 1, "one job");
    let _ = marker;
}

/// A metadata server that answers the project id, as Cloud Run's does.
async fn metadata_server(project: &str) -> String {
    let project = project.to_string();
    let app = axum::Router::new().route(
        "/computeMetadata/v1/project/project-id",
        axum::routing::get(move |headers: axum::http::HeaderMap| {
            let project = project.clone();
            async move {
                let asked = headers.get("metadata-flavor").map(|v| v.as_bytes()) == Some(b"Google");
                let status = if asked {
                    axum::http::StatusCode::OK
                } else {
                    axum::http::StatusCode::FORBIDDEN
                };
                (status, [("metadata-flavor", "Google")], project)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    host
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_project_setting_the_metadata_servers_project_is_used() {
    let Some(t) = nation_case("metadata_project").await else {
        return;
    };
    let metadata = metadata_server(&t.stack.project).await;
    let service = t
        .spawn_service(
            Mode::Serve,
            &[
                ("BQ_PROJECT", ""),
                ("GOOGLE_CLOUD_PROJECT", ""),
                ("GCE_METADATA_HOST", &metadata),
                ("CLOUDSDK_CONFIG", "/nonexistent"),
            ],
        )
        .await;
    let found = service.log_matching(|line| {
        bq_ingest_e2e::Service::message(line).contains("from the metadata server")
    });
    assert_eq!(found.len(), 1, "{}", service.log_tail(20));
    assert_eq!(found[0]["project"], t.stack.project.as_str());

    let url = format!("{}/", service.url().expect("serve has a url"));
    let marker = t
        .upload_dir_only("nation", testdata("nation"), |_| true)
        .await
        .unwrap();
    let (status, body) = t.post_json(&url, &t.push_envelope(&marker, "m-meta")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(t.count("nation").await, 25);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_any_project_start_up_fails_naming_the_settings() {
    let Some(t) = TestCase::new("no_project").await else {
        return;
    };
    let output = t
        .run_command(
            &["backfill", "gs://ingest-bucket/nothing/", "--dry-run"],
            &[
                ("BQ_PROJECT", ""),
                ("GOOGLE_CLOUD_PROJECT", ""),
                ("GCE_METADATA_HOST", "127.0.0.1:9"),
                ("GOOGLE_APPLICATION_CREDENTIALS", ""),
                ("CLOUDSDK_CONFIG", "/nonexistent"),
                ("CLOUDSDK_CORE_PROJECT", ""),
            ],
        )
        .await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("set BQ_PROJECT or GOOGLE_CLOUD_PROJECT"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_serves_health_on_its_health_port() {
    let Some(t) = TestCase::new("pull_health").await else {
        return;
    };
    let port = free_port().to_string();
    let mut service = t.spawn_service(Mode::Pull, &[("HEALTH_PORT", &port)]).await;
    for path in ["/health", "/healthz"] {
        let url = format!("http://127.0.0.1:{port}{path}");
        let deadline = Instant::now() + TIMEOUT;
        let response = loop {
            match t.stack.http.get(&url).send().await {
                Ok(r) => break r,
                Err(e) => {
                    assert!(Instant::now() < deadline, "{url}: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        assert_eq!(response.status().as_u16(), 200, "{path}");
        assert_eq!(response.text().await.unwrap(), "ok");
    }
    let exit = service.stop().await.expect("pull stops");
    assert!(exit.success());
    let closed = tokio::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap())).await;
    assert!(closed.is_err(), "the health port closes with the process");
}
