//! Authenticated push (issue 13): OIDC tokens signed with RSA keys generated here, Google's key
//! endpoint played by a local server whose keys can be rotated, and every way a token can be
//! wrong. The router over the memory doubles does the ingest behind the layer.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::routing::get;
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ingest_core::ingest::Ingestor;
use ingest_core::settings::Settings;
use ingest_http::{router, HttpState, PushAuthConfig};
use ingest_memory::{MemoryClock, MemoryStore, MemoryWarehouse};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use serde_json::{json, Value};
use tower::ServiceExt;

const AUDIENCE: &str = "https://bq-ingest-test.a.run.app/";
const PUSHER: &str = "pusher@my-project.iam.gserviceaccount.com";
const BUCKET: &str = "b";
const MARKER: &str = "ds/t/_SUCCESS";

/// An RSA key pair with its `kid`.
struct TestKey {
    kid: String,
    private: RsaPrivateKey,
}

impl TestKey {
    fn generate(kid: &str) -> TestKey {
        let private = RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("RSA key");
        TestKey {
            kid: kid.to_string(),
            private,
        }
    }

    fn jwk(&self) -> Value {
        let public = self.private.to_public_key();
        json!({
            "kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.kid,
            "n": URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
            "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
        })
    }

    fn sign(&self, claims: &Value) -> String {
        let der = self.private.to_pkcs1_der().expect("DER");
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        encode(&header, claims, &EncodingKey::from_rsa_der(der.as_bytes())).expect("sign")
    }
}

/// Two keys, generated once for the whole file (2048-bit generation takes a while).
fn keys() -> &'static (TestKey, TestKey) {
    static KEYS: OnceLock<(TestKey, TestKey)> = OnceLock::new();
    KEYS.get_or_init(|| (TestKey::generate("key-a"), TestKey::generate("key-b")))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The claims of a Pub/Sub push token for the test's audience and account.
fn claims() -> Value {
    json!({
        "iss": "https://accounts.google.com",
        "aud": AUDIENCE,
        "email": PUSHER,
        "email_verified": true,
        "sub": "1234567890",
        "iat": now() - 10,
        "exp": now() + 3600,
    })
}

/// A local stand-in for Google's key endpoint: serves the JWKs it holds, counts fetches.
#[derive(Clone, Default)]
struct KeyServer {
    jwks: Arc<Mutex<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
}

