//! Storm load generator: paced execs of a tiny binary, plus a few matching `ln -s` cases; or
//! paced file or network operations with a few cases the storm's file or network rule matches.
//!
//! `bench/storm.sh` builds this example (`cargo build --release --example exec_storm`) and runs it
//! while the live agent (`auditsentry run --source multicast`) watches, then compares the execs
//! started here with the exec events the agent saw; `bench/storm.sh --ceiling` runs it with
//! `--rate 0` and no agent and no audit rules, to measure the machine's own exec ceiling.
//!
//! ```text
//! exec_storm --marker M [--op exec|file|net] [--rate N] [--seconds T] [--workers W] [--ln K]
//!            [--bin PATH] [--dir DIR] [--port P]
//! ```
//!
//! - W worker threads (default: the number of CPUs) each spawn `PATH M-<worker>-<n>` (PATH is
//!   /bin/true by default), so every exec carries a unique marker argument that storm.sh counts
//!   in the agent's capture (`M-[0-9]+-[0-9]+`).
//! - `--rate N` is the total target in execs/s, shared evenly: each worker keeps a deadline
//!   schedule of N/W slots per second and sleeps until its next slot. A worker that falls behind
//!   by more than [`MAX_BURST`] drops the missed slots instead of catching up in a burst, so the
//!   achieved rate is what the machine could do. `--rate 0` spawns as fast as possible.
//! - `--ln K` replaces K of worker 0's slots, spread evenly over the run (case k at
//!   (k + 0.5) · T / K), with `ln -sf /usr/bin/id DIR/M-ln-<k>` (DIR is /tmp by default): a case
//!   the symlink rule alerts on, one alert per case.
//! - `--op file`: each slot creates `DIR/M-<worker>-<n>` (open with O_CREAT) and unlinks it, in
//!   this process (no exec): two file events. The K cases create and unlink `DIR/M-hit-<k>.sh`.
//! - `--op net`: each slot makes a UDP socket bound to 127.0.0.1 and connects it to port P of
//!   127.0.0.1 (socket, bind and connect: three audited calls, two network events); the K cases
//!   connect to port P + 1. Nothing is sent.
//! - Spawning uses `std::process::Command`, which uses posix_spawn (vfork-like) on Linux; children
//!   are reaped oldest first, at most [`MAX_LIVE`] alive per worker. A failed spawn is counted,
//!   never fatal.
//!
//! The last line on stdout is the machine-readable summary:
//! `started=<true execs or operations> ln=<cases> failed=<errors> seconds=<generation time>
//! rate=<(started + ln) / seconds> workers=<W>`.
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::fmt;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitCode};
use std::thread;
use std::time::{Duration, Instant};

/// How far behind its schedule a worker may be before it drops slots: at most this much work is
/// done in one catch-up burst.
const MAX_BURST: Duration = Duration::from_millis(10);

/// Children a worker lets run (or sit unreaped) before it blocks on the oldest one.
const MAX_LIVE: usize = 256;

/// The symlink each ln case points at (a system binary, as the rule requires).
const LN_TARGET: &str = "/usr/bin/id";

/// The ln binary the ln cases run (argv[0] is `ln`, as a shell would pass it).
const LN_BIN: &str = "/usr/bin/ln";

/// A command-line error: which flag, and what was wrong with it.
#[derive(Debug)]
enum ArgError {
    /// A flag this program does not know.
    Unknown(String),
    /// A flag given as the last word, without its value.
    MissingValue(String),
    /// A value that does not parse as the flag's type or is out of range.
    BadValue { flag: String, value: String },
    /// `--marker` was not given.
    NoMarker,
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgError::Unknown(flag) => write!(f, "unknown argument {flag:?}"),
            ArgError::MissingValue(flag) => write!(f, "{flag} needs a value"),
            ArgError::BadValue { flag, value } => write!(f, "bad value {value:?} for {flag}"),
            ArgError::NoMarker => write!(f, "--marker is required"),
        }
    }
}

