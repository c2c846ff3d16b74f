#!/usr/bin/env bash
# Many concurrent slow streams, large answers and large prompts through the proxy (issue 16 item 2):
# the mock upstream alone (direct), the Pingora floor (examples/pingora_floor.rs) and llm-forward,
# with examples/stream_load.rs as the client. The proxy runs on core 0 (one worker thread), the mock
# and the client on core 1, so "one core" is the proxy's budget.
#
#   bash bench/streams.sh           # release build, then ~3 minutes; table on stdout and in
#                                   # bench/out/streams.md
# Scenarios:
#   streams  STREAMS (default "1000 5000 5000:250") concurrent streams (N, or N:INTERVAL_MS) of
#            EVENTS (200) numbered SSE events INTERVAL_MS (50) apart, opened over RAMP_MS (2000);
#            5000 x 50 ms is 100,000 events/s, more than one core of this 2-core VM can send and
#            receive with the mock and the client on it (direct's tail shows it), so 5000 also
#            runs at 250 ms (20,000 events/s, as 1000 x 50 ms). Per target: time to the first
#            event and inter-event gap (p50 / p99, and p99 added against direct in the same run),
#            proxy RSS per open stream (RSS while every stream is open, minus RSS before), proxy
#            CPU per streamed event, and that every event arrived once, whole and in order.
#   answer   ANSWER_EVENTS (400, ~76 KiB on the wire) events sent at once, BIG_CONNS (8)
#            connections x BIG_REQUESTS (50) answers: proxy CPU per MiB answered.
#   prompt   a PROMPT_BYTES (1 MiB) user message, non-streamed answer, BIG_CONNS x
#            PROMPT_REQUESTS (25): proxy CPU per MiB sent.
# Knobs (env): the above, SCENARIOS="streams answer prompt", TARGETS="direct pingora-floor gateway
#   gateway-general" (also: gateway-chatlog), SKIP_BUILD=1, GATEWAY_BIN, MOCK_BIN, FLOOR_BIN,
#   LOAD_BIN, BENCH_NICE (as in load.sh), BENCH_RT=1 (real-time priority, for a busy machine: below).
# The client exits non-zero on any failed, lost, repeated, reordered or merged event; the run then
# fails at the end (the errors column says where).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

STREAMS=${STREAMS:-1000 5000 5000:250} EVENTS=${EVENTS:-200} INTERVAL_MS=${INTERVAL_MS:-50} RAMP_MS=${RAMP_MS:-2000}
ANSWER_EVENTS=${ANSWER_EVENTS:-400} BIG_CONNS=${BIG_CONNS:-8} BIG_REQUESTS=${BIG_REQUESTS:-50}
PROMPT_BYTES=${PROMPT_BYTES:-1048576} PROMPT_REQUESTS=${PROMPT_REQUESTS:-25}
SCENARIOS=${SCENARIOS:-streams answer prompt}
TARGETS=${TARGETS:-direct pingora-floor gateway gateway-general}
GATEWAY_BIN=${GATEWAY_BIN:-target/release/llm-forward}
MOCK_BIN=${MOCK_BIN:-target/release/examples/mock_upstream}
FLOOR_BIN=${FLOOR_BIN:-target/release/examples/pingora_floor}
LOAD_BIN=${LOAD_BIN:-target/release/examples/stream_load}
PROXY_CPU=0 LOAD_CPU=1
BENCH_NICE=${BENCH_NICE:-$(((EUID == 0) ? -10 : 0))}
OUT=bench/out/streams.md

log() { printf '[streams.sh %3ds] %s\n' "$SECONDS" "$*" >&2; }
die() { log "error: $*"; exit 1; }
# shellcheck source=bench/lib.sh
source bench/lib.sh

for tool in curl taskset python3 awk; do command -v $tool >/dev/null || die "$tool not found"; done
(($(nproc) >= 2)) || die "needs two cores (proxy on 0, client + mock on 1)"
# Every stream is a socket in the client, two in a proxy and one in the mock.
max_streams=$(printf '%s\n' $STREAMS $BIG_CONNS | cut -d: -f1 | sort -n | tail -1)
want_fds=$((2 * max_streams + 1024))
(($(ulimit -n) >= want_fds)) || ulimit -n "$want_fds" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
(($(ulimit -n) >= want_fds)) || die "ulimit -n is $(ulimit -n), $want_fds needed: raise the hard limit"

