//! A byte-driven sequence of synthetic records through the reassembler and exec::build: the bytes
//! choose record types, serials (including wrap-around), clocks and small bodies. No panic, and
//! every event handed out is within the configured bounds.
#![no_main]

use auditsentry::audit::exec::{self, ExecLimits};
use auditsentry::audit::reassemble::{ReassembleConfig, Reassembler};
use auditsentry::audit::record::{AuditTime, Record};
use libfuzzer_sys::fuzz_target;

const TYPES: [u16; 9] = [1300, 1309, 1307, 1302, 1320, 1327, 1321, 1305, 1334];
const BODIES: [&[u8]; 8] = [
    b"arch=c000003e syscall=59 success=yes exit=0 ppid=1 pid=2 uid=0 euid=0 comm=\"ln\" exe=\"/usr/bin/ln\"",
    b"argc=4 a0=\"ln\" a1=\"-s\" a2=\"/usr/bin/id\" a3=\"/tmp/x\"",
    b"argc=2 a0=\"x\" a1_len=8 a1[0]=41424344",
    b" a1[1]=45464748",
    b"cwd=\"/tmp\"",
    b"item=0 name=\"/usr/bin/ln\" nametype=NORMAL",
    b"",
    b"proctitle=6C6E002D73",
];

fuzz_target!(|data: &[u8]| {
    let cfg = ReassembleConfig {
        max_in_flight: 8,
        max_event_bytes: 4096,
        max_total_bytes: 16 * 1024,
        ..ReassembleConfig::default()
    };
    // The production limits: what the agent runs with is what is fuzzed.
    let limits = ExecLimits::default();
    let mut r = Reassembler::new(cfg);
    let mut check = |ev: auditsentry::audit::reassemble::Event| {
        if let Ok(Some(e)) = exec::build(&ev, &limits) {
            assert!(e.argv_cost() <= limits.max_argv_bytes);
        }
    };
    let mut clock: u64 = 1_700_000_000_000;
    for chunk in data.chunks(4) {
        let [a, b, c, d] = match chunk {
            [a, b, c, d] => [*a, *b, *c, *d],
            _ => break,
        };
        let rtype = TYPES[usize::from(a) % TYPES.len()];
        // Serials near u32::MAX wrap to small ones.
        let serial = u32::MAX.wrapping_sub(8).wrapping_add(u32::from(b % 32));
        clock = clock.wrapping_add(u64::from(c % 16) * 250);
        let mut body = BODIES[usize::from(d) % BODIES.len()].to_vec();
        if d & 0x80 != 0 {
            body.extend(std::iter::repeat(b'A').take(usize::from(d) * 8));
        }
        let rec = Record {
            node: (a & 0x80 != 0).then(|| "n1".to_string()),
            rtype,
            time: AuditTime {
                sec: clock / 1000,
                msec: (clock % 1000) as u32,
            },
            serial,
            body,
        };
        if c & 0x80 != 0 {
            r.advance_clock(
                AuditTime {
                    sec: clock / 1000 + 5,
                    msec: 0,
                },
                &mut check,
            );
        }
        r.push(rec, &mut check);
    }
    r.flush(&mut check);
});
