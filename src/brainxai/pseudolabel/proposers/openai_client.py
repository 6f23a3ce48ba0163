"""``openai`` backend: any OpenAI-compatible chat endpoint (vLLM, ``transformers serve``,
Ollama), images sent inline as base64 PNG ``data:`` URLs.

``POST {base_url}/chat/completions`` with one user message (image part + text part),
greedy (``temperature`` 0). Time-outs, connection errors, 429 and 5xx are retried with
exponential back-off (``backoff_s * 2**attempt``); other 4xx fail at once. At most
``max_concurrency`` requests are in flight per process (a shared semaphore, so subjects
running in parallel threads share the bound). The endpoint is :meth:`OpenAIConfig.endpoint`
(checked: no plain ``http://`` off this machine unless allowed); credentials in its URL
are sent (HTTP basic auth) but never shown: the model id (part of every cache key and
cached answer) and every error message carry the URL without them.
"""

from __future__ import annotations

import base64
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from PIL import Image

from brainxai.pseudolabel.config import OpenAIConfig
from brainxai.pseudolabel.render import png_bytes
from brainxai.redact import redact, redact_url

RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
_SEMAPHORES: dict[tuple[str, int], threading.BoundedSemaphore] = {}
_LOCK = threading.Lock()


class EndpointError(RuntimeError):
    """The endpoint refused the request or answered something that is not a completion."""


class EndpointUnreachable(EndpointError, ConnectionError):
    """The endpoint did not answer after every retry: a connection error, so transient (the
    task retries it, :func:`tasks.transient.is_transient`)."""


def _semaphore(base_url: str, n: int) -> threading.BoundedSemaphore:
    with _LOCK:
        return _SEMAPHORES.setdefault((base_url, n), threading.BoundedSemaphore(n))


def data_url(img: Image.Image) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(img)).decode("ascii")


class OpenAIBackend:
    """Chat completions over HTTP (see the module docstring)."""

    def __init__(self, cfg: OpenAIConfig) -> None:
        self.cfg = cfg
        endpoint = cfg.endpoint().rstrip("/")
        self.url = endpoint + "/chat/completions"
        self.shown_url = redact_url(self.url)  # what messages may show
        self.model_id = f"openai:{redact_url(endpoint)}:{cfg.model}"
        self.batch_size = cfg.max_concurrency * 4  # cache writes after every such batch
        key = os.environ.get(cfg.api_key_env, "")
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.requests_sent = 0

    def settings(self) -> dict[str, Any]:
        return {"max_tokens": self.cfg.max_tokens, "temperature": self.cfg.temperature}

    def _payload(self, img: Image.Image, prompt: str) -> dict[str, Any]:
        return {
            "model": self.cfg.model,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": data_url(img)}},
                        {"type": "text", "text": prompt},
                    ],
                }
            ],
            "max_tokens": self.cfg.max_tokens,
            "temperature": self.cfg.temperature,
        }

    def _one(self, client: httpx.Client, img: Image.Image, prompt: str) -> str:
        payload = self._payload(img, prompt)
        last = ""
        for attempt in range(self.cfg.retries + 1):
            if attempt:
                time.sleep(self.cfg.backoff_s * 2 ** (attempt - 1))
            try:
                with _semaphore(self.shown_url, self.cfg.max_concurrency):
                    self.requests_sent += 1
                    resp = client.post(self.url, json=payload, headers=self.headers)
            except httpx.TransportError as exc:  # time-outs and connection errors
                last = redact(f"{type(exc).__name__}: {exc}")
                continue
            if resp.status_code in RETRY_STATUS:
                last = redact(f"HTTP {resp.status_code}: {resp.text[:200]}")
                continue
            if resp.status_code >= 400:
                raise EndpointError(
                    redact(f"HTTP {resp.status_code} from {self.shown_url}: {resp.text[:300]}")
                )
            try:
                content = resp.json()["choices"][0]["message"]["content"]
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                raise EndpointError(
                    redact(f"not an OpenAI chat completion: {resp.text[:300]}")
                ) from exc
            if isinstance(content, list):  # content parts
                content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
            return str(content or "")
        raise EndpointUnreachable(
            f"{self.shown_url}: no answer after {self.cfg.retries + 1} tries ({last})"
        )

    def generate(self, requests: list[tuple[Image.Image, str]]) -> list[str]:
        with (
            httpx.Client(timeout=self.cfg.timeout_s) as client,
            ThreadPoolExecutor(max_workers=self.cfg.max_concurrency) as pool,
        ):
            futures = [pool.submit(self._one, client, img, p) for img, p in requests]
            return [f.result() for f in futures]
