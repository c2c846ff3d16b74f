#!/usr/bin/env bash
# User-space instructions per request, counted by callgrind: repeatable to ~1 % on a loaded
# machine where bench/load.sh's wall-clock numbers are not. Each proxy runs under
# `valgrind --tool=callgrind` while wrk sends the same small chat completion as load.sh
# (c=8); the counters are zeroed after a warm-up and dumped after the measured run, so the
# total divided by wrk's request count is the cost of one request (all threads).
#
#   bash bench/callgrind.sh                 # release build, then ~1 minute per target
#   SKIP_BUILD=1 TARGETS="pingora-floor gateway" bash bench/callgrind.sh
#
# Knobs (env): TARGETS (default: pingora-floor gateway gateway-general gateway-keys gateway-full), CONNS=8,
#   WARMUP=3 DURATION=15 (seconds), ACCESS_LOG=1 (RUST_LOG=info: the access line is written, to a
#   file; default RUST_LOG=warn as in load.sh), GATEWAY_BIN, MOCK_BIN, FLOOR_BIN, SKIP_BUILD=1,
#   OUT_DIR=bench/out/callgrind.
# Targets: pingora-floor (examples/pingora_floor.rs); gateway (route `type: openai`);
#   gateway-general (`type: general`); gateway-keys (the openai route with the client's key a
#   forward key swapped for a pool key: the usual production setup); gateway-full (openai route with memory limits, chat logs
#   and a memory cache, every request a different body: a cache miss that is stored).
# Read a profile: callgrind_annotate --inclusive=yes bench/out/callgrind/gateway.out | less
# Where each gateway target's instructions go (our modules and hooks vs Pingora) is appended to
# results.md by bench/callgrind_hooks.py, with the floor's profile beside it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

TARGETS=${TARGETS:-pingora-floor gateway gateway-general gateway-keys gateway-full}
CONNS=${CONNS:-8} WARMUP=${WARMUP:-3} DURATION=${DURATION:-15}
GATEWAY_BIN=${GATEWAY_BIN:-target/release/llm-forward}
MOCK_BIN=${MOCK_BIN:-target/release/examples/mock_upstream}
FLOOR_BIN=${FLOOR_BIN:-target/release/examples/pingora_floor}
OUT_DIR=${OUT_DIR:-bench/out/callgrind}
LEVEL=$([[ ${ACCESS_LOG:-0} == 1 ]] && echo info || echo warn)

log() { printf '[callgrind.sh %3ds] %s\n' "$SECONDS" "$*" >&2; }
die() { log "error: $*"; exit 1; }
for tool in valgrind callgrind_control wrk curl taskset python3; do
    command -v $tool >/dev/null || die "$tool not found"
done
if [[ -z ${SKIP_BUILD:-} ]]; then
    log "cargo build --release (llm-forward, mock_upstream, pingora_floor)"
    OPENSSL_NO_VENDOR=1 cargo build --release --locked --bin llm-forward --example mock_upstream \
        --example pingora_floor
