//! Security and audit through the real binary on the emulators (issue 13): each test
//! reproduces a defect an independent test found on the earlier main.
//!
//! - A table id that reads as SQL stays one quoted identifier (`DELETE … WHERE TRUE --`).
//! - A delivery killed between the jobs' end and the state row leaves the row to the
//!   redelivery.
//! - `serve` with push authentication refuses missing, garbage, Basic and unsigned tokens.
//! - A missing bucket is a final, recorded failure; an invalid destination costs no request;
//!   a stalled body gets 408.
//! - What the Python function's `backfill.py` publishes loads the batch.
//! - At `RUST_LOG=trace`, with real credentials, no token, assertion or key reaches the logs.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bq_ingest_e2e::{testdata, CountingProxy, Mode, TestCase};
use serde_json::{json, Value};

const TIMEOUT: Duration = Duration::from_secs(90);
const PIPE: &[u8] = br#"{"fieldDelimiter": "|"}"#;

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// The audit's reproduction: with a regex that takes any segment as the table, the batch
/// `victim WHERE TRUE --/b1/` of a `DELETE FROM {dest_dataset}.{dest_table} WHERE N_NAME =
/// @batch_id` transform deleted every row of `victim` and was recorded `done`. Quoted, the
/// statement names a table `victim WHERE TRUE --` that does not exist: the batch fails, and
/// `victim` keeps its 25 rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_id_that_reads_as_sql_deletes_nothing() {
    let Some(t) = TestCase::new("sql_injection").await else {
        return;
    };
    t.create_table("victim", testdata("nation_schema.json"))
        .await;
    t.upload("_config/load.json", PIPE).await;
    t.upload_file("victim/part-m-00001", testdata("nation/part-m-00001"))
        .await;
    let loader = t.spawn_service(Mode::Pull, &[]).await;
    t.upload("victim/_SUCCESS", Vec::new()).await;
    t.wait_for_count("victim", 25, TIMEOUT).await;
    drop(loader);

    let regex = "(?P<dataset>[^/]+)/(?P<table>[^/]+)/(?P<batch>[^/]+)/";
    t.upload(
        "_config/bq_transform.sql",
        b"DELETE FROM {dest_dataset}.{dest_table} WHERE N_NAME = @batch_id".to_vec(),
    )
    .await;
    let service = t
        .spawn_service(Mode::Pull, &[("DESTINATION_REGEX", regex)])
        .await;
    let hostile = "victim WHERE TRUE --/b1";
    t.upload_file(
        &format!("{hostile}/part-m-00001"),
        testdata("nation/part-m-00001"),
    )
    .await;
    t.upload(&format!("{hostile}/_SUCCESS"), Vec::new()).await;
    let marker = t.uri(&format!("{hostile}/_SUCCESS"));
    let lines = service.wait_for_outcomes(&marker, 1, TIMEOUT).await;
    assert_eq!(lines[0]["outcome"], "failed", "{lines:#?}");
    assert_eq!(t.count("victim").await, 25, "no row of victim was deleted");
    let jobs = t.jobs().await;
    let query = jobs
        .iter()
        .find(|j| j.kind == "query")
        .unwrap_or_else(|| panic!("the transform's query job: {jobs:#?}"));
    let sql = text(&query.raw["configuration"]["query"]["query"]);
    assert_eq!(
        sql,
        format!(
            "DELETE FROM `{}`.`{}`.`victim WHERE TRUE --` WHERE N_NAME = @batch_id",
            t.stack.project, t.dataset
        )
    );
    let row = t
        .wait_for_state_row(|r| text(&r["marker_uri"]) == marker, TIMEOUT)
        .await;
    assert_eq!(row["state"], "failed", "{row}");
}

