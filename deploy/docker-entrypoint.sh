#!/bin/sh
# The image's entrypoint: `run` (the default) and `check` use the mounted YAML config when there
# is one, and otherwise read openai-forward's variables as `aifd run` did — `docker run -e` /
# `--env-file`, or a `.env` mounted into the working directory (/data/.env; multi-line quoted
# JSON needs the file, docker's --env-file keeps quotes literally) — else the built-in default.
# An explicit -c/--config always wins; other commands (import-env, convert) pass through as given.
set -eu
config="${LLM_FORWARD_CONFIG:-/etc/llm-forward/llm-forward.yaml}"
[ "$#" -eq 0 ] && set -- run
# Flags alone (`--port 9000`) mean `run`, as for the binary.
case "$1" in -*) set -- run "$@" ;; esac
case "$1" in
run | check)
    for arg in "$@"; do
        case "$arg" in
        -c | --config | --config=* | -c?*) exec /usr/local/bin/llm-forward "$@" ;;
        esac
    done
    if [ -f "$config" ]; then
        cmd="$1"
        shift
        exec /usr/local/bin/llm-forward "$cmd" -c "$config" "$@"
    fi
    ;;
esac
exec /usr/local/bin/llm-forward "$@"
