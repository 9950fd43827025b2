//! The `healthscore` binary as an operator runs it: `check-config` on a service configuration
//! with secrets in it, and with librdkafka properties it would refuse at start; and its flags
//! as the README and docs/ show them, each with a help line.

use std::path::PathBuf;
use std::process::{Command, Output};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("healthscore-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `healthscore check-config --config <file>` with only `env` as the environment.
fn check_config(file: &std::path::Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_healthscore"));
    cmd.arg("check-config").arg("--config").arg(file).env_clear();
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// `check-config` on `toml` (written to a scratch file), with no environment: it must refuse
/// it; returns what it printed on standard error.
fn refused(name: &str, toml: &str) -> String {
    let dir = scratch(name);
    let file = dir.join("service.toml");
    std::fs::write(&file, toml).unwrap();
    let out = check_config(&file, &[]);
    std::fs::remove_dir_all(&dir).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    stderr
}

#[test]
fn check_config_takes_secrets_from_the_environment_and_files_and_never_prints_them() {
    let dir = scratch("secrets");
    let key_password = dir.join("ssl-key-password");
    std::fs::write(&key_password, "file-secret-4e1b\n").unwrap();
    let file = dir.join("service.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[kafka.client]
"security.protocol" = "SASL_SSL"
"sasl.mechanism" = "SCRAM-SHA-512"
"sasl.username" = "healthscore"
"sasl.password" = "${{env:KAFKA_PASSWORD}}"
"ssl.key.password" = "${{file:{}}}"
"#,
            key_password.display()
        ),
    )
    .unwrap();
    let out = check_config(
        &file,
        &[
            ("KAFKA_PASSWORD", "env-secret-9c2d"),
            // A dotted librdkafka key from the environment: `_` stands for `.`.
            ("HEALTHSCORE__KAFKA__PRODUCER__LINGER_MS", "20"),
            ("HEALTHSCORE__KAFKA__CLIENT__SSL_KEYSTORE_PASSWORD", "env-secret-77aa"),
            ("HEALTHSCORE__HTTP__TOKEN", "http-secret-0123456789"),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    for secret in ["env-secret-9c2d", "file-secret-4e1b", "env-secret-77aa", "http-secret-0123456789"] {
        assert!(!stdout.contains(secret) && !stderr.contains(secret), "{secret} printed:\n{stdout}{stderr}");
    }
    for shown in [
        r#""sasl.password" = "(redacted)""#,
        r#""ssl.key.password" = "(redacted)""#,
        r#""ssl.keystore.password" = "(redacted)""#,
        r#""sasl.username" = "healthscore""#,
        r#""linger.ms" = "20""#,
        r#"token = "(redacted)""#,
    ] {
        assert!(stdout.contains(shown), "`{shown}` missing:\n{stdout}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn check_config_refuses_what_librdkafka_would_refuse_at_start_naming_every_key() {
    let stderr = refused(
        "unknown",
        r#"
[kafka.consumer]
"no.such.property" = "1"
compression_type = "lz4"

[kafka.producer]
"linger.ms" = "soon"
"#,
    );
    for key in [
        r#"kafka.consumer."no.such.property""#,
        r#"kafka.consumer."compression_type""#,
        r#"kafka.producer."linger.ms""#,
    ] {
        assert!(stderr.contains(key), "{key} not named:\n{stderr}");
    }
}

#[test]
fn a_missing_secret_and_a_connection_setting_for_one_client_only_are_named() {
    let stderr = refused(
        "missing",
        r#"
[kafka.client]
"sasl.password" = "${env:NOT_SET_ANYWHERE}"

[kafka.consumer]
"security.protocol" = "SSL"
"#,
    );
    assert!(stderr.contains(r#"kafka.client."sasl.password""#) && stderr.contains("NOT_SET_ANYWHERE"), "{stderr}");
    assert!(stderr.contains(r#"kafka.consumer."security.protocol""#) && stderr.contains("[kafka.client]"), "{stderr}");
}

/// Every command line the README and docs/ show, with where it is shown: the lines of fenced
/// code blocks and the inline code spans that start with `healthscore` (or
/// `./target/release/healthscore`, or `cargo run ... --`), after any `VAR=value` prefix,
/// cut at the first shell operator or comment.
fn documented_commands() -> Vec<(String, Vec<String>)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        // The performance log is history: its commands are as they were run then.
        .filter(|p| p.extension().is_some_and(|e| e == "md") && !p.ends_with("performance-log.md"))
        .collect();
    docs.sort();
    files.extend(docs);
    let mut commands = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.strip_prefix(root).unwrap().display().to_string();
        commands.extend(commands_in(&text).into_iter().map(|(line, args)| (format!("{name}:{line}"), args)));
    }
    commands
}

/// The command lines in one Markdown text, with their line numbers (see [`documented_commands`]).
fn commands_in(markdown: &str) -> Vec<(usize, Vec<String>)> {
    let mut found = Vec::new();
    let mut fenced = false;
    let mut continued: Option<(usize, String)> = None;
    for (i, line) in markdown.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        let candidates: Vec<(usize, String)> = if fenced {
            let (start, mut text) = continued.take().unwrap_or((i + 1, String::new()));
            text.push_str(line.trim());
            if let Some(head) = text.strip_suffix('\\') {
                continued = Some((start, format!("{head} ")));
                continue;
            }
            vec![(start, text.trim_start_matches("$ ").to_string())]
        } else {
            line.split('`').skip(1).step_by(2).map(|span| (i + 1, span.to_string())).collect()
        };
        for (at, text) in candidates {
            if let Some(args) = command_args(&text) {
                found.push((at, args));
            }
        }
    }
    found
}

/// The arguments after the program name when `text` runs healthscore, else `None`.
fn command_args(text: &str) -> Option<Vec<String>> {
    let mut words = shell_words(text).into_iter().peekable();
    while words.peek().is_some_and(|w| w.split_once('=').is_some_and(|(k, _)| is_env_name(k))) {
        words.next();
    }
    let program = words.next()?;
    if program == "cargo" {
        // `cargo run [--release ...] -- <args>`
        if words.next().as_deref() != Some("run") {
            return None;
        }
        words.by_ref().find(|w| w == "--")?;
    } else if program != "healthscore" && !program.ends_with("/healthscore") {
        return None;
    }
    let args: Vec<String> = words
        .take_while(|w| !["#", "|", "||", "&", "&&", ";", ">", ">>", "2>", "2>&1", "<"].contains(&w.as_str()))
        .collect();
    // A bare program name in prose ("`healthscore`") is no command line.
    (!args.is_empty()).then_some(args)
}

fn is_env_name(k: &str) -> bool {
    !k.is_empty() && k.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// Splits on blanks, keeping single- or double-quoted text together (without the quotes); a
/// trailing `&` is a word of its own.
fn shell_words(text: &str) -> Vec<String> {
    let (mut words, mut word, mut quote, mut in_word) = (Vec::new(), String::new(), None, false);
    for c in text.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => (quote, in_word) = (Some(c), true),
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                }
                in_word = false;
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    if let Some(last) = words.last_mut().filter(|w| w.len() > 1 && w.ends_with('&')) {
        last.pop();
        words.push("&".into());
    }
    words
}

/// Parses `args` as the binary would; `--help` and `--version` count as parsed, and so does a
/// command named without its required flags when no flag is given (prose: "`healthscore
/// backtest` replays history").
fn parses(args: &[String]) -> Result<(), String> {
    use clap::error::ErrorKind;
    use clap::Parser;
    let argv = std::iter::once("healthscore".to_string()).chain(args.iter().cloned());
    let named = !args.iter().any(|a| a.starts_with('-'));
    match healthscore::cli::Cli::try_parse_from(argv) {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => Ok(()),
        Err(e) if named && e.kind() == ErrorKind::MissingRequiredArgument => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// Issue 27: the README's examples had rotted (flags renamed, summaries out of date). Every
/// command line it and docs/ show must at least parse.
#[test]
fn every_command_the_readme_and_docs_show_parses() {
    let commands = documented_commands();
    let readme = commands.iter().filter(|(at, _)| at.starts_with("README.md:")).count();
    assert!(readme >= 8, "the README's command lines were not found (only {readme}): {commands:?}");
    for (at, args) in &commands {
        println!("{at}: healthscore {}", args.join(" "));
    }
    let failures: Vec<String> = commands
        .iter()
        .filter_map(|(at, args)| parses(args).err().map(|e| format!("{at}: healthscore {}\n{e}", args.join(" "))))
        .collect();
    assert!(failures.is_empty(), "documented commands that do not parse:\n\n{}", failures.join("\n\n"));
}

#[test]
fn the_documented_commands_check_finds_commands_and_refuses_an_unknown_flag() {
    let md = "Run `healthscore demo --duration 30` or `healthscore backtest --labels`,\n\n```\n$ HEALTHSCORE__KAFKA__BROKERS=k:9092 ./target/release/healthscore \\\n  run --config c.toml &   # the service\ncargo run --release -- replay --input x --no-such-flag\n```\nprose `healthscore` and `generate --brokers`\n";
    let found = commands_in(md);
    let args: Vec<String> = found.iter().map(|(line, a)| format!("{line}: {}", a.join(" "))).collect();
    assert_eq!(
        args,
        [
            "1: demo --duration 30",
            "1: backtest --labels",
            "4: run --config c.toml",
            "6: replay --input x --no-such-flag"
        ],
        "what the extractor reads"
    );
    assert_eq!(parses(&found[0].1), Ok(()));
    assert!(parses(&found[1].1).is_err(), "a flag without its required ones is a command line, and wrong");
    assert_eq!(parses(&found[2].1), Ok(()));
    let err = parses(&found[3].1).unwrap_err();
    assert!(err.contains("--no-such-flag"), "{err}");
    assert_eq!(parses(&["backtest".to_string()]), Ok(()), "a command named in prose");
}

/// The subcommands, by their path (`snapshot inspect`), each with its clap definition.
fn subcommands() -> Vec<(String, clap::Command)> {
    use clap::CommandFactory;
    let mut found = Vec::new();
    let mut todo: Vec<(String, clap::Command)> =
        healthscore::cli::Cli::command().get_subcommands().map(|c| (c.get_name().to_string(), c.clone())).collect();
    while let Some((path, cmd)) = todo.pop() {
        todo.extend(cmd.get_subcommands().map(|c| (format!("{path} {}", c.get_name()), c.clone())));
        found.push((path, cmd));
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// Issue 27: `demo` and `generate` had flags without a word of help.
#[test]
fn every_flag_of_every_command_has_a_help_line() {
    let missing: Vec<String> = subcommands()
        .iter()
        .flat_map(|(path, cmd)| {
            cmd.get_arguments()
                .filter(|a| a.get_help().is_none() && !["help", "version"].contains(&a.get_id().as_str()))
                .map(move |a| format!("{path}: {}", a.get_id()))
        })
        .collect();
    assert!(missing.is_empty(), "arguments without help: {missing:?}");
}

/// Issue 27: the global `--log-format` showed on every command, though only `run` and `demo` log.
#[test]
fn only_run_and_demo_take_a_log_format() {
    use clap::Parser;
    use healthscore::cli::{Cli, Command, LogFormat};
    let taking: Vec<String> = subcommands()
        .into_iter()
        .filter(|(_, cmd)| cmd.get_arguments().any(|a| a.get_long() == Some("log-format")))
        .map(|(path, _)| path)
        .collect();
    assert_eq!(taking, ["demo", "run"]);
    let top = Cli::try_parse_from(["healthscore", "--help"]).err().expect("--help ends the parse").to_string();
    assert!(!top.contains("log-format"), "{top}");
    // After the command, or before it as the container image's entrypoint puts it.
    let format = |args: &[&str]| match Cli::try_parse_from(args).map(|c| (c.log_format, c.command)) {
        Ok((before, Command::Run(a))) => Ok(a.log.or(before)),
        Ok((before, Command::Demo(a))) => Ok(a.log.or(before)),
        Ok(_) => Err("another command".to_string()),
        Err(e) => Err(format!("{:?}", e.kind())),
    };
    assert_eq!(format(&["healthscore", "run"]), Ok(LogFormat::Human));
    assert_eq!(format(&["healthscore", "run", "--log-format", "json"]), Ok(LogFormat::Json));
    assert_eq!(format(&["healthscore", "--log-format", "json", "run", "--config", "x.toml"]), Ok(LogFormat::Json));
    assert_eq!(format(&["healthscore", "--log-format", "json", "demo", "--log-format", "human"]), Ok(LogFormat::Human));
    assert!(Cli::try_parse_from(["healthscore", "replay", "--input", "x", "--log-format", "json"]).is_err());
    assert!(Cli::try_parse_from(["healthscore", "check-config", "--log-format", "json"]).is_err());
}
