#!/usr/bin/env bash
# Loopback load test: the mock upstream alone (direct), nginx as a plain proxy hop, and llm-forward.
# Proxies run on core 0, the mock and wrk on core 1, so the proxy's cost is what differs.
#
#   bash bench/load.sh              # release build, then ~2 minutes; table on stdout and in
#                                   # bench/out/results.md
# Knobs (env): DURATION=10 WARMUP=2 LATENCY_DURATION=5 STREAM_DURATION=5 CONNS=64 (seconds/conns),
# TARGETS="direct nginx pingora-floor gateway gateway-general gateway-limits gateway-redis gateway-chatlog
#   gateway-cache-hit gateway-cache-unique gateway-cache-redis", SKIP_BUILD=1, GATEWAY_BIN=…, MOCK_BIN=…,
#   FLOOR_BIN=…. pingora-floor: the smallest Pingora proxy (examples/pingora_floor.rs), the floor
#   under the gateway's cost.
# Wall-clock numbers here swing with the machine's neighbours; for decisions count instructions
# instead: bench/callgrind.sh (user-space instructions per request under valgrind, ~1 % repeatable).
# gateway-cache-hit: the same request over and over, so every request but the first is a cache
# hit (memory backend); gateway-cache-unique: every request different (a counter in the body),
# so every one is a miss stored into a 16 MiB memory cache that must evict to stay in budget;
# gateway-cache-redis: hits from a Redis cache (redis-server on the load generator's core).
# Many concurrent slow streams, large answers and prompts: bench/streams.sh (WITH_STREAMS=1 runs it
# after this one, with the same build).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DURATION=${DURATION:-10} WARMUP=${WARMUP:-2} CONNS=${CONNS:-64}
LATENCY_DURATION=${LATENCY_DURATION:-5} STREAM_DURATION=${STREAM_DURATION:-5}
TARGETS=${TARGETS:-direct nginx pingora-floor gateway gateway-general gateway-limits gateway-redis gateway-chatlog}
GATEWAY_BIN=${GATEWAY_BIN:-target/release/llm-forward}
MOCK_BIN=${MOCK_BIN:-target/release/examples/mock_upstream}
FLOOR_BIN=${FLOOR_BIN:-target/release/examples/pingora_floor}
PROXY_CPU=0 LOAD_CPU=1
# As root, run everything measured at nice -10: a build or editor on the same cores then gets a
# small share of CPU instead of half of it (CFS weights). BENCH_NICE=0 turns this off.
BENCH_NICE=${BENCH_NICE:-$(((EUID == 0) ? -10 : 0))}
OUT=bench/out/results.md

log() { printf '[load.sh %3ds] %s\n' "$SECONDS" "$*" >&2; }
die() { log "error: $*"; exit 1; }
# shellcheck source=bench/lib.sh
source bench/lib.sh

