//! The edge: argv → flags → rules, state and pipeline → exit code. anyhow lives here only.

use anyhow::{Context, Result};
use auditsentry::audit::exec::ExecLimits;
use auditsentry::audit::reassemble::ReassembleConfig;
use auditsentry::cli::{Cli, Command, ReplayArgs, RulesCommand};
use auditsentry::event::Host;
use auditsentry::pipeline::{self, DetectOptions, Detector, Pipeline};
use auditsentry::proc::NoFallback;
use auditsentry::rule::file as rules;
use auditsentry::rule::kql::EvalOptions;
use auditsentry::sink::json::JsonSink;
use auditsentry::state::SledStore;
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Replay(args) => replay(args),
        Command::Rules {
            command: RulesCommand::Check { paths },
        } => rules_check(&paths),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("auditsentry: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn replay(args: ReplayArgs) -> Result<ExitCode> {
    let rules = if args.rules.is_empty() {
        vec![rules::builtin()]
    } else {
        rules::load_paths(&args.rules)?
    };
    let store = match &args.state_dir {
        Some(dir) => {
            let (store, report) = SledStore::open(dir)
                .with_context(|| format!("opening state directory {}", dir.display()))?;
            if report.quarantined.is_some() {
                eprintln!("auditsentry: {report}");
            }
            store
        }
        None => SledStore::temporary().context("creating temporary state")?,
    };
    let detected = Host::detect();
    let host = Host {
        id: args.host_id.clone().unwrap_or(detected.id),
        name: args.host_name.clone().unwrap_or(detected.name),
    };
    let opts = DetectOptions {
        reassemble: ReassembleConfig {
            timeout_ms: args.reassembly_timeout_ms,
            max_in_flight: args.max_in_flight,
            ..ReassembleConfig::default()
        },
        exec_limits: ExecLimits::default(),
        eval: EvalOptions {
            ignore_above: args.ignore_above,
        },
        all_matches: args.all_matches,
        host,
        proc_capacity: 65_536,
    };
    let mut pipe = Pipeline::new(Detector::new(rules, store, Box::new(NoFallback), opts));
    let mut sink = JsonSink::stdout();
    let stats = pipeline::replay(&args.inputs, args.format, &mut pipe, &mut sink);
    let stats = match stats {
        Ok(s) => s,
        Err(e) => {
            eprintln!("auditsentry: {}", pipe.stats());
            return Err(e.into());
        }
    };
    if !args.quiet {
        eprintln!("auditsentry: {stats}");
    }
    Ok(ExitCode::SUCCESS)
}

fn rules_check(paths: &[std::path::PathBuf]) -> Result<ExitCode> {
    let mut bad = 0;
    for result in rules::check(paths) {
        match result {
            Ok(rule) => println!(
                "ok: {} ({}) {} [{}]",
                rule.source,
                rule.id,
                rule.name,
                match rule.kind {
                    rules::RuleKind::Query => "query",
                    rules::RuleKind::NewTerms { .. } => "new_terms",
                }
            ),
            Err(e) => {
                bad += 1;
                println!("error: {e}");
            }
        }
    }
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