/// What to run, how fast and for how long.
#[derive(Debug, Clone)]
struct Options {
    /// Total target execs per second; 0 means as fast as possible.
    rate: f64,
    /// Length of the run.
    seconds: f64,
    /// Worker threads.
    workers: usize,
    /// Prefix of every exec's marker argument and every ln case's link name.
    marker: String,
    /// Number of ln cases.
    lns: u64,
    /// The binary each storm exec runs.
    bin: String,
    /// Directory the ln cases create their links in (and `--op file` its files).
    dir: String,
    /// What each slot does.
    op: Op,
    /// `--op net`: the port the storm connects to (cases: the next one).
    port: u16,
}

/// What one slot of the storm does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// Spawn a process.
    Exec,
    /// Create and unlink a file.
    File,
    /// Bind and connect a UDP socket.
    Net,
}

const USAGE: &str = "usage: exec_storm --marker M [--op exec|file|net] [--rate N] [--seconds T] \
                     [--workers W] [--ln K] [--bin PATH] [--dir DIR] [--port P]";

/// Parses a non-negative finite number for `flag`.
fn number(flag: &str, value: &str) -> Result<f64, ArgError> {
    match value.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(ArgError::BadValue {
            flag: flag.to_string(),
            value: value.to_string(),
        }),
    }
}

/// Parses a non-negative integer for `flag`.
fn count(flag: &str, value: &str) -> Result<u64, ArgError> {
    value.parse::<u64>().map_err(|_| ArgError::BadValue {
        flag: flag.to_string(),
        value: value.to_string(),
    })
}

/// Turns argv (without the program name) into [`Options`].
fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, ArgError> {
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    let mut opts = Options {
        rate: 1000.0,
        seconds: 10.0,
        workers: cpus,
        marker: String::new(),
        lns: 0,
        bin: "/bin/true".to_string(),
        dir: "/tmp".to_string(),
        op: Op::Exec,
        port: 9,
    };
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        let known = [
            "--rate",
            "--seconds",
            "--workers",
            "--marker",
            "--ln",
            "--bin",
            "--dir",
            "--op",
            "--port",
        ];
        if !known.contains(&flag.as_str()) {
            return Err(ArgError::Unknown(flag));
        }
        let value = args
            .next()
            .ok_or_else(|| ArgError::MissingValue(flag.clone()))?;
        match flag.as_str() {
            "--rate" => opts.rate = number(&flag, &value)?,
            "--seconds" => opts.seconds = number(&flag, &value)?,
            "--workers" => {
                let w = count(&flag, &value)?;
                opts.workers = usize::try_from(w)
                    .ok()
                    .filter(|w| *w > 0)
                    .ok_or(ArgError::BadValue { flag, value })?;
            }
            "--marker" => opts.marker = value,
            "--ln" => opts.lns = count(&flag, &value)?,
            "--bin" => opts.bin = value,
            "--op" => {
                opts.op = match value.as_str() {
                    "exec" => Op::Exec,
                    "file" => Op::File,
                    "net" => Op::Net,
                    _ => return Err(ArgError::BadValue { flag, value }),
                }
            }
            "--port" => {
                opts.port = value
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p < u16::MAX)
                    .ok_or(ArgError::BadValue { flag, value })?
            }
            _ => opts.dir = value,
        }
    }
    if opts.marker.is_empty() {
        return Err(ArgError::NoMarker);
    }
    Ok(opts)
}

/// What one worker did.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    /// Storm execs spawned.
    started: u64,
    /// ln cases spawned.
    lns: u64,
    /// Spawns that failed.
    failed: u64,
    /// When the worker stopped spawning (before reaping its last children).
    done: Option<Instant>,
}

/// Reaps finished children from the front; blocks on the oldest while more than `keep` are alive.
fn reap(children: &mut VecDeque<Child>, keep: usize) {
    loop {
        let over = children.len() > keep;
        let Some(child) = children.front_mut() else {
            break;
        };
        let finished = over || !matches!(child.try_wait(), Ok(None));
        if !finished {
            break;
        }
        if let Some(mut child) = children.pop_front() {
            // An error here means the child is already gone; nothing is left to reap.
            let _ = child.wait();
        }
    }
}

