//! Subcommand families. Each module owns its clap types and its `run` function.

mod attach;
pub mod check;
pub mod commit;
pub mod container;
pub mod cp;
pub mod events;
pub mod exec;
pub mod image;
pub mod images;
pub mod inspect;
pub mod metrics;
pub mod network;
pub mod networks;
pub mod pod;
pub mod pool;
pub mod run;
pub mod stats;
pub mod system;
pub mod top;
pub mod toplevel;
pub mod volume;
pub mod zone;

/// Do `action` to each of `names` as Docker's plural commands do: print what each gives, or one
/// line for each that failed, and fail if any did.
pub fn for_each_name<E: std::fmt::Display>(names: &[String], mut action: impl FnMut(&str) -> Result<String, E>) -> std::process::ExitCode {
    let mut failed = false;
    for name in names {
        match action(name) {
            Ok(shown) => println!("{shown}"),
            Err(err) => {
                eprintln!("moat: {err}");
                failed = true;
            }
        }
    }
    if failed {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}

/// Turn an error chain into the single line a user sees: `outer: cause: root cause`.
pub fn one_line(err: &anyhow::Error) -> String {
    let line = err.chain().map(ToString::to_string).collect::<Vec<_>>().join(": ");
    // A cause may quote bytes from a hostile file (a tar header in a loaded archive): keep the
    // line one line, and free of terminal control sequences.
    line.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// Logs go to stderr, filtered by `MOAT_LOG` (default: warnings only).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MOAT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).without_time().init();
}
