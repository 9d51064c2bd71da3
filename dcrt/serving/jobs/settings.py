"""How `dcrt api` runs: where it keeps its state, who may call it, how much it accepts, where its webhooks may go.
One frozen dataclass whose fields the command line renders as options (dcrt.cli.options.takes), checked here
before any model loads. Torch-free."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from dcrt.errors import UsageError

SERVICE, LIMITS, WEBHOOKS = "Service", "Limits", "Webhooks"  # the option groups of `dcrt api --help`
TOKEN_ENV = "DCRT_API_TOKEN"
WEBHOOK_SECRET_ENV = "DCRT_WEBHOOK_SECRET"
LOOPBACK_NAMES = ("localhost",)
MB = 1 << 20


def _meta(text: str, panel: str, flag: str | None = None) -> dict:
    return {"help": text, "panel": panel} | ({"flag": flag} if flag else {})


@dataclass(frozen=True)
class ApiSettings:
    state: Path = field(
        default=Path("dcrt-jobs"),
        metadata=_meta("folder of the job store (jobs.sqlite3) and each job's inputs and result", SERVICE),
    )
    host: str = field(
        default="127.0.0.1",
        metadata=_meta("address to bind (default: loopback only; any other needs --token)", SERVICE),
    )
    port: int = field(default=8080, metadata=_meta("HTTP port", SERVICE))
    workers: int = field(
        default=1,
        metadata=_meta("jobs run at once, each with its own model load (--device cuda: the GPUs in turn)", SERVICE),
    )
    token: str | None = field(
        default=None,
        metadata=_meta(f"bearer token every /v1 and /metrics request must carry (default: ${TOKEN_ENV})", SERVICE),
    )
    keep: float = field(default=24.0, metadata=_meta("hours a finished job and its result are kept", SERVICE))
    triton: str | None = field(
        default=None,
        metadata=_meta(
            "a `dcrt serve` URL (http://HOST:PORT): workers send each job there instead of loading the model here; "
            "Triton answers once, so a job's progress jumps from step 0 to N and a cancel takes effect at the answer",
            SERVICE,
        ),
    )
    max_upload_mb: float = field(default=20.0, metadata=_meta("largest POST /v1/jobs body, in MiB", LIMITS))
    max_pixels: int = field(
        default=4096 * 4096, metadata=_meta("largest input image and output size, width x height", LIMITS)
    )
    max_frames: int = field(default=256, metadata=_meta("most frames a job's video may have", LIMITS))
    max_queue: int = field(
        default=100, metadata=_meta("waiting jobs beyond this are refused (429 with Retry-After)", LIMITS)
    )
    webhook_allow: list[str] = field(
        default_factory=list,
        metadata=_meta("a host (or host:port) webhooks may go to; repeat for more (default: no webhooks)", WEBHOOKS),
    )
    webhook_secret: str | None = field(
        default=None,
        metadata=_meta(
            f"key of the webhooks' HMAC-SHA256 signature header, X-Dcrt-Signature (default: ${WEBHOOK_SECRET_ENV})",
            WEBHOOKS,
        ),
    )
    webhook_retries: int = field(default=5, metadata=_meta("further tries of a webhook that fails", WEBHOOKS))
    webhook_backoff: float = field(
        default=1.0, metadata=_meta("seconds before the first retry, doubling each time (at most 60)", WEBHOOKS)
    )

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MB)

    @property
    def keep_s(self) -> float:
        return self.keep * 3600.0

    def with_environment(self, environ: Mapping[str, str]) -> ApiSettings:
        """The token and webhook secret from the environment where no option gives them (keeps them out of `ps`)."""
        return replace(
            self,
            token=self.token or environ.get(TOKEN_ENV) or None,
            webhook_secret=self.webhook_secret or environ.get(WEBHOOK_SECRET_ENV) or None,
        )

    def check(self) -> None:
        """Every setting, before the model loads: one line naming the fix."""
        positive = {
            "--workers": self.workers,
            "--max-upload-mb": self.max_upload_mb,
            "--max-pixels": self.max_pixels,
            "--max-frames": self.max_frames,
            "--max-queue": self.max_queue,
            "--keep": self.keep,
        }
        for flag, value in positive.items():
            if not value > 0:
                raise UsageError(f"{flag} must be positive, got {value}")
        if not 0 < self.port < 65536:
            raise UsageError(f"--port must be from 1 to 65535, got {self.port}")
        if self.webhook_retries < 0 or self.webhook_backoff < 0:
            raise UsageError("--webhook-retries and --webhook-backoff must be >= 0")
        if not is_loopback(self.host) and not self.token:
            raise UsageError(
                f"binding {self.host} serves other machines: give a bearer token (--token or ${TOKEN_ENV})"
            )
        if self.webhook_allow and not self.webhook_secret:
            raise UsageError(f"webhooks are signed: give --webhook-secret (or ${WEBHOOK_SECRET_ENV})")
        if self.triton is not None:
            parts = urlsplit(self.triton)
            if parts.scheme != "http" or not parts.hostname:
                raise UsageError(f"--triton must look like http://HOST:PORT (`dcrt serve`), got {self.triton!r}")
        if self.state.exists() and not self.state.is_dir():
            raise UsageError(f"--state {self.state} is a file, not a folder")


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False
