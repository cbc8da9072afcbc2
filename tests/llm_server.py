"""A scripted OpenAI-compatible chat-completions server on 127.0.0.1, for the generation and CLI tests.

Not a test module: the `server` fixture (tests/conftest.py) and the tests import it (pytest puts
tests/ on sys.path).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL = "test-org/test-model"


@dataclass
class Reply:
    """One scripted response: a JSON body, an error status, SSE pieces, and/or a delay."""

    status: int = 200
    body: dict | None = None
    pieces: list[str] | None = None  # stream these as chat.completion.chunk events
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    usage: dict | None = None
    stream_error: str | None = None  # end the stream with an error event instead of finishing
    raw: str | None = None  # send this body as is (malformed replies), with `content_type`
    content_type: str = "text/event-stream"


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    json: dict[str, Any]


def completion(content: str, usage: dict | None = None, finish_reason: str = "stop") -> dict:
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": MODEL,
        "system_fingerprint": "fp-test",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish_reason}
        ],
    }
    if usage is not None:
        body["usage"] = usage
    return body


def chunk_event(content: str | None, finish_reason: str | None = None, usage: dict | None = None) -> dict:
    delta = {"role": "assistant"} if content is None else {"role": "assistant", "content": content}
    event = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": MODEL,
        "system_fingerprint": "fp-test",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }
    if usage is not None:
        event["usage"] = usage
    return event


class FakeServer:
    """A ThreadingHTTPServer serving /v1/chat/completions from a script, recording every request."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.script: list[Reply] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                payload = json.loads(self.rfile.read(length) or b"{}")
                with owner._lock:
                    owner.requests.append(
                        Request(self.path, {k.lower(): v for k, v in self.headers.items()}, payload)
                    )
                    reply = owner.script.pop(0) if owner.script else Reply(body=completion("default"))
                try:
                    owner.respond(self, reply, payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (the timeout test)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def respond(self, handler: BaseHTTPRequestHandler, reply: Reply, payload: dict) -> None:
        if reply.delay:
            time.sleep(reply.delay)
        if reply.raw is not None:
            body = reply.raw.encode()
            handler.send_response(reply.status)
            handler.send_header("content-type", reply.content_type)
            handler.send_header("content-length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
            return
        if payload.get("stream") and reply.status == 200 and reply.pieces is None and reply.body is not None:
            self.stream_completion(handler, reply.body)
            return
        if reply.pieces is not None and reply.status == 200:
            handler.send_response(200)
            handler.send_header("content-type", "text/event-stream")
            handler.end_headers()
            events = [chunk_event(None)] + [chunk_event(piece) for piece in reply.pieces]
            if reply.stream_error is not None:
                events.append({"error": reply.stream_error, "error_type": "generation"})
            else:
                events.append(chunk_event(None, finish_reason="stop", usage=reply.usage))
            for event in events:
                handler.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                handler.wfile.flush()
            handler.wfile.write(b"data: [DONE]\n\n")
            return
        body = json.dumps(
            reply.body if reply.body is not None else {"error": f"scripted {reply.status}"}
        ).encode()
        handler.send_response(reply.status)
        handler.send_header("content-type", "application/json")
        handler.send_header("content-length", str(len(body)))
        for name, value in reply.headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)

    @staticmethod
    def stream_completion(handler: BaseHTTPRequestHandler, body: dict) -> None:
        """A scripted whole completion, sent as a real server streams it when asked: one event per
        choice's content, then the finish reason and usage."""
        handler.send_response(200)
        handler.send_header("content-type", "text/event-stream")
        handler.end_headers()
        choices = body.get("choices") or []
        if not choices:
            events = [{**chunk_event(None), "choices": []}]
        else:
            choice = choices[0]
            events = [
                chunk_event(None),
                chunk_event(choice["message"]["content"]),
                chunk_event(None, finish_reason=choice.get("finish_reason"), usage=body.get("usage")),
            ]
        for event in events:
            handler.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
        handler.wfile.write(b"data: [DONE]\n\n")
