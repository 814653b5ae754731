#!/usr/bin/env python3
"""Differential test of auditsentry's EQL engine against Elastic's `eql` package (PyPI).

1. Generates exec events as an auditd log: random executables and arguments (spaces, case, `*`, `?`,
   backslashes, non-ASCII and astral characters, IP addresses, empty and long values), parents
   that exec'd earlier in the log (or none), several users.
2. Writes each query of queries.eql as an EQL rule file and replays the log through
   `auditsentry replay --all-matches --events`, so every (document, query) verdict is known: the
   query matched the document iff an alert names both.
3. Evaluates the same queries on the same ECS documents (the `--events` output) with `eql`:
   - raw: the package as it is (its parser with Elasticsearch syntax, its engine);
   - Elasticsearch: the package's parser and engine with the documented Elasticsearch rules applied
     where the two differ (docs/eql.md, "Known differences"): each comparison or predicate is a
     leaf evaluated by the package over every combination of its fields' values (a missing field
     is `null`) and true when one combination is true (Query DSL on multi-valued fields), leaves
     joined by two-valued `and`/`or`/`not`, `!=` being `not ==` and `f(…) == false` being
     `not f(…)` (Elasticsearch's EQL parser and optimizer); case-sensitive except `:`, `in~`,
     `like~`, `regex~` (ASCII folding, the `case_insensitive` query option) and `~` functions
     (ASCII on a bare field, which Elasticsearch runs as a prefix or wildcard query, otherwise Java's
     Unicode lower-casing); `?` as a one-character wildcard and regexes matching the whole value
     (syntax reference, "Wildcards", and the regexp syntax page); UTF-16 lengths and positions and
     truncating integer division (Java); addresses that do not parse are in no CIDR block.
4. Every verdict must equal the Elasticsearch one; disagreements with the raw package are counted
   (they are the documented differences). Exit 1 on any unexplained disagreement, naming the query
   and the document.

    eql_diff.py --bin target/release/auditsentry [--docs 1500] [--seed 1]
"""

import argparse
import itertools
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time

import eql
import eql.engine
import eql.functions
import eql.utils
from eql import ast
from eql.events import Event
from eql.parser import LarkToEQL, ParserConfig, elasticsearch_syntax, skip_optimizations

HERE = os.path.dirname(os.path.abspath(__file__))

# ---------------------------------------------------------------------------------------------
# 1. the audit log


def encode(value: bytes) -> str:
    """An audit field value as the kernel logs it: quoted, or upper-case hex when it has to be."""
    if any(b < 0x21 or b > 0x7E or b == 0x22 for b in value):
        return value.hex().upper()
    return '"' + value.decode() + '"'


EXECUTABLES = [
    "/usr/bin/ln", "/bin/ln", "/usr/bin/cp", "/usr/bin/bash", "/bin/sh", "/usr/bin/dash",
    "/usr/bin/python3", "/usr/bin/LN", "/tmp/Ln", "/tmp/my prog", "/opt/café/bin/tool",
    "/tmp/ÉTÉ", "/tmp/ÉtÉ", "/tmp/été", "/tmp/\u212aelvin", "/tmp/a*b", "/tmp/a?c", "/tmp/x\\y",
    "/usr/local/bin/run.sh", "/home/u/.hidden/x", "/tmp/\U0001F600", "/usr/sbin/sshd", "/usr/bin/cP",
]
PARENTS = ["/usr/bin/bash", "/bin/sh", "/usr/bin/python3", "/usr/bin/dash", "/usr/sbin/sshd"]
TOKENS = [
    "-s", "-S", "-sf", "-f", "--force", "-c", "-i", "/tmp/x", "/TMP/X", "/tmp/.x", "/dev/shm/a",
    "/usr/bin/id", "/bin/sh", "/usr/lib/x.so", "a b", " lead", "trail ", "", "*", "a*b", "?", "a?c",
    "abc", "aXc", "x\\y", "\\", "é", "ÉTÉ", "été", "\u212a", "\U0001F600x", "x\U0001F600", "10.1.2.3",
    "192.168.7.9", "8.8.8.8", "::1", "999.1.1.1", "ln", "cp", "z", "zz", "-sln", "run.sh", "a.sh",
    "S", "-xSy", "-XsY", "c\tp", "line\nbreak", "quote\"d", "'", "%", "42", "-1",
    "1.2.3.4:80/path", "ex.com/a", "/root/.ssh/id", "/home/u/.bashrc", "end\\",
]