# --- tools ----------------------------------------------------------------------------------------
PATH=$PATH:/usr/sbin   # Debian's nginx lives in /usr/sbin
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || missing+=(nginx-light)
[[ $TARGETS != *redis* ]] || command -v redis-server >/dev/null || missing+=(redis-server)
if ((${#missing[@]})); then
    ((EUID == 0)) || die "missing ${missing[*]}: apt-get install ${missing[*]}"
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
for tool in curl taskset pgrep python3; do command -v $tool >/dev/null || die "$tool not found"; done
(($(nproc) >= 2)) || die "needs two cores (proxy on 0, load generator + mock on 1)"

if [[ -z ${SKIP_BUILD:-} ]]; then
    log "cargo build --release (llm-forward, mock_upstream)"
    OPENSSL_NO_VENDOR=1 cargo build --release --locked --bin llm-forward --example mock_upstream \
        --example pingora_floor
fi
[[ -x $GATEWAY_BIN && -x $MOCK_BIN ]] || die "no $GATEWAY_BIN or $MOCK_BIN"
[[ $TARGETS != *pingora-floor* || -x $FLOOR_BIN ]] || die "no $FLOOR_BIN"
# Command prefixes; nice and taskset exec the command, so $! is the PID of the program itself.
on_proxy_cpu=(nice -n "$BENCH_NICE" taskset -c "$PROXY_CPU")
on_load_cpu=(nice -n "$BENCH_NICE" taskset -c "$LOAD_CPU")

idle_note="machine $(busy_pct)% busy before the run"
log "$idle_note"
SECONDS=0

# --- process handling: everything started is tracked and stopped on exit --------------------------
work=$(mktemp -d /tmp/llmf-bench.XXXXXX)
mock_pid='' proxy_pid='' proxy_sig=TERM redis_pid=''
cleanup() {
    [[ -z $redis_pid ]] || stop "$redis_pid"
    [[ -z $proxy_pid ]] || stop "$proxy_pid" "$proxy_sig"
    [[ -z $mock_pid ]] || stop "$mock_pid"
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cpu_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }  # utime + stime
mem_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }         # VmRSS, VmHWM
CLK_TCK=$(getconf CLK_TCK)

# --- the workload: a small non-streamed (or, with BENCH_STREAM=1, streamed) chat completion ------
cat >"$work/chat.lua" <<'EOF'
local stream = os.getenv("BENCH_STREAM") == "1"
local unique = os.getenv("BENCH_UNIQUE") == "1"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-bench"
wrk.body = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello."}]'
    .. (stream and ',"stream":true' or '') .. '}'
local n = 0
if unique then
  request = function()
    n = n + 1
    return wrk.format(nil, nil, nil, '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello '
      .. math.random(1e9) .. '-' .. n .. '."}]' .. (stream and ',"stream":true' or '') .. '}')
  end
end
function done(s, lat, _)
  local e = s.errors
  io.write(string.format("RESULT %d %d %d %d %d\n", s.requests, s.duration,
    e.connect + e.read + e.write + e.status + e.timeout, lat:percentile(50), lat:percentile(99)))
end
EOF

# run_wrk CONNS SECONDS BASE_URL [1 = stream] -> "requests duration_us errors p50_us p99_us"
run_wrk() {
    local r
    r=$(BENCH_STREAM=${4:-0} BENCH_UNIQUE=$([[ $target == gateway-cache-unique ]] && echo 1 || echo 0) "${on_load_cpu[@]}" wrk -t1 -c"$1" -d"$2"s --timeout 5s \
        -s "$work/chat.lua" "$3/v1/chat/completions" | awk '/^RESULT/ { print $2, $3, $4, $5, $6 }')
    [[ $r && ${r%% *} -gt 0 ]] || die "wrk against $3 completed no request"
    echo "$r"
}

# --- upstream: the mock, on the load generator's core ---------------------------------------------
"${on_load_cpu[@]}" "$MOCK_BIN" --listen 127.0.0.1:0 >"$work/mock.out" 2>"$work/mock.err" &
mock_pid=$!
deadline=$((SECONDS + 15))
until upstream_port=$(sed -n 's/^listening on .*:\([0-9][0-9]*\)$/\1/p' "$work/mock.out" 2>/dev/null) && [[ $upstream_port ]]; do
    kill -0 $mock_pid 2>/dev/null || die "mock exited: $(tail -3 "$work/mock.err")"
    ((SECONDS < deadline)) || die "mock did not report its port within 15 s"
    sleep 0.02
done
wait_ready "http://127.0.0.1:$upstream_port/v1/models" $mock_pid
log "mock upstream on :$upstream_port (pid $mock_pid)"

start_target() {  # NAME -> sets url, pid
    local port; port=$(free_port)
    url=http://127.0.0.1:$port
    case $1 in
    direct) pid=$mock_pid url=http://127.0.0.1:$upstream_port; return ;;
    nginx)
        mkdir -p "$work/nginx"
        sed -e "s|@WORK@|$work/nginx|g" -e "s|@PORT@|$port|g" -e "s|@UPSTREAM_PORT@|$upstream_port|g" \
            bench/nginx.conf.template >"$work/nginx/nginx.conf"
        "${on_proxy_cpu[@]}" nginx -p "$work/nginx" -e "$work/nginx/nginx.err" -c "$work/nginx/nginx.conf" &
        proxy_sig=TERM
        ;;
    pingora-floor)
        # The smallest Pingora proxy (examples/pingora_floor.rs): the framework's own cost.
        "${on_proxy_cpu[@]}" "$FLOOR_BIN" --listen "127.0.0.1:$port" --upstream "127.0.0.1:$upstream_port" \
            2>"$work/floor.err" &
        proxy_sig=INT
        ;;
    gateway | gateway-general | gateway-limits | gateway-redis | gateway-chatlog | gateway-cache-hit | gateway-cache-unique | gateway-cache-redis)
        # Variants of the openai route with one feature on: what it costs per request.
        local extra=''
        case $1 in
        gateway-limits) extra=$'limits:\n  rules:\n    - {requests: "1000000000/minute", per: ip}' ;;
        gateway-redis | gateway-cache-redis)
            local rport; rport=$(free_port)
            # Redis is infrastructure like the mock: on the load generator's core, not the proxy's.
            "${on_load_cpu[@]}" redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no \
                >/dev/null 2>&1 &
            redis_pid=$!
            wait_redis "$rport"
            if [[ $1 == gateway-redis ]]; then
                extra=$'limits:\n  backend: "redis://127.0.0.1:'"$rport"$'/0"\n  rules:\n    - {requests: "1000000000/minute", per: ip}'
            else
                extra=$'cache:\n  backend: "redis://127.0.0.1:'"$rport"$'/0"\n  default: true'
            fi ;;
        gateway-chatlog) extra=$'log:\n  chat: {dir: "'"$work"$'/chatlog"}' ;;
        gateway-cache-hit) extra=$'cache:\n  backend: memory\n  default: true' ;;
        gateway-cache-unique) extra=$'cache:\n  backend: memory\n  max_size: 16MiB\n  default: true' ;;
        esac
        gateway_config "$work/$1.yaml" "$port" "$upstream_port" \
            "$([[ $1 == gateway-general ]] && echo general || echo openai)" "$extra"
        RUST_LOG=warn "${on_proxy_cpu[@]}" "$GATEWAY_BIN" run -c "$work/$1.yaml" 2>"$work/$1.err" &
        proxy_sig=INT
        ;;
    *) die "unknown target $1" ;;
    esac
    pid=$! proxy_pid=$!
    wait_ready "$url/v1/models" $pid
}

