"""Webhooks: a job's final status POSTed to the URL its request named, only to hosts on the allow-list
(`--webhook-allow`), signed with an HMAC-SHA256 of the body (header `X-Dcrt-Signature: sha256=<hex>`, keyed with
`--webhook-secret`), tried again with doubling waits a bounded number of times. Redirects are not followed: one
could lead off the allow-list. Each delivery runs on a thread of its own, so a slow receiver holds up no worker.

A receiver checks a delivery with `signature(secret, body) == request.headers["X-Dcrt-Signature"]`, comparing
with `hmac.compare_digest`."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from urllib.parse import urlsplit

from dcrt.errors import UsageError

SIGNATURE_HEADER = "X-Dcrt-Signature"
MAX_BACKOFF_S = 60.0
TIMEOUT_S = 10.0
DEFAULT_PORTS = {"http": 80, "https": 443}


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # urllib then raises the 3xx as an HTTPError: a failed try


class WebhookSender:
    def __init__(
        self,
        allow: list[str],
        secret: str | None,
        retries: int,
        backoff_s: float,
        log: Callable[[str], None],
    ):
        self.allow = {entry.strip().lower() for entry in allow if entry.strip()}
        self.secret = secret
        self.retries = retries
        self.backoff_s = backoff_s
        self.log = log
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._opener = urllib.request.build_opener(_NoRedirects)

    def check(self, url: str) -> None:
        """A job's webhook URL: http(s), to a host on the allow-list. Raises UsageError."""
        if not self.allow:
            raise UsageError("this service sends no webhooks (start it with --webhook-allow HOST)")
        try:
            parts = urlsplit(url)
            port = parts.port or DEFAULT_PORTS.get(parts.scheme)
        except ValueError:
            raise UsageError(f"webhook {url!r} is not a URL") from None
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            raise UsageError(f"webhook must be an http:// or https:// URL, got {url!r}")
        host = parts.hostname.lower()
        if host not in self.allow and f"{host}:{port}" not in self.allow:
            raise UsageError(f"webhook host {host}:{port} is not on this service's --webhook-allow list")

    def send(self, url: str, payload: dict, done: Callable[[bool], None]) -> None:
        """Deliver `payload` (JSON) to `url` in the background; `done(delivered)` hears how it went (not called when
        the sender stops first: the delivery is still due)."""
        body = json.dumps(payload, sort_keys=True).encode()
        thread = threading.Thread(target=self._deliver, args=(url, body, done), name="dcrt-webhook", daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _deliver(self, url: str, body: bytes, done: Callable[[bool], None]) -> None:
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: signature(self.secret or "", body)}
        delay = self.backoff_s
        for attempt in range(1 + self.retries):
            try:
                with self._opener.open(urllib.request.Request(url, body, headers, method="POST"), timeout=TIMEOUT_S):
                    return done(True)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                reason = getattr(exc, "reason", None) or exc
                tries = f"try {attempt + 1} of {1 + self.retries}"
                self.log(f"webhook to {urlsplit(url).hostname}: {tries} failed: {reason}")
            if attempt == self.retries:
                return done(False)
            if self._stop.wait(delay):
                return
            delay = min(delay * 2, MAX_BACKOFF_S)

    def stop(self, timeout_s: float = 5.0) -> None:
        """No more tries; deliveries under way get `timeout_s` to end."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout_s)
