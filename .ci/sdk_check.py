#!/usr/bin/env python3
"""End-to-end check with the official OpenAI Python SDK, as a user would call the gateway.

Starts the mock upstream example and the gateway binary (route /openai -> mock, type openai) on
free loopback ports, drives them with `openai.OpenAI`, prints one line per check and a closing
`sdk_check: N passed, M failed`. Exits non-zero on any failure. Both processes are stopped on exit.

    python .ci/sdk_check.py --gateway target/debug/llm-forward \
        --mock target/debug/examples/mock_upstream
"""

import argparse
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

import openai

READY_DEADLINE_S = 20.0  # startup of both processes, debug build
POLL_INTERVAL_S = 0.02
REQUEST_TIMEOUT_S = 10.0  # per SDK / HTTP request
STOP_TIMEOUT_S = 5.0  # per process, then SIGKILL
MODEL = "gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "Say hello to the gateway."}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(argv: list[str], log_path: str, **kw) -> subprocess.Popen:
    """Start a child in its own process group (so stop() also reaches any grandchildren)."""
    with open(log_path, "ab") as log:  # append: the mock's stdout drain writes here too
        kw.setdefault("stdout", log)
        return subprocess.Popen(argv, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True, **kw)


def mock_port(proc: subprocess.Popen, log_path: str) -> int:
    """The mock binds 127.0.0.1:0 and reports `listening on HOST:PORT` as its first stdout line."""
    line: list[bytes] = []
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(READY_DEADLINE_S)
    match = re.search(rb"listening on \S+:(\d+)", line[0]) if line else None
    if not match:
        raise RuntimeError(f"mock upstream did not report its port within {READY_DEADLINE_S}s: {line!r}")

    def drain() -> None:  # keep reading so the mock never blocks on a full pipe
        with open(log_path, "ab") as log:
            for chunk in proc.stdout:
                log.write(chunk)

    threading.Thread(target=drain, daemon=True).start()
    return int(match.group(1))


def wait_healthy(proc: subprocess.Popen, port: int) -> None:
    """Poll GET /healthz until 200, the process dies, or the deadline passes."""
    deadline = time.monotonic() + READY_DEADLINE_S
    last = "no attempt"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited with status {proc.returncode} during startup")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        try:
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
            last = "non-200 /healthz"
        except (OSError, http.client.HTTPException) as e:  # refused while binding, reset, timeout
            last = repr(e)
        finally:
            conn.close()
        time.sleep(POLL_INTERVAL_S)
    raise RuntimeError(f"gateway not healthy after {READY_DEADLINE_S}s: {last}")


def stop(proc: subprocess.Popen | None, sig: int) -> None:
    """Signal the process group, wait a bounded time, then SIGKILL it."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
        proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(STOP_TIMEOUT_S)
    except ProcessLookupError:
        pass


# --- the checks: each raises AssertionError (or an SDK error) on failure --------------------------


def check_chat(c: openai.OpenAI, state: dict) -> None:
    r = c.chat.completions.create(model=MODEL, messages=MESSAGES)
    content = r.choices[0].message.content
    assert content, f"empty content: {r!r}"
    assert r.choices[0].finish_reason == "stop", r.choices[0].finish_reason
    u = r.usage
    assert u and u.prompt_tokens > 0 and u.completion_tokens > 0, f"usage: {u!r}"
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens, f"usage: {u!r}"
    state["content"] = content


def check_stream(c: openai.OpenAI, state: dict) -> None:
    deltas, finish, usage_chunks = [], None, 0
    with c.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True) as stream:
        for chunk in stream:
            usage_chunks += chunk.usage is not None
            for ch in chunk.choices:
                deltas.append(ch.delta.content or "")
                finish = ch.finish_reason or finish
    assert finish == "stop", f"finish_reason {finish!r}"
    # The gateway may ask the upstream for usage; it must not leak to a client that did not ask.
    assert usage_chunks == 0, f"{usage_chunks} usage chunk(s) without include_usage"
    assert "content" in state, "needs the non-streamed answer from the chat check"
    joined = "".join(deltas)
    assert joined == state["content"], f"streamed {joined!r} != non-streamed {state['content']!r}"


def check_stream_usage(c: openai.OpenAI, state: dict) -> None:
    usages, deltas = [], []
    stream = c.chat.completions.create(
        model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    for chunk in stream:
        if chunk.usage is not None:
            usages.append(chunk.usage)
            assert chunk.choices == [], "the usage chunk must have no choices"
        deltas.extend(ch.delta.content or "" for ch in chunk.choices)
    assert len(usages) == 1, f"expected one usage chunk, got {len(usages)}"
    u = usages[0]
    assert u.prompt_tokens > 0 and u.completion_tokens > 0, f"usage: {u!r}"
    assert "".join(deltas) == state.get("content"), "content differs from the non-streamed answer"


def raw_request(method: str, port: int, path: str, body: dict | None = None) -> tuple[int, dict, bytes]:
    """One plain HTTP/1.1 request; reading a chunked body raises IncompleteRead if it is cut short."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_S)
    try:
        headers = {"Authorization": "Bearer sk-test", "Content-Type": "application/json"}
        conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def check_stream_raw(_c: openai.OpenAI, _state: dict, *, port: int) -> None:
    """The SDK stops quietly on EOF; check on the wire that the stream really ended cleanly."""
    body = {"model": MODEL, "messages": MESSAGES, "stream": True}
    status, headers, raw = raw_request("POST", port, "/openai/v1/chat/completions", body)
    assert status == 200, status
    assert headers.get("content-type", "").startswith("text/event-stream"), headers.get("content-type")
    events = [e for e in raw.decode().replace("\r\n", "\n").split("\n\n") if e.strip()]
    assert events and events[-1].strip() == "data: [DONE]", f"last event {events[-1:]!r}"


