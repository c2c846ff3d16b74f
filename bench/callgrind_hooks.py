#!/usr/bin/env python3
"""Where a proxy's instructions per request go, from a callgrind profile of bench/callgrind.sh.

    python3 bench/callgrind_hooks.py PROFILE.out REQUESTS [FLOOR.out FLOOR_REQUESTS]

Prints one Markdown table that splits the instructions per request between the parts of this
crate (a `ProxyHttp` hook's own frame, or a module such as `openai::response`) and the rest
(Pingora's HTTP/1 server and client, tokio, libc), with malloc and realloc calls per request.
Every instruction is counted once: a function of ours is charged its own instructions plus the
inclusive cost of the calls it makes out of our code (header maps, serde_json, malloc …), so a
module's line is what it costs including the libraries it uses. Calls a wrapper makes into what
it wraps (the pre-read body session into the real client session, the head-deadline stream into
the socket) are Pingora's work with or without us and stay in the rest. With the floor's
profile beside it, the rest is compared with the floor's total: what is left over is Pingora
doing more for us (more headers to write, a body read in a hook) than for the floor.
"""
import collections
import re
import sys

HOOK = re.compile(r"^<[\w:]+ as pingora_proxy::proxy_trait::ProxyHttp>::(?P<hook>\w+)")
# Our code: functions of this crate, and drops of its types (generic Pingora functions that merely
# carry our proxy type in their parameters are Pingora's).
OURS = re.compile(r"^(<)*(core::ptr::drop_in_place<)?(<)*(alloc::boxed::Box<)?llm_forward::(?P<path>[\w:]+)")
# Calls our wrappers make into what they wrap (the real client session and socket): Pingora would
# make them without us, so they stay in "the rest".
DELEGATE = re.compile(
    r"^(<)?pingora_core::(protocols::http::(server::Session|v1::server::HttpSession)|protocols::l4::stream::Stream|apps::)"
    r"|^<T as pingora_core::apps::ServerApp>|^<pingora_core::protocols::l4::stream::Stream as"
)
ALLOC = re.compile(r"^(malloc|realloc)$")


def load(path):
    """Self cost and call edges (caller, callee) -> (calls, inclusive cost) of a profile."""
    names = {}

    def name(spec):
        m = re.match(r"\((\d+)\)(?:\s+(.*))?", spec)
        if not m:
            return spec
        if m.group(2) is not None:
            names[m.group(1)] = m.group(2)
            return m.group(2)
        return names.get(m.group(1), "?")

    self_cost = collections.Counter()
    edges = collections.defaultdict(lambda: [0, 0])
    total = 0
    cur = callee = None
    pending = None
    with open(path) as f:
        for line in f:
            if pending is not None:
                parts = line.split()
                if len(parts) > 1 and cur is not None and callee is not None:
                    e = edges[(cur, callee)]
                    e[0] += pending
                    e[1] += int(parts[1])
                pending = None
                continue
            c = line[:1]
            if c.isdigit() or c in "+-*":
                parts = line.split()
                if len(parts) > 1 and cur is not None:
                    self_cost[cur] += int(parts[1])
                continue
            if line.startswith("fn="):
                cur = name(line[3:].strip())
            elif line.startswith("cfn="):
                callee = name(line[4:].strip())
            elif line.startswith("calls="):
                pending = int(line[6:].split()[0])
            elif line.startswith(("summary:", "totals:")):
                total = int(line.split()[1])
    return self_cost, edges, total


def group(fn):
    """The part of our code `fn` belongs to: a ProxyHttp hook (its own frame; what it calls in
    our modules is counted under those modules), else the module path, e.g. `openai::response`."""
    m = HOOK.match(fn)
    if m and "LlmProxy" in fn.split(" as ")[0]:
        return m.group("hook")
    m = OURS.match(fn)
    if not m:
        return None
    parts = m.group("path").split("::")
    # `proxy::preread::PrereadSession` -> `proxy::preread`; `routing::normalize_path` -> `routing`
    keep = [p for p in parts[:2] if p[:1].islower()]
    return "::".join(keep[:2] if len(parts) > 2 else keep[:1]) or parts[0]


def attribute(path, requests):
    """Our cost per request by part (self cost plus calls leaving our code, except calls that
    only delegate to the wrapped session or socket), the total, and allocations per request."""
    self_cost, edges, total = load(path)
    groups = collections.Counter()
    for fn, cost in self_cost.items():
        g = group(fn)
        if g:
            groups[g] += cost
    allocs = 0
    for (caller, callee), (calls, cost) in edges.items():
        g = group(caller)
        if g and not group(callee) and not DELEGATE.match(callee):
            groups[g] += cost
        if ALLOC.match(callee):
            allocs += calls
    return {k: v / requests for k, v in groups.items()}, total / requests, allocs / requests


def main():
    if len(sys.argv) not in (3, 5):
        sys.exit(__doc__)
    groups, total, allocs = attribute(sys.argv[1], float(sys.argv[2]))
    floor = None
    if len(sys.argv) == 5:
        _, floor_total, floor_allocs = attribute(sys.argv[3], float(sys.argv[4]))
        floor = (floor_total, floor_allocs)
    ours = sum(groups.values())
    print("| part | instructions/request | share of total |")
    print("|---|---:|---:|")
    for k, v in sorted(groups.items(), key=lambda kv: -kv[1]):
        if v >= 50:
            print(f"| `{k}` | {v:,.0f} | {v / total:.0%} |")
    print(f"| Pingora, tokio, libc (the rest) | {total - ours:,.0f} | {(total - ours) / total:.0%} |")
    if floor:
        print(f"| … of which beyond the floor's total ({floor[0]:,.0f}) | {total - ours - floor[0]:+,.0f} | |")
    print(f"| **total** | **{total:,.0f}** | |")
    line = f"| malloc + realloc calls/request | {allocs:.0f} |"
    if floor:
        line += f" floor {floor[1]:.0f} |"
    print(line)


if __name__ == "__main__":
    main()
