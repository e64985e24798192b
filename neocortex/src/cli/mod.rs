//! The commands of the `neocortex` binary: arguments, dispatch and exit codes. Output
//! formats are in `output`, the system checks in `doctor`.

mod doctor;
mod output;

use clap::{Parser, Subcommand};
use neocortex::inspect::{self, Outcome, Verdict};
use neocortex::{CortexError, ErrorKind};

/// Exit codes, as `--help` and the crate docs list them.
pub(crate) mod exit {
    /// Done.
    pub(crate) const OK: i32 = 0;
    /// Refused (the segment is left alone, saying why) or not found; for `doctor`,
    /// something to fix was found.
    pub(crate) const REFUSED: i32 = 1;
    /// Bad usage: unknown command or option, a key that is not a number.
    pub(crate) const USAGE: i32 = 2;
    /// A system error, or a command this system does not support.
    pub(crate) const SYSTEM: i32 = 3;
}

const AFTER_HELP: &str = "\
KEY is a SysV key as `ipcs` shows it: hex (0x4e43a001) or decimal (may be negative).

Exit codes:
  0  done
  1  refused (the segment is left alone; the message says why and who is attached) or not
     found; for `doctor`, something to fix was found
  2  bad usage
  3  system error, or not supported on this system

Segments are only ever mapped read-only to be looked at, and no value is read. Removal takes
only this user's own neocortex segments whose creator is dead and that nobody is attached
to (rm --force: any of this user's neocortex segments); never a foreign segment or another
user's.";

/// The operator's tool for neocortex shared-memory segments.
#[derive(Debug, Parser)]
#[command(name = "neocortex", version, after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the SysV segments of this IPC namespace: neocortex ones (--all: every one)
    List {
        /// Print one JSON object, {"segments": [...]}
        #[arg(long)]
        json: bool,
        /// Also list segments that are not neocortex segments (marked foreign)
        #[arg(long)]
        all: bool,
    },
    /// Everything known about one segment: header, lock, members, semaphore sets, layout
    Inspect {
        /// The segment's key
        #[arg(value_parser = parse_key, allow_negative_numbers = true)]
        key: i32,
        /// Print one JSON object
        #[arg(long)]
        json: bool,
    },
    /// Remove stale segments: creation never finished, creator dead, nobody attached
    Gc {
        /// Only print what would be removed
        #[arg(long)]
        dry_run: bool,
        /// Also remove orphans: ready segments whose creator is dead and that nobody is
        /// attached to
        #[arg(long)]
        orphans: bool,
    },
    /// Remove one neocortex segment and its lock (refused while in use, unless --force)
    Rm {
        /// The segment's key
        #[arg(value_parser = parse_key, allow_negative_numbers = true)]
        key: i32,
        /// Remove it even when processes are attached or its creator lives: their next
        /// access fails with LockRemoved
        #[arg(long)]
        force: bool,
    },
    /// Check the system: IPC limits against use, systemd's RemoveIPC, world-writable and
    /// stale segments
    Doctor,
}

/// Parses a key as `ipcs` prints it (`0x` hex, up to 32 bits) or as a decimal `i32`.
fn parse_key(text: &str) -> Result<i32, String> {
    let key = if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        u32::from_str_radix(hex, 16)
            .map(|k| k as i32)
            .map_err(|e| format!("`{text}` is not a 32-bit hex key: {e}"))?
    } else {
        text.parse::<i32>()
            .or_else(|_| text.parse::<u32>().map(|k| k as i32))
            .map_err(|e| format!("`{text}` is not a key (hex 0x... or decimal): {e}"))?
    };
    if key == 0 {
        return Err("key 0 is IPC_PRIVATE: it names no segment".into());
    }
    Ok(key)
}

/// Runs the command line; returns the exit code.
pub(crate) fn run() -> i32 {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::List { json, all } => list(json, all),
        Command::Inspect { key, json } => inspect_one(key, json),
        Command::Gc { dry_run, orphans } => gc(dry_run, orphans),
        Command::Rm { key, force } => rm(key, force),
        Command::Doctor => doctor::run(),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("neocortex: {e}");
            error_code(&e)
        }
    }
}

/// The exit code for an error.
fn error_code(e: &CortexError) -> i32 {
    match e.kind() {
        ErrorKind::NotFound | ErrorKind::AlreadyExists | ErrorKind::LayoutMismatch => exit::REFUSED,
        ErrorKind::InvalidInput => exit::USAGE,
        _ => exit::SYSTEM,
    }
}