/// One worker: spawns on its own deadline schedule until `end`, then reaps its children.
fn worker(id: usize, opts: &Options, start: Instant, end: Instant) -> Tally {
    let period = if opts.rate > 0.0 {
        Some(Duration::from_secs_f64(opts.workers as f64 / opts.rate))
    } else {
        None
    };
    let mut tally = Tally::default();
    let mut children: VecDeque<Child> = VecDeque::with_capacity(MAX_LIVE + 1);
    let mut next = start;
    loop {
        let mut now = Instant::now();
        if let Some(period) = period {
            if next > now {
                thread::sleep(next - now);
                now = Instant::now();
            } else if now - next > MAX_BURST {
                next = now - MAX_BURST;
            }
            if next >= end {
                break;
            }
            next += period;
        }
        if now >= end {
            break;
        }
        let ln_due = id == 0
            && tally.lns < opts.lns
            && (now - start).as_secs_f64()
                >= (tally.lns as f64 + 0.5) * opts.seconds / opts.lns as f64;
        if opts.op != Op::Exec {
            let n = if ln_due { tally.lns } else { tally.started };
            match in_process(opts, id, n, ln_due) {
                Ok(()) if ln_due => tally.lns += 1,
                Ok(()) => tally.started += 1,
                Err(_) => tally.failed += 1,
            }
            continue;
        }
        let spawned = if ln_due {
            Command::new(LN_BIN)
                .arg0("ln")
                .arg("-sf")
                .arg(LN_TARGET)
                .arg(format!("{}/{}-ln-{}", opts.dir, opts.marker, tally.lns))
                .spawn()
        } else {
            Command::new(&opts.bin)
                .arg(format!("{}-{}-{}", opts.marker, id, tally.started))
                .spawn()
        };
        match spawned {
            Ok(child) => {
                children.push_back(child);
                if ln_due {
                    tally.lns += 1;
                } else {
                    tally.started += 1;
                }
            }
            Err(_) => {
                tally.failed += 1;
                // Most likely EAGAIN (too many processes): make room before the next slot.
                let keep = children.len().saturating_sub(1);
                reap(&mut children, keep);
            }
        }
        reap(&mut children, MAX_LIVE);
    }
    tally.done = Some(Instant::now());
    reap(&mut children, 0);
    tally
}

/// One file or network slot of worker `id` (its `n`th, or its `n`th case when `case`).
fn in_process(opts: &Options, id: usize, n: u64, case: bool) -> std::io::Result<()> {
    match opts.op {
        Op::File => {
            let path = if case {
                format!("{}/{}-hit-{n}.sh", opts.dir, opts.marker)
            } else {
                format!("{}/{}-{id}-{n}", opts.dir, opts.marker)
            };
            std::fs::File::create(&path)?;
            std::fs::remove_file(&path)
        }
        Op::Net => {
            let socket = std::net::UdpSocket::bind((std::net::Ipv4Addr::LOCALHOST, 0))?;
            let port = if case { opts.port + 1 } else { opts.port };
            socket.connect((std::net::Ipv4Addr::LOCALHOST, port))
        }
        Op::Exec => Ok(()),
    }
}

fn main() -> ExitCode {
    let opts = match parse(std::env::args().skip(1)) {
        Ok(opts) => opts,
        Err(e) => {
            eprintln!("exec_storm: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(opts.seconds);
    let tallies: Vec<Tally> = thread::scope(|s| {
        let handles: Vec<_> = (0..opts.workers)
            .map(|id| {
                let opts = &opts;
                s.spawn(move || worker(id, opts, start, end))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let started: u64 = tallies.iter().map(|t| t.started).sum();
    let lns: u64 = tallies.iter().map(|t| t.lns).sum();
    let failed: u64 = tallies.iter().map(|t| t.failed).sum();
    let done = tallies.iter().filter_map(|t| t.done).max().unwrap_or(end);
    let seconds = (done - start).as_secs_f64();
    let rate = if seconds > 0.0 {
        (started + lns) as f64 / seconds
    } else {
        0.0
    };
    println!(
        "started={started} ln={lns} failed={failed} seconds={seconds:.3} rate={rate:.1} workers={}",
        opts.workers
    );
    ExitCode::SUCCESS
}