/// A delivery that dies after its job finished and before it wrote the state row — here the
/// row's `insertAll` hangs and the process is SIGKILLed — leaves the batch loaded and
/// unrecorded; the redelivery finds the job done and writes the row. Nothing loads twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_killed_before_its_state_row_leaves_the_row_to_the_redelivery() {
    let Some(t) = TestCase::new("row_after_kill").await else {
        return;
    };
    t.create_table("nation", testdata("nation_schema.json"))
        .await;
    t.upload("_config/load.json", PIPE).await;
    let bigquery = CountingProxy::start(&t.stack.bigquery_host).await;
    bigquery.hang("POST", "/insertAll");
    let env = [("BIGQUERY_EMULATOR_HOST", bigquery.url())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut service = t.spawn_service(Mode::Pull, &env).await;
    let marker = t
        .upload_dir("nation", testdata("nation"))
        .await
        .expect("nation has _SUCCESS");
    let deadline = Instant::now() + TIMEOUT;
    while bigquery.hung() == 0 {
        assert!(
            Instant::now() < deadline,
            "the state-row write never came: {}",
            bigquery.describe()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(t.count("nation").await, 25, "the job ran before the row");
    service.sigkill();
    service.wait_exit(Duration::from_secs(10)).await;
    assert!(t.state_rows().await.is_empty(), "no row was written");

    bigquery.stop_hanging();
    service.restart().await;
    t.publish_object_event(&marker).await; // the redelivery
    let marker_uri = t.uri("nation/_SUCCESS");
    let row = t
        .wait_for_state_row(
            |r| text(&r["marker_uri"]) == marker_uri && text(&r["state"]) == "done",
            TIMEOUT,
        )
        .await;
    assert_eq!(text(&row["rows"]), "25", "{row}");
    assert_eq!(t.count("nation").await, 25, "nothing loaded twice");
    assert_eq!(t.jobs().await.len(), 1);
}

/// A local stand-in for Google's token-signing keys, with one RSA key generated here.
struct Signer {
    key: rsa::RsaPrivateKey,
    url: String,
}

impl Signer {
    async fn start() -> Signer {
        use rsa::traits::PublicKeyParts;
        let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("RSA key");
        let public = key.to_public_key();
        let jwks = json!({"keys": [{
            "kty": "RSA", "alg": "RS256", "use": "sig", "kid": "e2e-key",
            "n": URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
            "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
        }]})
        .to_string();
        let app = axum::Router::new().route(
            "/certs",
            axum::routing::get(move || {
                let jwks = jwks.clone();
                async move { ([("content-type", "application/json")], jwks) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/certs", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Signer { key, url }
    }

    fn token(&self, audience: &str, email: &str) -> String {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        let now = chrono::Utc::now().timestamp();
        let claims = json!({
            "iss": "https://accounts.google.com", "aud": audience, "email": email,
            "email_verified": true, "sub": "1", "iat": now - 5, "exp": now + 600,
        });
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some("e2e-key".into());
        let der = self.key.to_pkcs1_der().unwrap();
        jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_rsa_der(der.as_bytes()),
        )
        .unwrap()
    }
}

/// `serve` with `PUSH_AUTH_AUDIENCE` and `PUSH_AUTH_SERVICE_ACCOUNTS`: the audit's requests —
/// no token, a garbage token, Basic credentials, an unsigned expired JWT for another audience —
/// are refused and load nothing; the subscription's own token loads the batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_pushes_without_the_subscriptions_token() {
    let Some(t) = TestCase::new("push_auth").await else {
        return;
    };
    t.create_table("nation", testdata("nation_schema.json"))
        .await;
    t.upload("_config/load.json", PIPE).await;
    let signer = Signer::start().await;
    let audience = "https://bq-ingest.example.run.app/";
    let pusher = "push@local-project.iam.gserviceaccount.com";
    let service = t
        .spawn_service(
            Mode::Serve,
            &[
                ("PUSH_AUTH_AUDIENCE", audience),
                ("PUSH_AUTH_SERVICE_ACCOUNTS", pusher),
                ("PUSH_AUTH_KEYS_URL", &signer.url),
            ],
        )
        .await;
    let url = format!("{}/", service.url().expect("serve has a url"));
    let marker = t
        .upload_dir_only("nation", testdata("nation"), |_| true)
        .await
        .unwrap();
    let body = t.push_envelope(&marker, "m-auth");
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(
            json!({"iss": "https://accounts.google.com", "aud": "https://other/",
                   "email": pusher, "exp": 1_600_000_000})
            .to_string()
        )
    );
    let post = |authorization: Option<String>| {
        let mut request = t.stack.http.post(&url).json(&body);
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        async move {
            let response = request.send().await.expect("POST to serve");
            response.status().as_u16()
        }
    };
    assert_eq!(post(None).await, 401, "no token");
    assert_eq!(
        post(Some("Bearer garbage".into())).await,
        403,
        "garbage token"
    );
    assert_eq!(
        post(Some("Basic dXNlcjpwYXNz".into())).await,
        401,
        "Basic credentials"
    );
    assert_eq!(
        post(Some(format!("Bearer {unsigned}"))).await,
        403,
        "unsigned JWT"
    );
    let other_account = signer.token(audience, "someone@else.iam.gserviceaccount.com");
    assert_eq!(post(Some(format!("Bearer {other_account}"))).await, 403);
    assert!(t.jobs().await.is_empty(), "nothing was loaded");

    let token = signer.token(audience, pusher);
    assert_eq!(post(Some(format!("Bearer {token}"))).await, 200);
    assert_eq!(t.count("nation").await, 25);
    let log = service.log_text();
    assert!(log.contains("push refused (403)"), "refusals are logged");
    assert!(
        !log.contains(&token) && !log.contains(&unsigned),
        "no token in the logs"
    );
}

/// A notification for a bucket that does not exist is a final failure, recorded and
/// acknowledged — not a 503 redelivered until dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_is_a_final_recorded_failure() {
    let Some(t) = TestCase::new("missing_bucket").await else {
        return;
    };
    let service = t.spawn_service(Mode::Serve, &[]).await;
    let mut body = t.push_envelope(
        &ingest_core::ports::ObjectMeta {
            name: t.object("nation/_SUCCESS"),
            size: 0,
            generation: 1,
            updated: None,
        },
        "m-missing",
    );
    body["message"]["attributes"]["bucketId"] = json!("no-such-bucket-e2e");
    let url = format!("{}/", service.url().unwrap());
    let (status, answer) = t.post_json(&url, &body).await;
    assert_eq!(status, 200, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["outcome"], "failed");
    let error = text(&answer["error"]);
    assert!(error.contains("gs://no-such-bucket-e2e"), "{error}");
    assert!(error.contains("does not exist"), "{error}");
    t.wait_for_state_row(
        |r| {
            text(&r["marker_uri"]).starts_with("gs://no-such-bucket-e2e/") && r["state"] == "failed"
        },
        TIMEOUT,
    )
    .await;
}

/// A marker whose path names an invalid dataset (`my-ds`) is rejected before any request to
/// GCS or BigQuery; a request body that stalls gets 408 after the body timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_destinations_cost_no_request_and_stalled_bodies_get_408() {
    let Some(t) = TestCase::new("early_reject").await else {
        return;
    };
    let gcs = CountingProxy::start(&t.stack.gcs_host).await;
    let bigquery = CountingProxy::start(&t.stack.bigquery_host).await;
    let service = t
        .spawn_service(
            Mode::Serve,
            &[
                ("STORAGE_EMULATOR_HOST", &gcs.url()),
                ("BIGQUERY_EMULATOR_HOST", &bigquery.url()),
                ("BODY_TIMEOUT_SECONDS", "2"),
                // The test's own prefix filter would hide the invalid path's own dataset.
                ("INCLUDE_PREFIXES", ""),
            ],
        )
        .await;
    let url = format!("{}/", service.url().unwrap());
    let marker = t.upload("my-ds/t/_SUCCESS", Vec::new()).await;
    let mut body = t.push_envelope(&marker, "m-reject");
    body["message"]["attributes"]["objectId"] = json!("my-ds/t/_SUCCESS");
    gcs.reset();
    bigquery.reset();
    let (status, answer) = t.post_json(&url, &body).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer.contains("rejected") && answer.contains("dataset id"),
        "{answer}"
    );
    assert_eq!(gcs.total(), 0, "{}", gcs.describe());
    assert_eq!(bigquery.total(), 0, "{}", bigquery.describe());

    // Half a request body, then silence.
    let port = service.port().unwrap();
    let started = Instant::now();
    let answer = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .write_all(
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                  Content-Length: 500\r\n\r\n{\"message\": {",
            )
            .unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut answer = vec![0u8; 4096];
        let n = stream.read(&mut answer).unwrap_or(0);
        String::from_utf8_lossy(&answer[..n]).to_string()
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    service
        .wait_for_log(|l| l["outcome"] == "body_timeout", Duration::from_secs(5))
        .await;
}

/// Exactly what the Python function's `backfill.py` publishes — empty data, `bucketId`,
/// `objectId` and `_metaInfo`, no `eventType` or `objectGeneration` — loads the batch through
/// `pull`, and pushed to `serve` too (the earlier main acknowledged it with an ERROR in pull
/// mode, losing the batch, and answered 400 in push mode).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_of_the_python_backfill_load_their_batch() {
    let Some(t) = TestCase::new("python_backfill").await else {
        return;
    };
    t.create_table("nation", testdata("nation_schema.json"))
        .await;
    t.upload("_config/load.json", PIPE).await;
    // The batches exist; their own notifications go to the test's subscription, which no
    // service reads: only the backfill's messages reach bq-ingest.
    let b1 = t.upload_dir("nation/b1", testdata("nation")).await.unwrap();
    t.upload_dir("nation/b2", testdata("nation")).await.unwrap();
    let attributes = |name: &str| {
        json!({
            "bucketId": t.bucket(),
            "objectId": t.object(name),
            "_metaInfo": "this message was submitted with gcs_ocn_bq_ingest backfill.py utility",
        })
    };
    let (topic, subscription) = t.create_side_topic("backfill-py").await;
    let pull = t.spawn_pull_on(&subscription, &[]).await;
    t.publish_raw(&topic, &attributes("nation/b1/_SUCCESS"), b"")
        .await;
    t.wait_for_count("nation", 25, TIMEOUT).await;
    let marker_uri = t.uri("nation/b1/_SUCCESS");
    let row = t
        .wait_for_state_row(|r| text(&r["marker_uri"]) == marker_uri, TIMEOUT)
        .await;
    assert_eq!(row["state"], "done");
    assert_eq!(
        text(&row["marker_generation"]),
        b1.generation.to_string(),
        "the live generation"
    );
    drop(pull);

    let serve = t.spawn_service(Mode::Serve, &[]).await;
    let envelope = json!({
        "message": {"data": "", "attributes": attributes("nation/b2/_SUCCESS"), "messageId": "py-1"},
        "subscription": "projects/local-project/subscriptions/backfill",
    });
    let (status, answer) = t
        .post_json(&format!("{}/", serve.url().unwrap()), &envelope)
        .await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("\"outcome\":\"done\""), "{answer}");
    assert_eq!(t.count("nation").await, 50);
}