wait_redis() {  # PORT: poll PING until Redis answers (bounded)
    local i
    for ((i = 0; i < 250; i++)); do
        [[ $(redis-cli -p "$1" ping 2>/dev/null) == PONG ]] && return 0
        sleep 0.02
    done
    die "redis-server on port $1 did not start"
}

rows=() errors_total=0 direct_rps=
for target in $TARGETS; do
    start_target "$target"
    # One real request first: a misrouted proxy would otherwise "win" with fast error responses.
    curl -fsS --max-time 5 -H 'Content-Type: application/json' -o /dev/null \
        -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello."}]}' \
        "$url/v1/chat/completions" || die "$target: smoke request failed"
    rss_idle=$(mem_kib $pid VmRSS)
    log "$target: $url (pid $pid), warm-up ${WARMUP}s"
    run_wrk "$CONNS" "$WARMUP" "$url" >/dev/null

    log "$target: c=$CONNS for ${DURATION}s"
    t0=$(cpu_ticks $pid)
    r=$(run_wrk "$CONNS" "$DURATION" "$url")
    t1=$(cpu_ticks $pid)
    read -r n dur err p50 p99 <<<"$r"
    rps=$(fmt "$n / ($dur / 1e6)" 0)
    cpu_us=$(fmt "($t1 - $t0) * 1e6 / $CLK_TCK / $n" 1)
    log "$target: c=1 for ${LATENCY_DURATION}s"
    r=$(run_wrk 1 "$LATENCY_DURATION" "$url")
    read -r n1 dur1 err1 p50_1 p99_1 <<<"$r"
    log "$target: streamed, c=$CONNS for ${STREAM_DURATION}s"
    r=$(run_wrk "$CONNS" "$STREAM_DURATION" "$url" 1)
    read -r ns durs errs p50s p99s <<<"$r"
    rss_after=$(mem_kib $pid VmRSS) rss_peak=$(mem_kib $pid VmHWM)
    # c=1 again with the proxy moved onto the load generator's core: no request then waits for
    # an idle core to wake up (tens of µs on a VM, paid by nginx alike), so the difference to
    # direct is the proxy's own added latency.
    if [[ $target != direct ]]; then
        for p in $pid $(pgrep -P "$pid" || true); do taskset -apc "$LOAD_CPU" "$p" >/dev/null; done
        log "$target: c=1 on one core for ${LATENCY_DURATION}s"
        r=$(run_wrk 1 "$LATENCY_DURATION" "$url")
        read -r n1c dur1c err1c p50_1c p99_1c <<<"$r"
        one_core="$(fmt "$p50_1c / 1000" 3) / $(fmt "$p99_1c / 1000" 3)"
    else
        one_core="$(fmt "$p50_1 / 1000" 3) / $(fmt "$p99_1 / 1000" 3)" err1c=0
    fi

    [[ $target == direct ]] && direct_rps=$rps
    ratio=$([[ $direct_rps ]] && fmt "$rps / $direct_rps" 2 || echo "–")
    errors=$((err + err1 + errs + err1c)) && errors_total=$((errors_total + errors))
    proxy_cols="$cpu_us | $(fmt "$rss_idle / 1024") / $(fmt "$rss_after / 1024") / $(fmt "$rss_peak / 1024")"
    # direct: the CPU column is the mock's own cost per request (what a cache hit replaces).
    [[ $target == direct ]] && proxy_cols="$cpu_us (mock) | –"
    rows+=("| $target | $rps | $ratio | $(fmt "$p50 / 1000" 2) / $(fmt "$p99 / 1000" 2) \
| $(fmt "$n1 / ($dur1 / 1e6)" 0) | $(fmt "$p50_1 / 1000" 2) / $(fmt "$p99_1 / 1000" 2) | $one_core \
| $(fmt "$ns / ($durs / 1e6)" 0) | $(fmt "$p50s / 1000" 2) / $(fmt "$p99s / 1000" 2) | $proxy_cols | $errors |")
    [[ $target == direct ]] || { stop $pid $proxy_sig && proxy_pid=''; }
    [[ -z $redis_pid ]] || { stop "$redis_pid" && redis_pid=''; }
