use std::collections::HashMap;

use super::*;

fn env(pairs: &[(&str, String)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    move |name: &str| map.get(name).cloned()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ingest-google-{name}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_credentials_file_comes_before_the_gcloud_configuration() {
    let dir = temp_dir("order");
    let key = dir.join("key.json");
    std::fs::write(
        &key,
        r#"{"type": "service_account", "project_id": "from-key"}"#,
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("configurations")).unwrap();
    std::fs::write(
        dir.join("configurations/config_default"),
        "[core]\nproject = from-gcloud\n",
    )
    .unwrap();
    let lookup = env(&[
        ("GOOGLE_APPLICATION_CREDENTIALS", key.display().to_string()),
        ("CLOUDSDK_CONFIG", dir.display().to_string()),
    ]);
    let found = project_from_files(&lookup).unwrap();
    assert_eq!(found.project, "from-key");
    assert_eq!(found.source, ProjectSource::CredentialsFile(key));

    let lookup = env(&[("CLOUDSDK_CONFIG", dir.display().to_string())]);
    let found = project_from_files(&lookup).unwrap();
    assert_eq!(found.project, "from-gcloud");
    assert!(
        found.source.to_string().contains("config_default"),
        "{}",
        found.source
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn gcloud_adc_quota_project_active_configuration_and_override() {
    let dir = temp_dir("gcloud");
    std::fs::write(
        dir.join("application_default_credentials.json"),
        r#"{"type": "authorized_user", "quota_project_id": "quota-p"}"#,
    )
    .unwrap();
    let lookup = env(&[("CLOUDSDK_CONFIG", dir.display().to_string())]);
    assert_eq!(project_from_files(&lookup).unwrap().project, "quota-p");

    std::fs::remove_file(dir.join("application_default_credentials.json")).unwrap();
    std::fs::create_dir_all(dir.join("configurations")).unwrap();
    std::fs::write(dir.join("active_config"), "work\n").unwrap();
    std::fs::write(
        dir.join("configurations/config_work"),
        "[core]\nproject = work-p\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("configurations/config_default"),
        "[core]\nproject = default-p\n",
    )
    .unwrap();
    assert_eq!(project_from_files(&lookup).unwrap().project, "work-p");
    let named = env(&[
        ("CLOUDSDK_CONFIG", dir.display().to_string()),
        ("CLOUDSDK_ACTIVE_CONFIG_NAME", "default".to_string()),
    ]);
    assert_eq!(project_from_files(&named).unwrap().project, "default-p");
    let overridden = env(&[
        ("CLOUDSDK_CONFIG", dir.display().to_string()),
        ("CLOUDSDK_CORE_PROJECT", "env-p".to_string()),
    ]);
    assert_eq!(project_from_files(&overridden).unwrap().project, "env-p");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn nothing_anywhere_is_none() {
    let dir = temp_dir("none");
    let lookup = env(&[("CLOUDSDK_CONFIG", dir.display().to_string())]);
    assert_eq!(project_from_files(&lookup), None);
    let broken = dir.join("broken.json");
    std::fs::write(&broken, "not json").unwrap();
    let lookup = env(&[
        (
            "GOOGLE_APPLICATION_CREDENTIALS",
            broken.display().to_string(),
        ),
        ("CLOUDSDK_CONFIG", dir.display().to_string()),
    ]);
    assert_eq!(project_from_files(&lookup), None);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn the_metadata_server_answers_with_its_flavor_only() {
    use axum::http::HeaderMap;
    let app = axum::Router::new().route(
        "/computeMetadata/v1/project/project-id",
        axum::routing::get(|headers: HeaderMap| async move {
            if headers.get("metadata-flavor").map(|v| v.as_bytes()) == Some(b"Google") {
                ([("metadata-flavor", "Google")], "meta-project").into_response_parts()
            } else {
                ([("metadata-flavor", "Google")], "").into_response_parts()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    crate::install_default_tls_provider();
    let http = reqwest::Client::new();
    assert_eq!(
        metadata_project(&http, Some(&host)).await.as_deref(),
        Some("meta-project")
    );
    // Nothing listens there: no project, quickly.
    let started = std::time::Instant::now();
    assert_eq!(metadata_project(&http, Some("127.0.0.1:9")).await, None);
    assert!(started.elapsed() < METADATA_HOST_TIMEOUT);
}

trait IntoParts {
    fn into_response_parts(self) -> axum::response::Response;
}

impl<T: axum::response::IntoResponse> IntoParts for T {
    fn into_response_parts(self) -> axum::response::Response {
        self.into_response()
    }
}