def random_token(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.02:
        return rng.choice(["x", "/tmp/", "é", "\U0001F600"]) * rng.randrange(200, 2000)
    if r < 0.15:
        return rng.choice(TOKENS) + rng.choice(TOKENS)
    return rng.choice(TOKENS)


def exec_records(serial, ts, pid, ppid, uid, exe, argv, cwd):
    head = "msg=audit(%d.%03d:%d): " % (ts // 1000, ts % 1000, serial)
    exe_b = exe.encode()
    comm = os.path.basename(exe_b)[:15]
    lines = [
        "type=SYSCALL " + head + "arch=c000003e syscall=59 success=yes exit=0 a0=55d5c a1=55d5d "
        "a2=55d5e a3=0 items=2 ppid=%d pid=%d auid=1000 uid=%d gid=0 euid=%d suid=%d fsuid=%d "
        "egid=0 sgid=0 fsgid=0 tty=pts0 ses=3 comm=%s exe=%s key=\"exec\""
        % (ppid, pid, uid, uid, uid, uid, encode(comm), encode(exe_b)),
        "type=EXECVE " + head + "argc=%d " % len(argv)
        + " ".join("a%d=%s" % (i, encode(a.encode())) for i, a in enumerate(argv)),
        "type=CWD " + head + "cwd=" + encode(cwd.encode()),
        "type=PATH " + head + "item=0 name=" + encode(exe_b) + " inode=4242 dev=fe:00 "
        "mode=0100755 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL cap_fp=0 cap_fi=0 cap_fe=0 "
        "cap_fver=0 cap_frootid=0",
        "type=PROCTITLE " + head + "proctitle=" + b"\0".join(a.encode() for a in argv)[:128].hex().upper(),
        "type=EOE " + head.rstrip(),
    ]
    return lines


def generate_log(path, docs, seed):
    rng = random.Random(seed)
    lines = []
    serial, ts = 100, 1_800_000_000_000
    pids = []
    for i in range(docs):
        serial += 1
        ts += rng.randrange(1, 50)
        pid = 2000 + i
        if i < 20:
            exe = PARENTS[i % len(PARENTS)]
            argv = [os.path.basename(exe)] + rng.sample(["-i", "-c", "-l", "x", "é"], rng.randrange(0, 3))
            ppid = 1
        else:
            exe = rng.choice(EXECUTABLES)
            first = rng.choice([os.path.basename(exe), exe, "ln", ""])
            argv = [first] + [random_token(rng) for _ in range(rng.randrange(0, 7))]
            ppid = rng.choice(pids) if rng.random() < 0.85 else 990_000 + i
        cwd = rng.choice(["/root", "/tmp", "/home/u", "/ROOT", "/tmp/a b"])
        uid = rng.choice([0, 0, 1000, 33])
        lines.extend(exec_records(serial, ts, pid, ppid, uid, exe, argv, cwd))
        pids.append(pid)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


# ---------------------------------------------------------------------------------------------
# 2. auditsentry's verdicts


def load_queries():
    out = []
    with open(os.path.join(HERE, "queries.eql"), encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("//"):
                out.append(line)
    return out


RULE = """[rule]
description = "differential test query"
language = "eql"
name = "{id}"
risk_score = 1
rule_id = "{id}"
severity = "low"
type = "eql"
query = '''
{query}
'''
"""


def replay(binary, log, queries, work):
    rules = os.path.join(work, "rules")
    os.makedirs(rules)
    for i, q in enumerate(queries):
        with open(os.path.join(rules, "q%03d.toml" % i), "w", encoding="utf-8") as f:
            f.write(RULE.format(id="q%03d" % i, query=q))
    events = os.path.join(work, "events.ndjson")
    alerts = os.path.join(work, "alerts.ndjson")
    subprocess.run(
        [binary, "replay", "--all-matches", "--rules", rules, "--events", events, "--json", alerts,
         "--host-id", "h1", "--host-name", "h", "--max-signals", "1000000000", log],
        check=True, stderr=subprocess.DEVNULL)
    docs = [json.loads(l) for l in open(events, encoding="utf-8")]
    matched = set()
    for line in open(alerts, encoding="utf-8"):
        a = json.loads(line)
        matched.add((a["event"]["id"], a["rule"]["id"]))
    return docs, matched


# ---------------------------------------------------------------------------------------------
# 3a. the package's parser, keeping what Elasticsearch needs and the package drops: which
#     operator made a wildcard/match call (`:` vs `like` vs `like~`), `in` vs `in~`, and `~` on
#     function names.


class TaggedCall(ast.FunctionCall):
    __slots__ = ("op",)

    def iter_slots(self):
        for key in ast.FunctionCall.__slots__:
            yield key, getattr(self, key, None)


class TaggedInSet(ast.InSet):
    __slots__ = ("op",)

    def iter_slots(self):
        for key in ast.InSet.__slots__:
            yield key, getattr(self, key, None)


def _tag_call(node, op):
    tagged = TaggedCall(node.name, node.arguments, node.as_method)
    tagged.op = op
    return tagged


_string_predicate = LarkToEQL.string_predicate
_in_set = LarkToEQL.in_set
_function_call = LarkToEQL.function_call


def string_predicate(self, node):
    info = _string_predicate(self, node)
    info.node = _tag_call(info.node, str(node["STRING_PREDICATE"]))
    return info


def in_set(self, node):
    info = _in_set(self, node)
    tagged = TaggedInSet(info.node.expression, info.node.container)
    tagged.op = str(node.get("IN"))
    info.node = tagged
    return info


def function_call(self, node, prev_node=None, prev_arg=None):
    info = _function_call(self, node, prev_node, prev_arg)
    name = node.children[0]
    text = name.children[0].value if hasattr(name, "children") else str(name)
    if str(text).endswith("~") and isinstance(info.node, ast.FunctionCall):
        info.node = _tag_call(info.node, "~")
    return info


def parse_tagged(text, runs=False):
    LarkToEQL.string_predicate = string_predicate
    LarkToEQL.in_set = in_set
    LarkToEQL.function_call = function_call
    try:
        with elasticsearch_syntax, skip_optimizations, ParserConfig(allow_runs=runs):
            return eql.parse_query(text).first
    finally:
        LarkToEQL.string_predicate = _string_predicate
        LarkToEQL.in_set = _in_set
        LarkToEQL.function_call = _function_call


def parse_tagged_runs(text):
    """parse_tagged for sequences, which may repeat a stage `with runs=N`."""
    return parse_tagged(text, runs=True)


# ---------------------------------------------------------------------------------------------
# 3b. Elasticsearch's rules on top of the package's engine

MODE = ["none"]  # "none": case-sensitive; "ascii": fold ASCII letters; "unicode": str.lower()


def fold(s):
    if MODE[0] == "none" or not isinstance(s, str):
        return s
    if MODE[0] == "ascii":
        return s.translate(ASCII_LOWER)
    return s.lower()


ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}


def insensitive():
    return MODE[0] != "none"


def regex_flags():
    if MODE[0] == "ascii":
        return re.DOTALL | re.IGNORECASE | re.ASCII
    flags = re.UNICODE | re.DOTALL
    if False:
        pass
    elif MODE[0] == "unicode":
        flags |= re.IGNORECASE
    return flags


def wildcard_to_regex(cls, *wildcards):
    # Elasticsearch: `*` any run, `?` one character, whole value.
    out = []
    for w in wildcards:
        out.append("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in fold(w)))
    return r"(?:" + "|".join(out) + r")\Z"


def match_callback(cls, source_ast, *regex_literals):
    compiled = re.compile("(?:" + "|".join(r.value for r in regex_literals) + r")\Z", regex_flags())

    def callback(source, *_):
        if isinstance(source, str):
            return compiled.match(source) is not None

    return callback


def u16(s):
    return s.encode("utf-16-le")


def u16_len(s):
    return len(u16(s)) // 2


def length_run(cls, value):
    if isinstance(value, str):
        return u16_len(value)


def index_of_run(cls, source, substring, start=None):
    if not (isinstance(source, str) and isinstance(substring, str)):
        return None
    start = 0 if start is None else max(start, 0)
    s, p = u16(fold(source)), u16(fold(substring))
    if start > len(s) // 2:
        return None
    at = start * 2
    while True:
        i = s.find(p, at)
        if i < 0:
            return None
        if i % 2 == 0:
            return i // 2
        at = i + 1


def substring_run(cls, a, start=None, end=None):
    if not isinstance(a, str):
        return None
    units = u16(a)
    lo, hi, _ = slice(start, end).indices(len(units) // 2)
    if lo >= hi:
        return ""
    return units[2 * lo: 2 * hi].decode("utf-16-le", "replace")


def divide_run(cls, x, y):
    if isinstance(x, (int, float)) and isinstance(y, (int, float)) and y != 0:
        if isinstance(x, float) or isinstance(y, float):
            return float(x) / float(y)
        q = abs(x) // abs(y)
        return q if (x >= 0) == (y >= 0) else -q


def modulo_run(cls, x, y):
    if isinstance(x, (int, float)) and isinstance(y, (int, float)) and y != 0:
        if isinstance(x, float) or isinstance(y, float):
            import math
            return math.fmod(x, y)
        r = abs(x) % abs(y)
        return r if x >= 0 else -r


def cidr_callback(cls, _, *cidr_matches):
    import ipaddress
    nets = [ipaddress.ip_network(c.value, strict=False) for c in cidr_matches]

    def callback(source, *_):
        if isinstance(source, str):
            try:
                ip = ipaddress.ip_address(source)
            except ValueError:
                return False
            return any(ip.version == n.version and ip in n for n in nets)
        return None

    return callback


def apply_es_rules():
    """Points the package at Elasticsearch's documented behaviour (docs/eql.md)."""
    eql.utils.fold_case = fold
    eql.functions.fold_case = fold
    eql.engine.fold_case = fold
    eql.utils.is_insensitive = insensitive
    eql.functions.is_insensitive = insensitive
    eql.functions.regex_flags = regex_flags
    F = eql.functions
    F.Wildcard.to_regex = classmethod(wildcard_to_regex)
    F.Match.get_callback = classmethod(match_callback)
    F.Length.run = classmethod(length_run)
    F.IndexOf.run = classmethod(index_of_run)
    F.Substring.run = classmethod(substring_run)
    F.Divide.run = classmethod(divide_run)
    F.Modulo.run = classmethod(modulo_run)
    F.CidrMatch.get_callback = classmethod(cidr_callback)


def walk(node):
    yield node
    for _, value in node.iter_slots():
        for child in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(child, ast.BaseNode):
                yield from walk(child)


def substitute(node, fields):
    """A copy of `node` whose field references are the variables __v0, __v1, … (in order)."""
    if isinstance(node, ast.Field):
        fields.append(".".join([node.base] + [str(p) for p in node.path]))
        return ast.Field("__v%d" % (len(fields) - 1))
    if isinstance(node, ast.Literal):
        return node
    if isinstance(node, ast.FunctionCall):
        return ast.FunctionCall(node.name, [substitute(a, fields) for a in node.arguments], node.as_method)
    if isinstance(node, ast.InSet):
        return ast.InSet(substitute(node.expression, fields), [substitute(c, fields) for c in node.container])
    if isinstance(node, ast.Comparison):
        return ast.Comparison(substitute(node.left, fields), node.comparator, substitute(node.right, fields))
    if isinstance(node, ast.MathOperation):
        return ast.MathOperation(substitute(node.left, fields), node.operator, substitute(node.right, fields))
    if isinstance(node, (ast.IsNull, ast.IsNotNull)):
        return type(node)(substitute(node.expr, fields))
    raise ValueError("unsupported node in a leaf: %r" % (node,))


def leaf_mode(node):
    modes = set()
    for n in walk(node):
        op = getattr(n, "op", None) if isinstance(n, (TaggedCall, TaggedInSet)) else None
        if op in (":", "like~", "regex~", "in~"):
            modes.add("ascii")
        elif op == "~":
            args = n.arguments
            on_field = len(args) == 2 and isinstance(args[0], ast.Field) and isinstance(args[1], ast.String)
            query_shaped = n.name in ("startsWith", "endsWith", "stringContains") and on_field
            modes.add("ascii" if query_shaped else "unicode")
    if len(modes) > 1:
        raise ValueError("a leaf mixes case modes: %s" % node)
    return modes.pop() if modes else "none"


def field_values(doc, path):
    value = doc
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return [None]
        value = value[part]
    if isinstance(value, list):
        value = [v for v in value if v is not None]
        return value or [None]
    return [value]


PREDICATES = ("startsWith", "endsWith", "stringContains", "cidrMatch", "wildcard", "match")


class Oracle:
    """One query evaluated the Elasticsearch way."""

    def __init__(self, text, query=None):
        self.text = text
        self.query = query if query is not None else parse_tagged(text)
        self.engine = eql.PythonEngine()
        self.leaves = {}

    def matches(self, doc):
        categories = field_values(doc, "event.category")
        if self.query.event_type not in ("any", "generic") and self.query.event_type not in categories:
            return False
        return self.cond(self.query.query, doc)

    def cond(self, node, doc):
        if isinstance(node, ast.And):
            return all(self.cond(t, doc) for t in node.terms)
        if isinstance(node, ast.Or):
            return any(self.cond(t, doc) for t in node.terms)
        if isinstance(node, ast.Not):
            return not self.cond(node.term, doc)
        if isinstance(node, ast.Boolean):
            return node.value
        if isinstance(node, ast.Comparison):
            if node.comparator == ast.Comparison.NE:
                # Elasticsearch parses `a != b` as `not a == b`.
                return not self.cond(ast.Comparison(node.left, ast.Comparison.EQ, node.right), doc)
            if (node.comparator == ast.Comparison.EQ and isinstance(node.right, ast.Boolean)
                    and isinstance(node.left, ast.FunctionCall) and node.left.name in PREDICATES):
                # Its optimizer turns `f(…) == true/false` into `f(…)` / `not f(…)`.
                inner = self.cond(node.left, doc)
                return inner if node.right.value else not inner
        return self.leaf(node, doc)

    def leaf(self, node, doc):
        key = id(node)
        if key not in self.leaves:
            mode = leaf_mode(node)
            fields = []
            plain = substitute(node, fields)
            MODE[0] = mode
            callback = self.engine.convert(plain, scoped=True)
            self.leaves[key] = (node, mode, fields, callback)
        _, mode, fields, callback = self.leaves[key]
        MODE[0] = mode
        columns = [field_values(doc, f) for f in fields]
        for combo in itertools.product(*columns):
            data = {"__v%d" % i: v for i, v in enumerate(combo)}
            if callback(Event("generic", 0, data)) is True:
                return True
        return False


# ---------------------------------------------------------------------------------------------
# 4. compare


def raw_verdicts(queries, docs):
    """The package unchanged: its parser's Elasticsearch syntax and its engine's defaults."""
    out = {}
    engine = eql.PythonEngine()
    for qi, text in enumerate(queries):
        with elasticsearch_syntax:
            query = eql.parse_query(text).first
        callback = engine.convert(query.query, scoped=True)
        for doc in docs:
            categories = field_values(doc, "event.category")
            ok = query.event_type in ("any", "generic") or query.event_type in categories
            try:
                value = ok and callback(Event(query.event_type, 0, doc)) is True
            except Exception:  # the package raises on some inputs (lists where it wants strings)
                value = False
            out[(doc["event"]["id"], qi)] = value
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--docs", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", help="directory to keep the log, rules and outputs in")
    a = ap.parse_args()

    queries = load_queries()
    work = a.keep or tempfile.mkdtemp(prefix="eql-diff-")
    os.makedirs(work, exist_ok=True)
    log = os.path.join(work, "exec.audit.log")
    generate_log(log, a.docs, a.seed)
    docs, matched = replay(a.bin, log, queries, work)
    if len(docs) != a.docs:
        sys.exit("eql-diff: %d documents from %d generated execs" % (len(docs), a.docs))

    raw = raw_verdicts(queries, docs)
    apply_es_rules()
    oracles = [Oracle(q) for q in queries]

    pairs = raw_differs = unexplained = 0
    per_query = {}
    slow = []
    for qi, oracle in enumerate(oracles):
        started = time.monotonic()
        for doc in docs:
            eid = doc["event"]["id"]
            ours = (eid, "q%03d" % qi) in matched
            es = oracle.matches(doc)
            pairs += 1
            if raw[(eid, qi)] != ours:
                raw_differs += 1
                per_query[qi] = per_query.get(qi, 0) + 1
            if es != ours:
                unexplained += 1
                if unexplained <= 10:
                    print("DISAGREE q%03d ours=%s elasticsearch=%s raw-eql=%s\n  query: %s\n  doc: %s"
                          % (qi, ours, es, raw[(eid, qi)], queries[qi],
                             json.dumps(doc["process"], ensure_ascii=False)[:2000]))
        spent = time.monotonic() - started
        if spent > 2:
            slow.append((spent, qi))
    for spent, qi in sorted(slow, reverse=True)[:5]:
        print("  slow oracle: %.1f s for q%03d %s" % (spent, qi, queries[qi]))
    hits = len(matched)
    print("eql-diff: %d documents x %d queries = %d pairs, %d matches; %d verdicts differ from the "
          "raw eql package (documented differences, Elasticsearch followed), %d unexplained"
          % (len(docs), len(queries), pairs, hits, raw_differs, unexplained))
    for qi, n in sorted(per_query.items(), key=lambda kv: -kv[1])[:8]:
        print("  raw-eql differs on %5d documents: q%03d %s" % (n, qi, queries[qi]))
    if unexplained:
        sys.exit(1)
    print("eql-diff: 1 passed, 0 failed")


if __name__ == "__main__":
    main()