done

stop $mock_pid && mock_pid=''
idle_note="$idle_note, $(busy_pct)% after"
mkdir -p "$(dirname "$OUT")"
{
    echo "### Loopback benchmark, $(date -u +%Y-%m-%dT%H:%MZ), $(git rev-parse --short HEAD 2>/dev/null || echo 'no commit')"
    echo
    echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs), $(nproc) cores, Linux $(uname -r);" \
        "$(nginx -v 2>&1 | cut -d' ' -f3), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)."
    echo "Proxy on core $PROXY_CPU (one process, one worker thread); mock upstream and wrk (one thread each)" \
        "on core $LOAD_CPU; $idle_note; nice $BENCH_NICE."
    echo "POST /v1/chat/completions, small JSON body; c=$CONNS for ${DURATION}s after ${WARMUP}s warm-up," \
        "c=1 for ${LATENCY_DURATION}s (then again with the proxy moved onto core $LOAD_CPU: \"one core\")," \
        "streamed (SSE) c=$CONNS for ${STREAM_DURATION}s."
    echo "pingora-floor: the smallest Pingora proxy (examples/pingora_floor.rs), the framework's own cost." \
        "gateway: route \`type: openai\` (JSON body read and inspected); gateway-general: \`type: general\`" \
        "(bytes passed through). RUST_LOG=warn and nginx access_log off: no per-request log line."
    echo
    echo "| target | c=$CONNS req/s | vs direct | c=$CONNS p50 / p99 ms | c=1 req/s | c=1 p50 / p99 ms" \
        "| c=1 one core p50 / p99 ms | SSE c=$CONNS req/s | SSE p50 / p99 ms | proxy CPU µs/req | proxy RSS MiB idle / after / peak | errors |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    printf '%s\n' "${rows[@]}"
} | tee "$OUT"
log "done in ${SECONDS}s; written to $OUT"
((errors_total == 0)) || die "$errors_total requests failed (non-2xx, timeouts or socket errors): see the errors column"
[[ -z ${WITH_STREAMS:-} ]] || GATEWAY_BIN=$GATEWAY_BIN MOCK_BIN=$MOCK_BIN FLOOR_BIN=$FLOOR_BIN bash bench/streams.sh
