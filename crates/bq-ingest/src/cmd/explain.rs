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
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut failed = false;
    for path in &args.paths {
        let e = explain_with_table(&settings, path, table.as_ref());
        failed |= e.error.is_some();
        let written = match args.format {
            Format::Json => serde_json::to_string(&e)
                .map_err(std::io::Error::other)
                .and_then(|line| writeln!(out, "{line}")),
            Format::Text => write_text(&mut out, &e),
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