fn list(json: bool, all: bool) -> Result<i32, CortexError> {
    let segments: Vec<_> = inspect::segments()?
        .into_iter()
        .filter(|s| all || s.neocortex.is_some())
        .collect();
    if json {
        println!("{}", output::list_json(&segments));
    } else {
        print!("{}", output::table(&segments));
    }
    Ok(exit::OK)
}

fn inspect_one(key: i32, json: bool) -> Result<i32, CortexError> {
    let info = inspect::segment(key)?;
    if json {
        println!("{}", output::segment_json(&info));
    } else {
        print!("{}", output::details(&info));
    }
    Ok(exit::OK)
}

fn gc(dry_run: bool, orphans: bool) -> Result<i32, CortexError> {
    let found = inspect::collect(orphans, dry_run)?;
    let mut code = exit::OK;
    let (mut removed, mut kept_orphans) = (0, 0);
    for c in &found {
        let what = output::one_line(&c.info);
        match &c.outcome {
            Outcome::Removed => {
                removed += 1;
                println!("removed       {what}");
            }
            Outcome::WouldRemove => {
                removed += 1;
                println!("would remove  {what}");
            }
            Outcome::Kept(_) if c.info.verdict == Verdict::Orphan && !orphans => {
                kept_orphans += 1;
            }
            Outcome::Kept(why) => println!("kept          {what}\n              {why}"),
            Outcome::Failed(e) => {
                code = exit::SYSTEM;
                println!("FAILED        {what}\n              {e}");
            }
            _ => println!("?             {what}"),
        }
    }
    let verb = if dry_run { "would remove" } else { "removed" };
    print!("gc: {verb} {removed} segment(s)");
    if kept_orphans > 0 {
        print!(
            "; {kept_orphans} orphan(s) left (ready, creator dead, nobody attached): \
             `neocortex gc --orphans` removes them"
        );
    }
    println!();
    Ok(code)
}

fn rm(key: i32, force: bool) -> Result<i32, CortexError> {
    match inspect::remove(key, force) {
        Ok(info) => {
            println!("removed {}", output::one_line(&info));
            if force && info.verdict == Verdict::InUse && info.attached > 0 {
                println!(
                    "{} process(es) were attached: they keep their mapping until they detach, and \
                     their next lock, read or wait fails with LockRemoved",
                    info.attached
                );
            }
            Ok(exit::OK)
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists && !force => {
            eprintln!("neocortex: {e}");
            let hint = inspect::segment(key)
                .is_ok_and(|i| matches!(i.verdict, Verdict::InUse | Verdict::Unknown));
            if hint {
                eprintln!("neocortex: `neocortex rm --force {key:#010x}` removes it anyway");
            }
            Ok(exit::REFUSED)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_as_ipcs_prints_them() {
        assert_eq!(parse_key("0x4e43a001"), Ok(0x4e43_a001));
        assert_eq!(parse_key("0XFFFFFFFF"), Ok(-1));
        assert_eq!(parse_key("-5"), Ok(-5));
        assert_eq!(parse_key("4294967295"), Ok(-1));
        assert_eq!(parse_key("1245184001"), Ok(1_245_184_001));
        assert!(parse_key("0").unwrap_err().contains("IPC_PRIVATE"));
        assert!(parse_key("0x0").is_err());
        assert!(parse_key("0x1ffffffff").is_err());
        assert!(parse_key("key").is_err());
    }

    #[test]
    fn errors_map_to_documented_exit_codes() {
        let not_found = CortexError::clean_with_hint(
            "inspect segment",
            1,
            ErrorKind::NotFound,
            neocortex::OsError::new("shmget", 2), // ENOENT
            "",
        );
        assert_eq!(error_code(&not_found), exit::REFUSED);
        let refused = CortexError::Occupied {
            key: 1,
            reason: "in use".into(),
        };
        assert_eq!(error_code(&refused), exit::REFUSED);
        let usage = CortexError::InvalidInput {
            key: 0,
            reason: "key 0".into(),
        };
        assert_eq!(error_code(&usage), exit::USAGE);
        let system = CortexError::clean("list segments", 0, neocortex::OsError::new("x", 13));
        assert_eq!(error_code(&system), exit::SYSTEM);
    }

    #[test]
    fn the_command_line_is_well_formed() {
        <Cli as clap::CommandFactory>::command().debug_assert();
    }
}
