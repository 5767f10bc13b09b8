//! The project when no setting names one, found as Google's client libraries find it: the
//! metadata server, then the credentials file, then the gcloud configuration.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::header::HeaderValue;

/// The metadata server's address when `GCE_METADATA_HOST` is not set.
const METADATA_IP: &str = "169.254.169.254";
/// How long the metadata server may take: quick where there is none (a laptop, CI).
const METADATA_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a metadata server named by `GCE_METADATA_HOST` may take.
const METADATA_HOST_TIMEOUT: Duration = Duration::from_secs(3);

/// Where a discovered project came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectSource {
    /// The metadata server (Cloud Run, GCE, GKE; `GCE_METADATA_HOST` names another).
    MetadataServer,
    /// `project_id` (or `quota_project_id`) of a credentials file: `GOOGLE_APPLICATION_CREDENTIALS`
    /// or gcloud's `application_default_credentials.json`.
    CredentialsFile(PathBuf),
    /// `CLOUDSDK_CORE_PROJECT`, or `[core] project` of the active gcloud configuration.
    GcloudConfig(PathBuf),
}

impl std::fmt::Display for ProjectSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProjectSource::MetadataServer => f.write_str("the metadata server"),
            ProjectSource::CredentialsFile(path) => {
                write!(f, "the credentials file {}", path.display())
            }
            ProjectSource::GcloudConfig(path) => {
                write!(f, "the gcloud configuration {}", path.display())
            }
        }
    }
}

/// A project found by [`discover_project`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredProject {
    /// The project id.
    pub project: String,
    /// Where it was found.
    pub source: ProjectSource,
}

/// The project of this environment: the metadata server's (at `GCE_METADATA_HOST`, else
/// 169.254.169.254, asked for half a second), else the credentials file's, else the gcloud
/// configuration's; `None` when none names one. Reads the process environment.
pub async fn discover_project(http: &reqwest::Client) -> Option<DiscoveredProject> {
    let lookup = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    if let Some(project) = metadata_project(http, lookup("GCE_METADATA_HOST").as_deref()).await {
        return Some(DiscoveredProject {
            project,
            source: ProjectSource::MetadataServer,
        });
    }
    project_from_files(&lookup)
}

/// The credentials file's project, else the gcloud configuration's, as `lookup` (the
/// environment) points at them.
pub fn project_from_files(lookup: &dyn Fn(&str) -> Option<String>) -> Option<DiscoveredProject> {
    let gcloud_dir = gcloud_config_dir(lookup);
    let credentials = lookup("GOOGLE_APPLICATION_CREDENTIALS")
        .map(PathBuf::from)
        .into_iter()
        .chain(
            gcloud_dir
                .as_ref()
                .map(|d| d.join("application_default_credentials.json")),
        );
    for path in credentials {
        if let Some(project) = credentials_project(&path) {
            return Some(DiscoveredProject {
                project,
                source: ProjectSource::CredentialsFile(path),
            });
        }
    }
    if let Some(project) = lookup("CLOUDSDK_CORE_PROJECT") {
        return Some(DiscoveredProject {
            project: project.trim().to_string(),
            source: ProjectSource::GcloudConfig(PathBuf::from("CLOUDSDK_CORE_PROJECT")),
        });
    }
    let dir = gcloud_dir?;
    let active = lookup("CLOUDSDK_ACTIVE_CONFIG_NAME")
        .or_else(|| std::fs::read_to_string(dir.join("active_config")).ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "default".to_string());
    let path = dir.join("configurations").join(format!("config_{active}"));
    let project = gcloud_core_project(&std::fs::read_to_string(&path).ok()?)?;
    Some(DiscoveredProject {
        project,
        source: ProjectSource::GcloudConfig(path),
    })
}

/// `CLOUDSDK_CONFIG`, else `$HOME/.config/gcloud`.
fn gcloud_config_dir(lookup: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    lookup("CLOUDSDK_CONFIG")
        .map(PathBuf::from)
        .or_else(|| lookup("HOME").map(|home| Path::new(&home).join(".config").join("gcloud")))
}

/// `project_id`, else `quota_project_id`, of a credentials JSON file.
fn credentials_project(path: &Path) -> Option<String> {
    let content = std::fs::read(path).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&content).ok()?;
    ["project_id", "quota_project_id"]
        .iter()
        .find_map(|key| value[key].as_str().map(str::trim).filter(|p| !p.is_empty()))
        .map(str::to_string)
}

/// `project` in the `[core]` section of a gcloud configuration (an INI file).
///
/// ```
/// let config = "[core]\naccount = me@example.com\nproject = my-project\n\n[compute]\nzone = x\n";
/// assert_eq!(ingest_google::gcloud_core_project(config).as_deref(), Some("my-project"));
/// assert_eq!(ingest_google::gcloud_core_project("[compute]\nproject = no\n"), None);
/// ```
pub fn gcloud_core_project(ini: &str) -> Option<String> {
    let mut in_core = false;
    for line in ini.lines().map(str::trim) {
        if line.starts_with('[') {
            in_core = line == "[core]";
        } else if in_core {
            if let Some((key, value)) = line.split_once('=') {
                if key.trim() == "project" && !value.trim().is_empty() {
                    return Some(value.trim().to_string());
                }
            }
        }
    }
    None
}

/// The project id the metadata server answers, if one answers in time as a metadata server
/// (`Metadata-Flavor: Google`).
async fn metadata_project(http: &reqwest::Client, host: Option<&str>) -> Option<String> {
    let (host, timeout) = match host {
        Some(host) => (
            host.trim().trim_start_matches("http://"),
            METADATA_HOST_TIMEOUT,
        ),
        None => (METADATA_IP, METADATA_TIMEOUT),
    };
    let url = format!("http://{host}/computeMetadata/v1/project/project-id");
    let flavor = HeaderValue::from_static("Google");
    let request = http
        .get(&url)
        .header("Metadata-Flavor", flavor.clone())
        .timeout(timeout);
    let response = request.send().await.ok()?;
    if !response.status().is_success() || response.headers().get("Metadata-Flavor") != Some(&flavor)
    {
        return None;
    }
    let project = response.text().await.ok()?;
    let project = project.trim();
    (!project.is_empty()).then(|| project.to_string())
}

#[cfg(test)]
mod tests;
