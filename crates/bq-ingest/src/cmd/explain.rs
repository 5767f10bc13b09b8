//! `bq-ingest explain`.

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use ingest_core::destination::DestinationRegex;
use ingest_core::explain::{explain, Explanation};
use ingest_core::settings::Settings;

/// Output format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// One JSON object per line.
    Json,
    /// Human-readable.
    Text,
}

/// Arguments of `explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Destination regex (default: `DESTINATION_REGEX`, else the built-in one).
    #[arg(long)]
    destination_regex: Option<String>,
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
    let mut settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bq-ingest explain: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(pattern) = &args.destination_regex {
        match DestinationRegex::new(pattern, false) {
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
        let e = explain(&settings, path);
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

fn write_text(out: &mut impl Write, e: &Explanation) -> std::io::Result<()> {
    writeln!(out, "{}", e.path)?;
    writeln!(out, "  trigger:         {}", e.trigger)?;
    if let Some(d) = &e.destination {
        writeln!(
            out,
            "  destination:     {}.{}.{}{}",
            d.project,
            d.dataset,
            d.table,
            d.partition.as_deref().unwrap_or("")
        )?;
    }
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_string());
    if e.trigger != "ignore" {
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