/// A token endpoint for a generated service-account key: it records every assertion it is sent
/// and answers each with a fresh access token and id token, all of them secrets that must never
/// reach a log.
struct TokenServer {
    url: String,
    issued: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl TokenServer {
    async fn start() -> TokenServer {
        let issued = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let seen = issued.clone();
        let app = axum::Router::new().route(
            "/token",
            axum::routing::post(move |body: String| {
                let seen = seen.clone();
                async move {
                    let assertion = body
                        .split('&')
                        .find_map(|pair| pair.strip_prefix("assertion="))
                        .unwrap_or_default()
                        .to_string();
                    let n = rand::random::<u64>();
                    let access = format!("ya29.e2e-access-{n:016x}");
                    let id = format!("eyJhbGciOiJSUzI1NiJ9.e2e-id-{n:016x}.c2lnbmF0dXJl");
                    let mut seen = seen.lock().unwrap();
                    seen.extend([assertion, access.clone(), id.clone()]);
                    let answer = json!({"access_token": access, "id_token": id,
                                        "token_type": "Bearer", "expires_in": 3599});
                    ([("content-type", "application/json")], answer.to_string())
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/token", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        TokenServer { url, issued }
    }

    /// Every assertion received and every token handed out.
    fn secrets(&self) -> Vec<String> {
        self.issued.lock().unwrap().clone()
    }
}

/// A service-account key file whose `token_uri` is `token_url`, and the PEM of its key.
fn service_account_key(dir: &std::path::Path, token_url: &str) -> (std::path::PathBuf, String) {
    use rsa::pkcs8::{EncodePrivateKey, LineEnding};
    let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("RSA key");
    let pem = key.to_pkcs8_pem(LineEnding::LF).expect("PEM").to_string();
    let file = json!({
        "type": "service_account",
        "project_id": "local-project",
        "private_key_id": "e2e0123456789abcdef",
        "private_key": pem,
        "client_email": "bq-ingest@local-project.iam.gserviceaccount.com",
        "client_id": "1234567890",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_url,
    });
    let path = dir.join("service-account.json");
    std::fs::write(&path, file.to_string()).expect("write the key file");
    (path, pem)
}

/// Issue 13, item 4: the binary at `RUST_LOG=trace`, with real credentials (a generated
/// service-account key whose token endpoint is local) and the emulators reached as "real"
/// endpoints (`BQ_INGEST_*_ENDPOINT`, so every request carries `Authorization: Bearer …`),
/// loads a batch — and its whole output holds no access token, id token, signed assertion,
/// private key or `Authorization` value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_logs_at_trace_level() {
    let Some(t) = TestCase::new("secrets").await else {
        return;
    };
    t.create_table("nation", testdata("nation_schema.json"))
        .await;
    // No emulator schema fill against a "real" endpoint: the load names its schema.
    let schema: Value =
        serde_json::from_slice(&std::fs::read(testdata("nation_schema.json")).unwrap()).unwrap();
    let load = json!({"fieldDelimiter": "|", "schema": {"fields": schema}});
    t.upload("_config/load.json", load.to_string()).await;
    let tokens = TokenServer::start().await;
    let dir = std::env::temp_dir().join(format!("bq-ingest-secrets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (key_file, pem) = service_account_key(&dir, &tokens.url);
    let env = t.stack.service_env();
    let host = |name: &str| {
        env.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    // GCS through a proxy that records the Authorization headers it sees.
    let gcs = CountingProxy::start(&host("STORAGE_EMULATOR_HOST")).await;
    let bigquery = host("BIGQUERY_EMULATOR_HOST");
    let mut service = t
        .spawn_service(
            Mode::Serve,
            &[
                ("RUST_LOG", "trace"),
                ("GOOGLE_APPLICATION_CREDENTIALS", key_file.to_str().unwrap()),
                ("STORAGE_EMULATOR_HOST", ""),
                ("BIGQUERY_EMULATOR_HOST", ""),
                ("PUBSUB_EMULATOR_HOST", ""),
                ("BQ_INGEST_STORAGE_ENDPOINT", &gcs.url()),
                ("BQ_INGEST_BIGQUERY_ENDPOINT", &bigquery),
            ],
        )
        .await;
    let url = format!("{}/", service.url().expect("serve has a url"));
    let marker = t
        .upload_dir_only("nation", testdata("nation"), |_| true)
        .await
        .unwrap();
    let (status, body) = t
        .post_json(&url, &t.push_envelope(&marker, "m-secrets"))
        .await;
    assert_eq!(status, 200, "{body}\n{}", service.log_tail(40));
    assert_eq!(t.count("nation").await, 25, "loaded with the credentials");
    service.stop().await;

    let secrets = tokens.secrets();
    assert!(
        secrets.len() >= 3,
        "the service fetched a token with the key: {secrets:?}"
    );
    let sent: Vec<Option<String>> = gcs
        .requests()
        .into_iter()
        .map(|r| r.authorization)
        .collect();
    assert!(!sent.is_empty());
    for authorization in &sent {
        let token = authorization
            .as_deref()
            .and_then(|a| a.strip_prefix("Bearer "));
        assert!(
            token.is_some_and(|t| secrets.iter().any(|s| s == t)),
            "every GCS request carried an access token of the token endpoint: {authorization:?}"
        );
    }
    let log = service.log_text();
    let requests = service.log_matching(|line| {
        line["severity"] == "DEBUG" && line["service"].is_string() && line["operation"].is_string()
    });
    assert!(
        requests.len() >= 5,
        "every Google request is logged at DEBUG (service, operation, path, status): {}",
        service.log_tail(20)
    );
    for secret in &secrets {
        assert!(!secret.is_empty());
        assert!(
            !log.contains(secret.as_str()),
            "a token or assertion is in the log"
        );
    }
    // The key itself: any of its base64 lines.
    for line in pem.lines().filter(|l| !l.starts_with("-----")) {
        assert!(
            !log.contains(line),
            "a line of the private key is in the log"
        );
    }
    let lower = log.to_ascii_lowercase();
    assert!(
        !lower.contains("bearer ya29"),
        "an Authorization value is in the log"
    );
    assert!(!log.contains("ya29."), "an access token is in the log");
    let _ = std::fs::remove_dir_all(&dir);
}
