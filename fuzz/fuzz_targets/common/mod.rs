//! Shared by the alert-output targets: an alert built the agent's way from fuzzer-chosen bytes.
//! The bytes choose argv, the executable, the cwd, the parent and the host; they are logged as the
//! kernel logs them (quoted when plain, hex otherwise, long arguments in 7500-byte fragments), parsed,
//! reassembled and built into an exec with the agent's own limits, then into the alert document.

use auditsentry::alert::Alert;
use auditsentry::audit::exec::{self, ExecEvent, ExecLimits};
use auditsentry::audit::reassemble::{ReassembleConfig, Reassembler};
use auditsentry::audit::record::parse_text;
use auditsentry::event::{self, Host};
use auditsentry::proc::ProcessInfo;
use libfuzzer_sys::arbitrary::{Arbitrary, Result, Unstructured};
use std::fmt::Write as _;

/// What the fuzzer chose.
pub struct Case {
    pub argv: Vec<Vec<u8>>,
    pub exe: Vec<u8>,
    pub cwd: Vec<u8>,
    pub parent_exe: Vec<u8>,
    pub host: Host,
    /// A syslog line cap to try besides an uncapped rendering.
    pub max_line: usize,
}

impl Case {
    pub fn new(data: &[u8]) -> Result<Case> {
        let mut u = Unstructured::new(data);
        Ok(Case {
            max_line: u.int_in_range(0..=8192)?,
            exe: u.arbitrary()?,
            cwd: u.arbitrary()?,
            parent_exe: u.arbitrary()?,
            host: Host {
                id: u.arbitrary()?,
                name: u.arbitrary()?,
            },
            argv: Vec::<Vec<u8>>::arbitrary_take_rest(u)?,
        })
    }

    /// The exec as the agent builds it from the kernel's records, with the agent's limits.
    pub fn exec(&self) -> ExecEvent {
        let head = "msg=audit(1795858584.373:30210): ";
        let mut lines = vec![format!(
            "type=SYSCALL {head}arch=c000003e syscall=59 success=yes exit=0 ppid=41 pid=42 \
             auid=1000 uid=0 euid=0 ses=3 tty=pts1 comm=\"ln\" exe={} key=\"exec\"",
            logged(&self.exe)
        )];
        let mut execve = format!("type=EXECVE {head}argc={}", self.argv.len());
        for (i, arg) in self.argv.iter().enumerate() {
            if arg.len() > 7500 {
                let _ = write!(execve, " a{i}_len={}", arg.len() * 2);
                for (j, piece) in arg.chunks(7500).enumerate() {
                    let _ = write!(execve, " a{i}[{j}]={}", hex(piece));
                }
            } else {
                let _ = write!(execve, " a{i}={}", logged(arg));
            }
        }
        lines.push(execve);
        lines.push(format!("type=CWD {head}cwd={}", logged(&self.cwd)));
        lines.push(format!("type=PROCTITLE {head}proctitle=6C6E"));

        let mut reassembler = Reassembler::new(ReassembleConfig::default());
        let mut events = Vec::new();
        for line in &lines {
            match parse_text(line.as_bytes()) {
                Ok(record) => reassembler.push(record, &mut |e| events.push(e)),
                Err(e) => panic!("the kernel's own format refused: {e}: {line:.200}"),
            }
        }
        reassembler.flush(&mut |e| events.push(e));
        assert_eq!(events.len(), 1, "one execve, one event");
        match exec::build(&events[0], &ExecLimits::default()) {
            Ok(Some(x)) => x,
            other => panic!("no exec: {other:?}"),
        }
    }

    /// The alert the agent would raise on this exec.
    pub fn alert(&self) -> (ExecEvent, Alert) {
        let x = self.exec();
        assert_eq!(x.argv, self.argv, "argv bytes changed on the way in");
        let me = event::process_info(&x);
        let parent_name = self
            .parent_exe
            .rsplit(|&b| b == b'/')
            .next()
            .unwrap_or_default();
        let parent = ProcessInfo::from_bytes(
            Some(self.parent_exe.as_slice()),
            Some(parent_name),
            &[&self.parent_exe],
        );
        let document = event::document(&x, &me, Some(&parent), &self.host, &event::Known::default());
        let alert = Alert {
            rule_id: "d19a2399-f8e2-4b10-80d8-a561ce9d24d1".into(),
            rule_name: "System Binary Symlink to Suspicious Location".into(),
            severity: auditsentry::rule::file::Severity::Low,
            risk_score: 21,
            new_terms: vec![
                self.host.id.clone(),
                String::from_utf8_lossy(parent_name).into_owned(),
            ],
            document,
        };
        (x, alert)
    }
}

/// A value as the kernel logs it: quoted when every byte is printable ASCII other than `"` and
/// space, upper-case hex otherwise.
fn logged(bytes: &[u8]) -> String {
    if bytes
        .iter()
        .all(|&b| (0x21..0x7f).contains(&b) && b != b'"')
    {
        format!("\"{}\"", String::from_utf8_lossy(bytes))
    } else {
        hex(bytes)
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02X}");
    }
    s
}