def check_embeddings(c: openai.OpenAI, _state: dict) -> None:
    r = c.embeddings.create(model="text-embedding-3-small", input=["first text", "second text"])
    assert [d.index for d in r.data] == [0, 1], f"indices {[d.index for d in r.data]}"
    dims = {len(d.embedding) for d in r.data}
    assert len(dims) == 1 and dims.pop() > 0, f"embedding dims {dims}"
    assert r.usage.prompt_tokens > 0 and r.usage.total_tokens >= r.usage.prompt_tokens, f"usage: {r.usage!r}"


def check_cache(c: openai.OpenAI, _state: dict) -> None:
    kw = dict(model=MODEL, messages=[{"role": "user", "content": "cache me"}], extra_body={"caching": True})
    first = c.chat.completions.with_raw_response.create(**kw)
    second = c.chat.completions.with_raw_response.create(**kw)
    assert first.headers.get("x-cache") == "MISS", dict(first.headers)
    assert second.headers.get("x-cache") == "HIT", dict(second.headers)
    # A hit is the stored answer itself, id included (not a rebuilt one).
    assert first.parse().model_dump() == second.parse().model_dump()
    streamed = []
    for _ in range(2):
        with c.chat.completions.create(stream=True, **kw) as stream:
            streamed.append("".join(ch.delta.content or "" for chunk in stream for ch in chunk.choices))
    assert streamed[0] == streamed[1] and streamed[0], streamed


def check_models(c: openai.OpenAI, _state: dict) -> None:
    ids = [m.id for m in c.models.list()]
    assert ids and all(ids), f"model ids {ids}"


def check_unrouted(_c: openai.OpenAI, _state: dict, *, port: int) -> None:
    status, _headers, raw = raw_request("GET", port, "/nope")
    assert status == 404, status
    err = json.loads(raw)["error"]
    assert isinstance(err.get("message"), str) and err["message"], err
    assert isinstance(err.get("type"), str) and err["type"], err
    assert "param" in err and "code" in err, f"OpenAI error shape needs param and code: {err}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gateway", default="target/debug/llm-forward")
    ap.add_argument("--mock", default="target/debug/examples/mock_upstream")
    args = ap.parse_args()
    for path in (args.gateway, args.mock):
        if not os.access(path, os.X_OK):
            sys.exit(f"sdk_check: {path} is not an executable; build it first")

    mock = gateway = None
    passed, failed = 0, 0
    with tempfile.TemporaryDirectory(prefix="llmf-sdk-") as tmp:
        try:
            mock = spawn([args.mock, "--listen", "127.0.0.1:0"], f"{tmp}/mock.log", stdout=subprocess.PIPE)
            upstream_port = mock_port(mock, f"{tmp}/mock.log")
            port = free_port()
            config = f"""\
server:
  listen: ["127.0.0.1:{port}"]
  threads: 1
  pid_file: {tmp}/llm-forward.pid
  upgrade_sock: {tmp}/upgrade.sock
routes:
  - prefix: /openai
    upstream: http://127.0.0.1:{upstream_port}
    type: openai
cache:
  backend: memory
"""
            with open(f"{tmp}/config.yaml", "w") as f:
                f.write(config)
            env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "info")}
            gateway = spawn([args.gateway, "run", "-c", f"{tmp}/config.yaml"], f"{tmp}/gateway.log", env=env)
            wait_healthy(gateway, port)
            print(f"sdk_check: openai {openai.__version__}, gateway :{port} -> mock :{upstream_port}")

            base = f"http://127.0.0.1:{port}/openai/v1"
            client = openai.OpenAI(base_url=base, api_key="sk-test", timeout=REQUEST_TIMEOUT_S, max_retries=0)
            checks = [
                ("chat completion", check_chat, {}),
                ("streamed chat completion", check_stream, {}),
                ("streamed chat completion with include_usage", check_stream_usage, {}),
                ("stream ends with data: [DONE] on the wire", check_stream_raw, {"port": port}),
                ("embeddings", check_embeddings, {}),
                ("models.list", check_models, {}),
                ("cache: extra_body caching=True, miss then exact hit, streams too", check_cache, {}),
                ("unrouted path -> 404 OpenAI-shaped error", check_unrouted, {"port": port}),
            ]
            state: dict = {}
            for name, fn, kw in checks:
                try:
                    fn(client, state, **kw)
                    passed += 1
                    print(f"  ok    {name}")
                except Exception as e:  # one failing check must not hide the others
                    failed += 1
                    print(f"  FAIL  {name}: {type(e).__name__}: {e}")
        except Exception:
            failed += 1
            traceback.print_exc()
        finally:
            stop(gateway, signal.SIGINT)  # SIGINT: Pingora's fast shutdown (SIGTERM waits the grace period)
            stop(mock, signal.SIGTERM)
            if failed:
                for name in ("gateway.log", "mock.log"):
                    path = f"{tmp}/{name}"
                    if os.path.exists(path):
                        tail = open(path, errors="replace").read()[-4000:]
                        print(f"--- last lines of {name} ---\n{tail}")
    print(f"sdk_check: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