fi
mkdir -p "$OUT_DIR"
work=$(mktemp -d /tmp/llmf-callgrind.XXXXXX)
mock_pid='' proxy_pid=''
stop() {  # PID: INT (Pingora's fast shutdown), then KILL after 10 s
    kill -INT "$1" 2>/dev/null || return 0
    local i
    for ((i = 0; i < 500; i++)); do kill -0 "$1" 2>/dev/null || break; sleep 0.02; done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
cleanup() {
    [[ -z $proxy_pid ]] || stop "$proxy_pid"
    [[ -z $mock_pid ]] || stop "$mock_pid"
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ready() {  # URL PID: valgrind starts slowly, so up to 60 s (with the bench key: gateway-keys wants it)
    local deadline=$((SECONDS + 60))
    until curl -fsS -o /dev/null --max-time 2 -H "Authorization: Bearer sk-bench" "$1" 2>/dev/null; do
        kill -0 "$2" 2>/dev/null || die "process $2 exited before $1 answered"
        ((SECONDS < deadline)) || die "$1 not ready after 60 s"
        sleep 0.1
    done
}

# The workload of load.sh; BENCH_UNIQUE=1 makes every body different (a cache miss each).
cat >"$work/chat.lua" <<'EOF'
local unique = os.getenv("BENCH_UNIQUE") == "1"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-bench"
wrk.body = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello."}]}'
local n = 0
if unique then
  -- Seeded per wrk run: unseeded, the measured run repeated the warm-up's bodies, so a fifth of
  -- its requests were cache hits (wrk's LuaJIT starts every process on the same sequence).
  math.randomseed(os.time())
  request = function()
    n = n + 1
    return wrk.format(nil, nil, nil, '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello '
      .. math.random(1e9) .. '-' .. n .. '."}]}')
  end
end
function done(s, lat, _)
  local e = s.errors
  io.write(string.format("RESULT %d %d\n", s.requests, e.connect + e.read + e.write + e.status + e.timeout))
end
EOF
run_wrk() {  # SECONDS URL -> "requests errors"
    BENCH_UNIQUE=$([[ $target == gateway-full ]] && echo 1 || echo 0) taskset -c 1 \
        wrk -t1 -c"$CONNS" -d"$1"s --timeout 10s -s "$work/chat.lua" "$2/v1/chat/completions" |
        awk '/^RESULT/ { print $2, $3 }'
}

taskset -c 1 "$MOCK_BIN" --listen 127.0.0.1:0 >"$work/mock.out" 2>"$work/mock.err" &
mock_pid=$!
until upstream_port=$(sed -n 's/^listening on .*:\([0-9][0-9]*\)$/\1/p' "$work/mock.out") && [[ $upstream_port ]]; do
    kill -0 $mock_pid 2>/dev/null || die "mock exited"
    sleep 0.02
done

rows=() floor='' floor_n=''
declare -A requests
for target in $TARGETS; do
    port=$(free_port) url=http://127.0.0.1:$port out=$OUT_DIR/$target.out
    rm -f "$out" "$out".*
    vg=(taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$out" --dump-instr=no)
    case $target in
    pingora-floor)
        "${vg[@]}" "$FLOOR_BIN" --listen "127.0.0.1:$port" --upstream "127.0.0.1:$upstream_port" \
            2>"$work/$target.err" &
        ;;
    gateway | gateway-general | gateway-keys | gateway-full)
        extra=''
        [[ $target != gateway-keys ]] || extra=$'upstream_keys:\n  openai: ["sk-upstream-bench-0123456789"]\ntenants:\n  staff: {pool: openai}\nforward_keys:\n  - {key: "sk-bench", tenant: staff, name: bench}'
        [[ $target != gateway-full ]] || extra=$'limits:\n  rules:\n    - {requests: "1000000000/minute", per: ip}\nlog:\n  chat: {dir: "'"$work"$'/chatlog"}\ncache:\n  backend: memory\n  max_size: 16MiB\n  default: true'
        cat >"$work/$target.yaml" <<EOF
server:
  listen: ["127.0.0.1:$port"]
  threads: 1
  pid_file: $work/$target.pid
  upgrade_sock: $work/$target.sock
routes:
  - prefix: /
    upstream: http://127.0.0.1:$upstream_port
    type: $([[ $target == gateway-general ]] && echo general || echo openai)
$extra
EOF
        RUST_LOG=$LEVEL "${vg[@]}" "$GATEWAY_BIN" run -c "$work/$target.yaml" 2>"$work/$target.err" &
        ;;
    *) die "unknown target $target" ;;
    esac
    proxy_pid=$!
    wait_ready "$url/v1/models" $proxy_pid
    log "$target: warm-up ${WARMUP}s"
    run_wrk "$WARMUP" "$url" >/dev/null
    sleep 1
    callgrind_control --zero $proxy_pid >/dev/null
    log "$target: c=$CONNS for ${DURATION}s"
    read -r n errors <<<"$(run_wrk "$DURATION" "$url")"
    sleep 2   # requests wrk abandoned at its end finish (at most CONNS, counted in neither)
    callgrind_control --dump="$target" $proxy_pid >/dev/null
    for ((i = 0; i < 100; i++)); do [[ -s $out.1 ]] && break; sleep 0.1; done
    mv "$out.1" "$out.measured" 2>/dev/null || die "$target: no dump written"
    stop $proxy_pid && proxy_pid=''
    mv "$out.measured" "$out"   # the measured run only (the final dump at exit is dropped)
    ir=$(awk '/^summary:|^totals:/ { print $2; exit }' "$out")
    ((n > 0)) || die "$target: no request completed"
    per=$((ir / n))
    requests[$target]=$n
    [[ $target == pingora-floor ]] && floor=$per floor_n=$n
    ratio=$([[ $floor ]] && awk "BEGIN { printf \"%.2f\", $per / $floor }" || echo "–")
    log "$target: $n requests ($errors errors), $per instructions/request"
    rows+=("| $target | $n | $errors | $per | $ratio |")
done
{
    echo "### callgrind, $(date -u +%Y-%m-%dT%H:%MZ), $(git rev-parse --short HEAD 2>/dev/null), RUST_LOG=$LEVEL, c=$CONNS for ${DURATION}s"
    echo
    echo "| target | requests | errors | instructions/request | × floor |"
    echo "|---|---:|---:|---:|---:|"
    printf '%s\n' "${rows[@]}"
} | tee -a "$OUT_DIR/results.md"
for target in $TARGETS; do
    [[ $target != pingora-floor ]] || continue
    {
        echo
        echo "#### $target: where the instructions go"
        echo
        if [[ $floor_n ]]; then
            python3 bench/callgrind_hooks.py "$OUT_DIR/$target.out" "${requests[$target]}" \
                "$OUT_DIR/pingora-floor.out" "$floor_n"
        else
            python3 bench/callgrind_hooks.py "$OUT_DIR/$target.out" "${requests[$target]}"
        fi
    } | tee -a "$OUT_DIR/results.md"
done
