"""A loopback OpenAI-compatible chat server for the tests of the chat-model paths (describe, correct, story goal,
the jobs API's prompts); tests/conftest.py's `chat` fixture serves one."""

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GOOD = {"prompts": ["gentle swaying of waves at sunset", "clouds drifting over the sea", "a boat rocking gently"]}


class FakeChat:
    """Answers POST /v1/chat/completions with `self.reply`: (HTTP status, assistant content or error body, delay s,
    refusal). Records each request's path, headers and JSON body."""

    def __init__(self):
        self.requests: list[dict] = []
        self.reply = (200, json.dumps(GOOD), 0.0, None)

    def handler(self):
        chat = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                chat.requests.append(
                    {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
                )
                status, content, delay, refusal = chat.reply
                time.sleep(delay)
                if status == 200:
                    message = {"role": "assistant", "content": content, "refusal": refusal}
                    choice = {"index": 0, "message": message, "finish_reason": "stop"}
                    payload = {"id": "c", "object": "chat.completion", "created": 0, "model": body["model"]}
                    payload["choices"] = [choice]
                else:
                    payload = {"error": {"message": content, "type": "error"}}
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (the timeout case)
                    pass

            def log_message(self, *args):
                pass

        return Handler


@contextmanager
def serving_chat() -> Iterator[FakeChat]:
    """A FakeChat on a loopback port, its base URL in `.url`."""
    fake = FakeChat()
    server = ThreadingHTTPServer(("127.0.0.1", 0), fake.handler())
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
