//! `bq-ingest explain`.

use std::io::Write;
use std::process::ExitCode;

use clap::Args;
use ingest_core::destination::{DestinationRegex, DestinationTable};
use ingest_core::explain::{explain_with_table, Explanation};
use ingest_core::settings::Settings;

use super::Format;

/// Arguments of `explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Destination regex (default: `DESTINATION_REGEX`, else the built-in one).
    #[arg(long)]
    destination_regex: Option<String>,
    /// The destination a `_config/load.json` gives with `destinationTable`:
    /// `[project.]dataset.table`. The regex then needs no `dataset` or `table` group.
    #[arg(long, value_name = "[PROJECT.]DATASET.TABLE")]
    destination_table: Option<String>,
    /// Success marker file name (default: `SUCCESS_FILENAME`, else `_SUCCESS`).
    #[arg(long)]
    success_filename: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Also read the bucket: for each success marker, the `_config/` files on its path and the
    /// batch listing give the real plan (merged config, files, job ids, bytes), as
    /// `backfill --dry-run` prints it. Needs the settings of a real run (a project).
    #[arg(long)]
    live: bool,
    /// Object paths: `gs://bucket/object` or `bucket/object`.
    #[arg(required = true)]
    paths: Vec<String>,
}

/// Runs `explain`: exit status 1 when any path fails (or the settings are invalid).
pub fn run(args: ExplainArgs) -> ExitCode {
    let table = match args
        .destination_table
        .as_deref()
        .map(parse_destination_table)
    {
        None => None,
        Some(Ok(t)) => Some(t),
        Some(Err(message)) => {
            eprintln!("bq-ingest explain: --destination-table: {message}");
            return ExitCode::FAILURE;
        }
    };
    // With a destination table, DESTINATION_REGEX may lack the dataset and table groups: it is
    // checked below, knowing that, instead of by Settings.
    let env_regex = std::env::var("DESTINATION_REGEX").ok();
    let lookup = |k: &str| match k {
        "DESTINATION_REGEX" if table.is_some() => None,
        _ => std::env::var(k).ok(),
    };
    let mut settings = match Settings::from_lookup(lookup) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bq-ingest explain: {e}");
            return ExitCode::FAILURE;
        }
    };
    let pattern = args
        .destination_regex
        .clone()
        .or(env_regex.filter(|_| table.is_some()));
    if let Some(pattern) = &pattern {
        match DestinationRegex::new(pattern, table.is_some()) {
            Ok(r) => settings.destination_regex = r,
            Err(e) => {
                eprintln!("bq-ingest explain: --destination-regex: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if let Some(name) = args.success_filename {
        settings.success_filename = name;
    }
    let live = match args.live.then(|| Live::start(settings.clone())).transpose() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("bq-ingest explain --live: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut failed = false;
    for path in &args.paths {
        let e = explain_with_table(&settings, path, table.as_ref());
        failed |= e.error.is_some();
        let plan = match &live {
            Some(live) if e.trigger == "success" && e.error.is_none() => Some(live.plan(path)),
            _ => None,
        };
        failed |= plan
            .as_ref()
            .is_some_and(|p| p.as_ref().map_or(true, |d| d.error.is_some()));
        let written = match args.format {
            Format::Json => {
                let mut line = serde_json::to_value(&e).unwrap_or_default();
                if let Some(plan) = &plan {
                    line["live"] = match plan {
                        Ok(d) => super::backfill::plan_json(d),
                        Err(error) => serde_json::json!({"marker": path, "error": error}),
                    };
                }
                writeln!(out, "{line}")
            }
            Format::Text => write_text(&mut out, &e).and_then(|()| match &plan {
                Some(Ok(d)) => {
                    writeln!(out, "  live plan:")?;
                    super::backfill::write_plan(&mut out, d, "    ", true)
                }
                Some(Err(error)) => writeln!(out, "  live plan:\n    error:       {error}"),
                None => Ok(()),
            }),
        };
        if written.is_err() {
            return ExitCode::FAILURE;
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// What `--live` needs: the service's runtime over the real (or emulated) GCS and BigQuery.
struct Live {
    tokio: tokio::runtime::Runtime,
    runtime: ingest_service::Runtime,
}

impl Live {
    fn start(settings: Settings) -> Result<Live, String> {
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let runtime = tokio
            .block_on(ingest_service::Runtime::build(settings))
            .map_err(|e| e.to_string())?;
        Ok(Live { tokio, runtime })
    }

    /// The plan of the marker at `path` at its live generation, as `backfill --dry-run` finds it.
    fn plan(&self, path: &str) -> Result<ingest_core::ingest::DryRun, String> {
        let (bucket, name) = ingest_core::explain::split_path(path)
            .ok_or_else(|| format!("{path:?} is not an object path"))?;
        let ingestor = &self.runtime.ingestor;
        self.tokio.block_on(async {
            let meta = ingestor
                .store()
                .stat(bucket, name)
                .await
                .map_err(|e| e.to_string())?;
            let event = ingest_core::event::ObjectEvent::finalized(bucket, name, meta.generation);
            ingestor.dry_run(&event).await.map_err(|e| e.to_string())
        })
    }
}

/// `[project.]dataset.table`, as `destinationTable` in `load.json` names it.
fn parse_destination_table(value: &str) -> Result<DestinationTable, String> {
    let parts: Vec<&str> = value.split('.').collect();
    let (project_id, dataset_id, table_id) = match parts.as_slice() {
        [d, t] => (None, *d, *t),
        [p, d, t] => (Some(p.to_string()), *d, *t),
        _ => return Err(format!("{value:?} is not [project.]dataset.table")),
    };
    if dataset_id.is_empty() || table_id.is_empty() {
        return Err(format!("{value:?} is not [project.]dataset.table"));
    }
    Ok(DestinationTable {
        project_id,
        dataset_id: dataset_id.to_string(),
        table_id: table_id.to_string(),
    })
}

fn write_text(out: &mut impl Write, e: &Explanation) -> std::io::Result<()> {
    writeln!(out, "{}", e.path)?;
    writeln!(out, "  trigger:         {}", e.trigger)?;
    if let Some(d) = &e.destination {
        writeln!(
            out,
            "  destination:     {}.{}.{}{}",
            d.project.as_deref().unwrap_or("(no project set)"),
            d.dataset,
            d.table,
            d.partition.as_deref().unwrap_or("")
        )?;
    }
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_string());
    if e.trigger == "ignore" {
        if let Some(prefix) = &e.table_prefix {
            writeln!(
                out,
                "  table prefix:    {prefix} (the lock of this ordered table)"
            )?;
        }
    } else {
        writeln!(out, "  batch:           {}", opt(&e.batch))?;
        writeln!(out, "  batch timestamp: {}", opt(&e.batch_timestamp))?;
        writeln!(out, "  table prefix:    {}", opt(&e.table_prefix))?;
        writeln!(out, "  job id prefix:   {}", opt(&e.job_id_prefix))?;
    }
    if let Some(err) = &e.error {
        writeln!(out, "  error:           {err}")?;
    }
    Ok(())
}
