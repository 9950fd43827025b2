//! The `healthscore` command line: parse arguments, pick a command, map errors to exit codes.
//! The flags and the commands' bodies live in the library's [`healthscore::cli`].

use std::process::ExitCode;

use clap::Parser;

use healthscore::cli::{self, Cli, Command};

#[global_allocator]
static ALLOC: healthscore::memory::Allocator = healthscore::memory::Allocator;

fn main() -> ExitCode {
    healthscore::memory::allow_huge_pages();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(args) => {
            cli::init_logs(args.log.or(cli.log_format));
            cli::service::run(args)
        }
        Command::CheckConfig(args) => cli::service::check_config(args),
        Command::Demo(args) => {
            cli::init_logs(args.log.or(cli.log_format));
            cli::demo::run(args)
        }
        Command::Replay(args) => cli::replay::run(args),
        Command::Generate(args) => cli::generate::run(args),
        Command::Backtest(args) => cli::backtest::backtest(args),
        Command::Calibrate(args) => cli::backtest::calibrate(args),
        Command::CheckScorecard(args) => cli::scorecard::check(args),
        Command::DefaultScorecard => cli::scorecard::print_default(),
        Command::Signals => cli::scorecard::signals(),
        Command::Snapshot { action } => cli::snapshot::run(action),
    }
}
