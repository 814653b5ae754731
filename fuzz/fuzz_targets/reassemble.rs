//! A byte-driven sequence of synthetic records through the reassembler and exec::build with the
//! agent's own settings (`Settings::default()`: its events in flight, bytes per event and in all, and
//! argv budget). The bytes choose record types, serials (new ones, enough to fill the in-flight
//! cap, or recent ones, with wrap-around), clocks and bodies up to 16 MiB. No panic, and the
//! reassembler and every event and exec it hands out stay within those bounds.
#![no_main]

use auditsentry::audit::exec;
use auditsentry::audit::reassemble::{record_cost, Event, Reassembler};
use auditsentry::audit::record::{AuditTime, Record};
use auditsentry::config::Settings;
use libfuzzer_sys::fuzz_target;

const TYPES: [u16; 9] = [1300, 1309, 1307, 1302, 1320, 1327, 1321, 1305, 1334];
const BODIES: [&[u8]; 8] = [
    b"arch=c000003e syscall=59 success=yes exit=0 ppid=1 pid=2 uid=0 euid=0 comm=\"ln\" exe=\"/usr/bin/ln\"",
    b"argc=4 a0=\"ln\" a1=\"-s\" a2=\"/usr/bin/id\" a3=\"/tmp/x\"",
    b"argc=2 a0=\"x\" a1_len=8 a1[0]=41424344",
    b" a1[1]=45464748",
    b"cwd=\"/tmp\"",
    b"item=0 name=\"/usr/bin/ln\" nametype=NORMAL",
    b"argc=1048575 a0=\"x\" a1048574=\"y\"",
    b"proctitle=6C6E002D73",
];

fuzz_target!(|data: &[u8]| {
    let agent = Settings::default();
    let cfg = agent.reassemble();
    let limits = agent.exec_limits();
    let mut r = Reassembler::new(cfg.clone());
    let mut check = |ev: Event| {
        let bytes: usize = ev.records.iter().map(record_cost).sum();
        // An event's first record is kept whatever its size; later ones only within the cap.
        assert!(
            bytes <= cfg.max_event_bytes || ev.records.len() == 1,
            "event of {bytes} bytes in {} records",
            ev.records.len()
        );
        if let Ok(Some(e)) = exec::build(&ev, &limits) {
            assert!(e.argv_cost() <= limits.max_argv_bytes);
        }
    };
    let mut clock: u64 = 1_700_000_000_000;
    // Serials start near u32::MAX, so they wrap.
    let mut next_serial = u32::MAX - 8;
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    // Padding, in all: twice the largest cap, so that both caps are passed, and no more, so that a
    // run stays short. It is the slow part (fresh pages): only inputs whose first byte is 0xff pad
    // (the caps' eviction paths keep such inputs in the corpus); the others explore serials and
    // types quickly.
    let budget = if mode == 0xff {
        2 * cfg.max_total_bytes.max(cfg.max_event_bytes)
    } else {
        0
    };
    let mut padded = 0usize;
    for chunk in data.chunks(4) {
        let [a, b, c, d] = match chunk {
            [a, b, c, d] => [*a, *b, *c, *d],
            _ => break,
        };
        let rtype = TYPES[usize::from(a) % TYPES.len()];
        let serial = if b & 0x80 != 0 {
            next_serial = next_serial.wrapping_add(u32::from(b & 0x7f) + 1);
            next_serial
        } else {
            next_serial.wrapping_sub(u32::from(b % 32))
        };
        clock = clock.wrapping_add(u64::from(c % 16) * 250);
        let mut body = BODIES[usize::from(d) % BODIES.len()].to_vec();
        if d & 0x80 != 0 {
            // 8 bytes to 16 MiB of padding.
            let pad = (usize::from(d & 0x7f) + 1) << (3 + 2 * usize::from((c >> 4) & 7));
            if padded + pad <= budget {
                padded += pad;
                body.resize(body.len() + pad, b'A');
            }
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
            enriched: Vec::new(),
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
        let stats = r.stats();
        assert!(stats.in_flight <= cfg.max_in_flight, "{stats:?}");
        assert!(stats.bytes_in_flight <= cfg.max_total_bytes, "{stats:?}");
    }
    r.flush(&mut check);
    assert_eq!((r.stats().in_flight, r.stats().bytes_in_flight), (0, 0));
});
