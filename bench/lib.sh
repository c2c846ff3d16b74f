# Shared by bench/load.sh and bench/streams.sh (sourced): machine load, process handling, readiness,
# number formatting and the gateway's one-route config. Needs `die` and, for `stop`, nothing else.

# Anything else running (a build) skews every number: measure the machine's busy share over 1 s.
busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $5 + $6 }' /proc/stat; }
busy_pct() {
    local b0 i0 b1 i1
    read -r b0 i0 < <(busy) && sleep 1 && read -r b1 i1 < <(busy)
    echo $((100 * (b1 - b0) / (b1 - b0 + i1 - i0 + 1)))
}

# stop PID [SIGNAL]: signal (default TERM); SIGKILL if it has not exited within 5 s. The gateway
# gets INT, Pingora's fast shutdown (TERM would drain); nginx and the mock stop at once on TERM.
# (Background jobs of a script ignore INT unless the program handles it, as Pingora and nginx do.)
stop() {
    kill -"${2:-TERM}" "$1" 2>/dev/null || return 0
    local i state
    for ((i = 0; i < 250; i++)); do  # gone, or a zombie waiting for `wait`
        state=$(awk '{ sub(/.*\) /, ""); print $1 }' "/proc/$1/stat" 2>/dev/null) || break
        [[ $state == Z ]] && break
        sleep 0.02
    done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_ready() {  # URL PID: poll every 20 ms until a 2xx answer; give up after 15 s or if PID died
    local deadline=$((SECONDS + 15))
    until curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null; do
        kill -0 "$2" 2>/dev/null || die "process $2 exited before $1 answered"
        ((SECONDS < deadline)) || die "$1 not ready after 15 s"
        sleep 0.02
    done
}

fmt() { awk "BEGIN { printf \"%.${2:-1}f\", $1 }"; }  # fmt EXPR [DECIMALS]: arithmetic on our own numbers

# gateway_config FILE PORT UPSTREAM_PORT TYPE [EXTRA_YAML]: one route `/` of TYPE to the mock,
# one worker thread, pid file and upgrade socket in the work directory.
gateway_config() {
    cat >"$1" <<YAML
server:
  listen: ["127.0.0.1:$2"]
  threads: 1
  pid_file: ${1%.yaml}.pid
  upgrade_sock: ${1%.yaml}.sock
routes:
  - prefix: /
    upstream: http://127.0.0.1:$3
    type: $4
${5:-}
YAML
}