impl KeyServer {
    async fn start(jwks: Vec<Value>) -> (KeyServer, String) {
        let server = KeyServer::default();
        *server.jwks.lock().unwrap() = jwks;
        let state = server.clone();
        let app = Router::new().route(
            "/certs",
            get(move || {
                let state = state.clone();
                async move {
                    state.fetches.fetch_add(1, Ordering::SeqCst);
                    let keys = state.jwks.lock().unwrap().clone();
                    (
                        [
                            (header::CACHE_CONTROL, "public, max-age=3600"),
                            (header::CONTENT_TYPE, "application/json"),
                        ],
                        json!({ "keys": keys }).to_string(),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/certs", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (server, url)
    }
}

struct Fixture {
    app: Router,
    warehouse: Arc<MemoryWarehouse>,
    generation: i64,
}

fn fixture(keys_url: &str) -> Fixture {
    fixture_with(keys_url, ingest_http::MIN_REFETCH)
}

fn fixture_with(keys_url: &str, min_refetch: std::time::Duration) -> Fixture {
    let clock = MemoryClock::new();
    let store = Arc::new(MemoryStore::new().with_clock(clock.clone()));
    store.create_bucket(BUCKET);
    store.insert(BUCKET, "ds/t/a.csv", b"1,x\n".to_vec());
    let generation = store.insert(BUCKET, MARKER, Vec::new()).generation;
    let warehouse = Arc::new(MemoryWarehouse::with_store(store.clone()).with_clock(clock.clone()));
    let settings = Settings {
        bq_project: Some("my-project".into()),
        ..Settings::default()
    };
    let ingestor = Ingestor::new(settings, store, warehouse.clone(), Arc::new(clock));
    let mut auth = PushAuthConfig::new(
        AUDIENCE,
        &format!("other@x.iam.gserviceaccount.com,{PUSHER}"),
    )
    .unwrap()
    .with_keys_url(keys_url);
    auth.min_refetch = min_refetch;
    let app = router(HttpState::new(Arc::new(ingestor)).with_auth(auth));
    Fixture {
        app,
        warehouse,
        generation,
    }
}

impl Fixture {
    fn push(&self, authorization: Option<&str>) -> Request<Body> {
        let body = json!({
            "message": {"attributes": {"bucketId": BUCKET, "objectId": MARKER,
                "objectGeneration": self.generation.to_string(), "eventType": "OBJECT_FINALIZE",
                "payloadFormat": "NONE"}, "messageId": "m-1"},
            "subscription": "projects/p/subscriptions/s"
        });
        let mut request = Request::post("/").header(header::CONTENT_TYPE, "application/json");
        if let Some(value) = authorization {
            request = request.header(header::AUTHORIZATION, value);
        }
        request.body(Body::from(body.to_string())).unwrap()
    }

    async fn send(&self, request: Request<Body>) -> (StatusCode, Value, Option<String>) {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let challenge = response
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap().to_string());
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, body, challenge)
    }

    async fn with_token(&self, token: &str) -> (StatusCode, Value) {
        let (status, body, _) = self.send(self.push(Some(&format!("Bearer {token}")))).await;
        (status, body)
    }
}

#[tokio::test]
async fn a_valid_token_passes_and_the_batch_loads() {
    let (a, _) = keys();
    let (server, url) = KeyServer::start(vec![a.jwk()]).await;
    let f = fixture(&url);
    let (status, body) = f.with_token(&a.sign(&claims())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["outcome"], "done");
    assert_eq!(f.warehouse.submitted().len(), 1);
    // The issuer without the scheme is Google's too; keys are cached.
    let mut other = claims();
    other["iss"] = json!("accounts.google.com");
    let (status, _) = f.with_token(&a.sign(&other)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        server.fetches.load(Ordering::SeqCst),
        1,
        "keys fetched once"
    );
}

#[tokio::test]
async fn no_token_or_another_scheme_is_401_with_a_bearer_challenge() {
    let (a, _) = keys();
    let (_, url) = KeyServer::start(vec![a.jwk()]).await;
    let f = fixture(&url);
    for authorization in [None, Some("Basic dXNlcjpwYXNz"), Some("Bearer")] {
        let (status, body, challenge) = f.send(f.push(authorization)).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{authorization:?}: {body}"
        );
        assert_eq!(challenge.as_deref(), Some("Bearer"));
        assert_eq!(body["outcome"], "unauthenticated");
    }
    assert!(f.warehouse.submitted().is_empty());
}

#[tokio::test]
async fn every_wrong_token_is_403_and_nothing_is_handled() {
    let (a, b) = keys();
    let (_, url) = KeyServer::start(vec![a.jwk()]).await;
    let f = fixture(&url);
    let with = |change: &dyn Fn(&mut Value)| {
        let mut c = claims();
        change(&mut c);
        a.sign(&c)
    };
    let valid = a.sign(&claims());
    let (head, rest) = valid.split_once('.').unwrap();
    let (payload, signature) = rest.split_once('.').unwrap();
    // The same header and signature over claims for another account.
    let mut forged_claims = claims();
    forged_claims["email"] = json!("attacker@evil.iam.gserviceaccount.com");
    let forged_payload = URL_SAFE_NO_PAD.encode(forged_claims.to_string());
    let tampered = format!("{head}.{forged_payload}.{signature}");
    let mut flipped = signature.as_bytes().to_vec();
    flipped[10] = if flipped[10] == b'A' { b'B' } else { b'A' };
    let bad_signature = format!("{head}.{payload}.{}", String::from_utf8(flipped).unwrap());
    let alg_none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT","kid":"key-a"}"#),
        URL_SAFE_NO_PAD.encode(claims().to_string())
    );
    let unverified = with(&|c| c["email_verified"] = json!(false));
    let cases: Vec<(&str, String, &str)> = vec![
        ("garbage", "not-a-jwt".into(), "not an RS256 JWT"),
        (
            "expired",
            with(&|c| {
                c["iat"] = json!(now() - 7200);
                c["exp"] = json!(now() - 3600);
            }),
            "not valid",
        ),
        (
            "wrong audience",
            with(&|c| c["aud"] = json!("https://other-service/")),
            "not valid",
        ),
        (
            "wrong issuer",
            with(&|c| c["iss"] = json!("https://evil.example.com")),
            "not valid",
        ),
        (
            "wrong account",
            with(&|c| c["email"] = json!("someone@else.iam.gserviceaccount.com")),
            "not allowed",
        ),
        ("unverified email", unverified, "not verified"),
        (
            "issued in the future",
            with(&|c| c["iat"] = json!(now() + 3600)),
            "future",
        ),
        ("tampered claims", tampered, "not valid"),
        ("tampered signature", bad_signature, "not valid"),
        ("alg none", alg_none, "not an RS256 JWT"),
        (
            "another key",
            b.sign(&claims()),
            "not one of Google's signing keys",
        ),
    ];
    for (case, token, reason) in cases {
        let (status, body) = f.with_token(&token).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{case}: {body}");
        assert_eq!(body["outcome"], "forbidden", "{case}");
        let error = body["error"].as_str().unwrap();
        assert!(error.contains(reason), "{case}: {error}");
        assert!(
            !error.contains(&token) || token.len() < 12,
            "{case}: the token is not echoed"
        );
    }
    assert!(f.warehouse.submitted().is_empty());
}

#[tokio::test]
async fn an_unknown_kid_refetches_the_keys_once() {
    let (a, b) = keys();
    let (server, url) = KeyServer::start(vec![a.jwk()]).await;
    let min_refetch = std::time::Duration::from_millis(300);
    let f = fixture_with(&url, min_refetch);
    assert_eq!(f.with_token(&a.sign(&claims())).await.0, StatusCode::OK);
    assert_eq!(server.fetches.load(Ordering::SeqCst), 1);
    // Google rotates its keys: key-b appears, some time after the keys were fetched.
    server.jwks.lock().unwrap().push(b.jwk());
    tokio::time::sleep(min_refetch).await;
    assert_eq!(f.with_token(&b.sign(&claims())).await.0, StatusCode::OK);
    assert_eq!(
        server.fetches.load(Ordering::SeqCst),
        2,
        "refetched on the unknown kid"
    );
    // A kid that Google never publishes does not make every request fetch.
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("forged".into());
    let der = a.private.to_pkcs1_der().unwrap();
    let forged = encode(
        &header,
        &claims(),
        &EncodingKey::from_rsa_der(der.as_bytes()),
    )
    .unwrap();
    for _ in 0..3 {
        assert_eq!(f.with_token(&forged).await.0, StatusCode::FORBIDDEN);
    }
    assert_eq!(
        server.fetches.load(Ordering::SeqCst),
        2,
        "no refetch within {min_refetch:?} of the last"
    );
}

#[tokio::test]
async fn unreachable_keys_are_503_so_the_push_is_retried() {
    let (a, _) = keys();
    let f = fixture("http://127.0.0.1:9/certs");
    let (status, body) = f.with_token(&a.sign(&claims())).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["retry"], true);
}