if [[ -z ${SKIP_BUILD:-} ]]; then
    log "cargo build --release (llm-forward, mock_upstream, pingora_floor, stream_load)"
    OPENSSL_NO_VENDOR=1 cargo build --release --locked --bin llm-forward --example mock_upstream \
        --example pingora_floor --example stream_load
fi
for bin in "$GATEWAY_BIN" "$MOCK_BIN" "$FLOOR_BIN" "$LOAD_BIN"; do [[ -x $bin ]] || die "no $bin"; done
on_proxy_cpu=(nice -n "$BENCH_NICE" taskset -c "$PROXY_CPU")
on_load_cpu=(nice -n "$BENCH_NICE" taskset -c "$LOAD_CPU")
# BENCH_RT=1 (root): run the proxy, the mock and the client as real-time (SCHED_FIFO) tasks, so a
# build on the same cores waits for them instead of adding its slices to every latency. They then
# take up to 95 % of both cores (the kernel's real-time throttle) for the run: only for a
# measurement on a busy shared machine, and say so beside the numbers.
if [[ ${BENCH_RT:-} == 1 ]]; then
    ((EUID == 0)) || die "BENCH_RT=1 needs root"
    on_proxy_cpu=(chrt -f 10 taskset -c "$PROXY_CPU") on_load_cpu=(chrt -f 10 taskset -c "$LOAD_CPU")
fi

load_note="machine $(busy_pct)% busy before the run (load average $(cut -d' ' -f1-3 /proc/loadavg))"
log "$load_note"
SECONDS=0

# --- process handling (as in load.sh): everything started is stopped on exit ----------------------
work=$(mktemp -d /tmp/llmf-streams.XXXXXX)
mock_pid='' proxy_pid='' proxy_sig=TERM
cleanup() {
    [[ -z $proxy_pid ]] || stop "$proxy_pid" "$proxy_sig"
    [[ -z $mock_pid ]] || stop "$mock_pid"
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_mock() {  # EVENTS:INTERVAL_MS -> upstream_port, mock_pid
    "${on_load_cpu[@]}" "$MOCK_BIN" --listen 127.0.0.1:0 --stream "$1" >"$work/mock.out" 2>"$work/mock.err" &
    mock_pid=$!
    local deadline=$((SECONDS + 15))
    until upstream_port=$(sed -n 's/^listening on .*:\([0-9][0-9]*\)$/\1/p' "$work/mock.out" 2>/dev/null) && [[ $upstream_port ]]; do
        kill -0 $mock_pid 2>/dev/null || die "mock exited: $(tail -3 "$work/mock.err")"
        ((SECONDS < deadline)) || die "mock did not report its port within 15 s"
        sleep 0.02
    done
    wait_ready "http://127.0.0.1:$upstream_port/v1/models" $mock_pid
}

start_target() {  # NAME -> url, pid
    local port; port=$(free_port)
    url=http://127.0.0.1:$port
    case $1 in
    direct) pid=$mock_pid url=http://127.0.0.1:$upstream_port; return ;;
    pingora-floor)
        "${on_proxy_cpu[@]}" "$FLOOR_BIN" --listen "127.0.0.1:$port" --upstream "127.0.0.1:$upstream_port" \
            2>"$work/floor.err" &
        ;;
    gateway | gateway-general | gateway-chatlog)
        local extra=''
        [[ $1 != gateway-chatlog ]] || extra=$'log:\n  chat: {dir: "'"$work"$'/chatlog"}'
        gateway_config "$work/$1.yaml" "$port" "$upstream_port" \
            "$([[ $1 == gateway-general ]] && echo general || echo openai)" "$extra"
        RUST_LOG=warn "${on_proxy_cpu[@]}" "$GATEWAY_BIN" run -c "$work/$1.yaml" 2>"$work/$1.err" &
        ;;
    *) die "unknown target $1" ;;
    esac
    pid=$! proxy_pid=$! proxy_sig=INT
    wait_ready "$url/v1/models" $pid
}

