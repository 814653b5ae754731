#!/usr/bin/env python3
"""Builds a large auditd text log from the shared corpus, for replay benchmarks.

The corpus (auditd's RAW log) is cut into events by serial. The output repeats those events in
corpus order, pass after pass, until it holds --events events, with:

- fresh serials, strictly increasing from --first-serial;
- fresh timestamps, strictly increasing (1 ms per event plus a seeded 0-999 us jitter folded into
  the millisecond, so the clock never goes back);
- pid= and ppid= shifted by a seeded per-pass offset, so each pass is a new process tree whose
  parent links still hold inside the pass;
- an EOE record after every event that has a SYSCALL record, as an auditd plugin (or a netlink
  reader) sees them; standalone records get none, like the kernel does.

auditd's own DAEMON_* records are dropped. The same --seed gives byte-identical output.

    bench/gen-log.py --events 1000000 --seed 1 --out /tmp/bench.audit.log
"""

import argparse
import os
import random
import re
import sys

HEADER = re.compile(r"^(?P<pre>(?:node=\S+ )?type=(?P<type>\S+) msg=audit\()"
                    r"(?P<sec>\d+)\.(?P<ms>\d+):(?P<serial>\d+)\): ?(?P<body>.*)$")
PIDS = re.compile(r"\b(pid|ppid)=(\d+)")


def load_events(path):
    """Corpus lines grouped by serial, in order of first appearance: [(has_syscall, [(pre, body)])]."""
    events = {}
    order = []
    with open(path, "r", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            line = line.rstrip("\n")
            m = HEADER.match(line)
            if not m:
                continue
            if m.group("type").startswith("DAEMON_"):
                continue
            serial = int(m.group("serial"))
            if serial not in events:
                events[serial] = []
                order.append(serial)
            events[serial].append((m.group("type"), m.group("pre"), m.group("body")))
    out = []
    for serial in order:
        recs = events[serial]
        has_syscall = any(t == "SYSCALL" for t, _, _ in recs)
        out.append((has_syscall, [(t, pre, body) for t, pre, body in recs]))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                      "..", "..", "shared", "corpus", "raw.audit.log"))
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--first-serial", type=int, default=1000)
    ap.add_argument("--start", type=int, default=1_700_000_000, help="first timestamp (epoch s)")
    ap.add_argument("--out", default="-")
    a = ap.parse_args()

    corpus = load_events(a.corpus)
    if not corpus:
        sys.exit(f"gen-log: no events in {a.corpus}")
    rng = random.Random(a.seed)
    out = sys.stdout if a.out == "-" else open(a.out, "w", encoding="utf-8",
                                                  errors="surrogateescape", newline="\n")
    write = out.write
    serial = a.first_serial
    ms_total = a.start * 1000
    produced = 0
    records = 0
    buf = []
    while produced < a.events:
        shift = rng.randrange(0, 3_000_000)

        def repid(m, shift=shift):
            return f"{m.group(1)}={int(m.group(2)) + shift}"

        for has_syscall, recs in corpus:
            if produced >= a.events:
                break
            ms_total += 1 if rng.random() < 0.999 else 2
            stamp = f"{ms_total // 1000}.{ms_total % 1000:03d}:{serial}): "
            for t, pre, body in recs:
                if t == "SYSCALL":
                    body = PIDS.sub(repid, body)
                buf.append(pre + stamp + body + "\n")
            if has_syscall:
                buf.append("type=EOE msg=audit(" + stamp + "\n")
                records += 1
            records += len(recs)
            serial += 1
            produced += 1
            if len(buf) >= 65536:
                write("".join(buf))
                buf.clear()
    write("".join(buf))
    if out is not sys.stdout:
        out.close()
    print(f"gen-log: {produced} events, {records} records, serials {a.first_serial}..{serial - 1}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