#[tokio::test]
async fn health_needs_no_token() {
    let (_, url) = KeyServer::start(vec![]).await;
    let f = fixture(&url);
    let response = f
        .app
        .clone()
        .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

/// Collects what the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn refusals_are_logged_with_the_reason_and_never_the_token() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let (a, _) = keys();
    let mut wrong = claims();
    wrong["aud"] = json!("https://other/");
    let tokens = [a.sign(&wrong), a.sign(&claims())];
    tracing::subscriber::with_default(subscriber, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (_, url) = KeyServer::start(vec![a.jwk()]).await;
            let f = fixture(&url);
            assert_eq!(f.with_token(&tokens[0]).await.0, StatusCode::FORBIDDEN);
            assert_eq!(f.with_token(&tokens[1]).await.0, StatusCode::OK);
            let (status, _, _) = f.send(f.push(Some("Basic c2VjcmV0OnBhc3N3b3Jk"))).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
        });
    });
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("push refused (403)"), "{text}");
    assert!(
        text.contains("InvalidAudience") || text.contains("audience"),
        "{text}"
    );
    for token in &tokens {
        let signature = token.rsplit('.').next().unwrap();
        assert!(
            !text.contains(signature),
            "a token's signature reached the logs"
        );
        assert!(!text.contains(token.as_str()));
    }
    assert!(
        !text.contains("c2VjcmV0OnBhc3N3b3Jk"),
        "Basic credentials reached the logs"
    );
}