added() { [[ $2 ]] && ms "$1 - $2" || echo –; }  # added P99 DIRECT_P99 (µs) -> ms, or – without direct
ms() { fmt "($1) / 1000" "${2:-2}"; }
failures=0

# run_load TARGET ARGS... -> sets r_* from the client's RESULT line
run_load() {
    local target=$1 line; shift
    # One real request first: a misrouted proxy would otherwise fail every stream.
    curl -fsS --max-time 5 -H 'Content-Type: application/json' -o /dev/null \
        -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello."}]}' \
        "$url/v1/chat/completions" || die "$target: smoke request failed"
    line=$("${on_load_cpu[@]}" "$LOAD_BIN" --url "$url/v1/chat/completions" --watch-pid "$pid" "$@" \
        2> >(tee -a "$work/load.err" >&2)) || failures=$((failures + 1))
    line=$(grep '^RESULT' <<<"$line") || die "$target: no RESULT from stream_load"
    local kv
    for kv in ${line#RESULT }; do printf -v "r_${kv%%=*}" '%s' "${kv#*=}"; done
}

stream_rows=() big_rows=()
for scenario in $SCENARIOS; do
    case $scenario in
    streams)
        for spec in $STREAMS; do
            # N or N:INTERVAL_MS: each stream count gets its own mock, at its own pace.
            n=${spec%%:*} interval=$INTERVAL_MS
            [[ $spec != *:* ]] || interval=${spec#*:}
            start_mock "$EVENTS:$interval"
            d_first='' d_gap='' floor_per=''
            for target in $TARGETS; do
                start_target "$target"
                log "$target: $n streams of $EVENTS events $interval ms apart"
                # A saturated proxy slows every stream down: allow 4x the nominal length.
                run_load "$target" --streams "$n" --events "$EVENTS" --ramp-ms "$RAMP_MS" \
                    --timeout-s $((EVENTS * interval * 4 / 1000 + RAMP_MS / 1000 + 60))
                if [[ $target == direct ]]; then
                    d_first=$r_first_p99 d_gap=$r_gap_p99
                fi
                per=$(fmt "($r_rss_steady_kib - $r_rss_before_kib) / $n" 1) vs_floor=–
                rss="$(fmt "$r_rss_before_kib / 1024") / $(fmt "$r_rss_steady_kib / 1024")"
                [[ $target != pingora-floor ]] || floor_per=$per
                [[ ! $floor_per || $target == pingora-floor || $target == direct ]] || vs_floor=$(fmt "$per - $floor_per" 1)
                # RSS is sampled only while every stream is open at once.
                ((r_steady_samples > 0)) || per="– (never all open)" vs_floor=– rss="$(fmt "$r_rss_before_kib / 1024") / –"
                cpu=$(fmt "$r_cpu_ms * 1000 / ($r_events + 1)" 1)
                [[ $target == direct ]] && cpu="$cpu (mock)" rss="$rss (mock)" vs_floor=–
                stream_rows+=("| $target | $n × ${interval} ms | $(ms "$r_first_p50") / $(ms "$r_first_p99") | $(added "$r_first_p99" "$d_first") \
| $(ms "$r_gap_p50") / $(ms "$r_gap_p99") / $(ms "$r_gap_max" 1) | $(added "$r_gap_p99" "$d_gap") | $rss | $per | $vs_floor | $cpu \
| $(fmt "100 * $r_cpu_ms / $r_wall_ms" 0) / $(fmt "100 * $r_run_queue_wait_ms / $r_wall_ms" 0) % | $(fmt "100 * $r_self_cpu_ms / $r_wall_ms" 0) % \
| $r_events / $r_coalesced | $r_failed |")
                [[ $target == direct ]] || { stop "$pid" INT && proxy_pid=''; }
            done
            stop "$mock_pid" && mock_pid=''
        done
        ;;
    answer | prompt)
        if [[ $scenario == answer ]]; then
            start_mock "$ANSWER_EVENTS:0"
            args=(--streams "$BIG_CONNS" --requests "$BIG_REQUESTS" --events "$ANSWER_EVENTS" --ramp-ms 0)
            what="$ANSWER_EVENTS-event SSE answers"
        else
            start_mock "1:0"
            args=(--streams "$BIG_CONNS" --requests "$PROMPT_REQUESTS" --json --model gpt-4o-mini
                --prompt-bytes "$PROMPT_BYTES" --ramp-ms 0)
            what="$(fmt "$PROMPT_BYTES / 1048576" 2) MiB prompts"
        fi
        for target in $TARGETS; do
            start_target "$target"
            log "$target: $what, $BIG_CONNS connections"
            run_load "$target" "${args[@]}"
            if [[ $scenario == answer ]]; then bytes=$r_bytes_in; else bytes=$r_bytes_out; fi
            mib=$(fmt "$bytes / 1048576" 1)
            cpu=$(fmt "$r_cpu_ms * 1000 / ($bytes / 1048576)" 0)
            [[ $target == direct ]] && cpu="$cpu (mock)"
            big_rows+=("| $what | $target | $r_ok | $mib | $(fmt "$mib / ($r_wall_ms / 1000)" 0) \
| $(ms "$r_first_p50") / $(ms "$r_first_p99") | $cpu | $r_failed |")
            [[ $target == direct ]] || { stop "$pid" INT && proxy_pid=''; }
        done
        stop "$mock_pid" && mock_pid=''
        ;;
    *) die "unknown scenario $scenario" ;;
    esac
done

load_note="$load_note, $(busy_pct)% after"
mkdir -p "$(dirname "$OUT")"
{
    echo "### Streams benchmark, $(date -u +%Y-%m-%dT%H:%MZ), $(git rev-parse --short HEAD 2>/dev/null || echo 'no commit')"
    echo
    echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs), $(nproc) cores, Linux $(uname -r);" \
        "proxy on core $PROXY_CPU (one worker thread), mock upstream and \`stream_load\` on core $LOAD_CPU;" \
        "$load_note; $([[ ${BENCH_RT:-} == 1 ]] && echo 'real-time (SCHED_FIFO) priority' || echo "nice $BENCH_NICE")."
    if ((${#stream_rows[@]})); then
        echo
        echo "Concurrent streams of $EVENTS numbered SSE events ${INTERVAL_MS} ms apart (the first too)," \
            "opened over $RAMP_MS ms. First event: from connect to the first event; gap: between two" \
            "events' arrivals; added: p99 minus direct's in the same run. RSS per stream: (RSS while" \
            "all streams are open − RSS before) / streams. CPU per event: the process's whole run." \
            "CPU / run-queue wait: the process's CPU time and its threads' time runnable but waiting for a core" \
            "(other work on the machine; summed over threads), as shares of the run's wall time; client CPU: stream_load's" \
            "(with the mock on the same core, direct's first-event tail says when that core was full)."
        echo
        echo "| target | streams × interval | first event p50 / p99 ms | added p99 ms | gap p50 / p99 / max ms | added gap p99 ms" \
            "| RSS MiB before / open | RSS KiB per stream | vs floor KiB | CPU µs per event | CPU / run-queue wait | client CPU | events / coalesced | failed |"
        echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        printf '%s\n' "${stream_rows[@]}"
    fi
    if ((${#big_rows[@]})); then
        echo
        echo "Large bodies, $BIG_CONNS keep-alive connections. Answer time: request to first event (SSE) or" \
            "to the whole JSON answer. CPU per MiB: the proxy's (the mock's for direct) over MiB answered" \
            "(answers) or sent (prompts), framing included."
        echo
        echo "| load | target | requests | MiB | MiB/s | answer p50 / p99 ms | CPU µs per MiB | failed |"
        echo "|---|---|---:|---:|---:|---:|---:|---:|"
        printf '%s\n' "${big_rows[@]}"
    fi
} | tee "$OUT"
log "done in ${SECONDS}s; written to $OUT"
((failures == 0)) || die "$failures client runs had failed requests or bad events: see the failed column and the errors above"
