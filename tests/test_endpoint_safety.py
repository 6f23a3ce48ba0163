"""Deployment safety (issue 16.10): the OpenAI-compatible proposer refuses plain http://
off this machine unless allowed, refuses credentials in params, and a URL's credentials
(from the environment) are sent but never appear in the model id, cache keys, cached
answers, errors, MLflow params or Prefect cache keys; the README and docs/ expose no open API."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from brainxai.pseudolabel import PseudolabelConfig
from brainxai.pseudolabel.cache import ResponseCache, cache_key
from brainxai.pseudolabel.config import OpenAIConfig, check_endpoint
from brainxai.pseudolabel.proposers.openai_client import EndpointError, OpenAIBackend
from brainxai.redact import redact, redact_url

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "pw-9c2e71-do-not-leak"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/v1",
        "http://127.3.4.5:8000/v1",
        "http://localhost:8000/v1",
        "http://[::1]:8000/v1",
        "https://gpu.example.org/v1",
        "https://10.0.0.5:8443/v1",
    ],
)
def test_local_http_and_any_https_are_accepted(url):
    assert OpenAIConfig(base_url=url).endpoint() == url


@pytest.mark.parametrize(
    "url", ["http://10.0.0.5:8000/v1", "http://gpu-host:8000/v1", "http://203.0.113.9/v1"]
)
def test_plain_http_off_this_machine_is_refused_unless_allowed(url):
    with pytest.raises(ValueError, match=r"plain http://.*allow_insecure_http: true"):
        OpenAIConfig(base_url=url)
    with pytest.raises(ValueError, match="plain http://"):  # through params, before any work
        PseudolabelConfig.from_dict({"proposer": "openai", "openai": {"base_url": url}})
    assert OpenAIConfig(base_url=url, allow_insecure_http=True).endpoint() == url


@pytest.mark.parametrize("url", ["ftp://host/v1", "file:///tmp/x", "127.0.0.1:8000/v1"])
def test_a_url_that_is_not_http_is_refused(url):
    with pytest.raises(ValueError, match="not an http"):
        check_endpoint(url)


def test_credentials_in_params_are_refused_without_showing_them():
    with pytest.raises(ValueError) as err:
        OpenAIConfig(base_url=f"https://alice:{PASSWORD}@gpu.example.org/v1")
    assert "base_url_env" in str(err.value) and PASSWORD not in str(err.value)
    assert "https://***@gpu.example.org/v1" in str(err.value)


def test_an_insecure_url_from_the_environment_is_refused_too(monkeypatch):
    cfg = OpenAIConfig(base_url_env="VLM_URL")
    monkeypatch.setenv("VLM_URL", f"http://alice:{PASSWORD}@10.0.0.5:8000/v1")
    with pytest.raises(ValueError) as err:
        cfg.endpoint()
    assert "plain http://" in str(err.value) and PASSWORD not in str(err.value)
    monkeypatch.delenv("VLM_URL")
    assert cfg.endpoint() == cfg.base_url  # unset: base_url


def test_redaction_keeps_host_and_path_and_drops_user_info():
    assert (
        redact_url(f"https://alice:{PASSWORD}@h.org:8443/v1?x=1") == "https://***@h.org:8443/v1?x=1"
    )
    assert redact_url("https://h.org/v1") == "https://h.org/v1"
    text = f"failed: http://a:{PASSWORD}@127.0.0.1:9/v1 and postgresql://u:p@db/x; mail a@b.c"
    assert redact(text) == "failed: http://***@127.0.0.1:9/v1 and postgresql://***@db/x; mail a@b.c"


# --- a served endpoint with credentials in its URL -------------------------------------


class _Server:
    def __init__(self) -> None:
        self.auth: list[str | None] = []
        self.status = 200


@pytest.fixture
def endpoint() -> Iterator[tuple[int, _Server]]:
    state = _Server()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            state.auth.append(self.headers.get("Authorization"))
            body = json.dumps({"choices": [{"message": {"content": "[]"}}]}).encode()
            if state.status != 200:
                body = b"bad request"
            self.send_response(state.status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], state
    server.shutdown()
    server.server_close()


def test_credentials_are_sent_but_never_shown(endpoint, monkeypatch, tmp_path):
    port, state = endpoint
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    cfg = OpenAIConfig(base_url_env="VLM_URL", retries=0, timeout_s=5.0)
    monkeypatch.setenv("VLM_URL", f"http://alice:{PASSWORD}@127.0.0.1:{port}/v1")
    backend = OpenAIBackend(cfg)
    img = Image.new("L", (8, 8))
    assert backend.generate([(img, "where?")]) == ["[]"]
    assert state.auth == ["Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()]
    assert backend.model_id == f"openai:http://***@127.0.0.1:{port}/v1:{cfg.model}"

    cache = ResponseCache(tmp_path / "cache")
    key = cache_key("sha-of-image", "where?", backend.model_id, backend.settings())
    cache.put(key, "[]", {"model": backend.model_id})
    stored = "".join(p.read_text() for p in (tmp_path / "cache").rglob("*.json"))
    assert PASSWORD not in stored and "alice" not in stored
    monkeypatch.setenv("VLM_URL", f"http://alice:rotated-password@127.0.0.1:{port}/v1")
    rotated = OpenAIBackend(cfg)
    assert cache_key("sha-of-image", "where?", rotated.model_id, rotated.settings()) == key, (
        "a new password keeps the cached answers"
    )

    state.status = 400
    with pytest.raises(EndpointError) as err:
        backend.generate([(img, "where?")])
    assert PASSWORD not in str(err.value) and "***@127.0.0.1" in str(err.value)
    monkeypatch.setenv("VLM_URL", f"http://alice:{PASSWORD}@127.0.0.1:9/v1")  # nothing there
    with pytest.raises(EndpointError) as err:
        OpenAIBackend(cfg).generate([(img, "where?")])
    assert PASSWORD not in str(err.value)


def test_prefect_cache_keys_and_mlflow_params_drop_url_credentials():
    from tasks.caching import RedactedInputs
    from tasks.mlflow_log import flatten

    def key(url: str) -> str | None:
        return RedactedInputs().compute_key(None, {"cfg": {"url": url}, "n": 1}, {})

    a = key(f"https://alice:{PASSWORD}@h.org/v1")
    assert a == key("https://bob:other@h.org/v1") == key("https://***@h.org/v1")
    assert a != key(f"https://alice:{PASSWORD}@other.org/v1")
    assert flatten({"openai": {"base_url": f"https://alice:{PASSWORD}@h.org/v1"}}) == {
        "openai.base_url": "https://***@h.org/v1"
    }


def test_readme_exposes_no_unauthenticated_server_and_says_who_writes_mlflow():
    """The README and the docs it maps (deployments: Prefect; configuration: MLflow, VLM)."""
    docs = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    for path in docs:
        assert "prefect server start --host 0.0.0.0" not in path.read_text(), path
    deployments = (REPO / "docs" / "deployments.md").read_text()
    configuration = (REPO / "docs" / "configuration.md").read_text()
    assert "prefect server start --host 127.0.0.1" in deployments
    assert "PREFECT_SERVER_API_AUTH_STRING" in deployments and "reverse proxy" in deployments
    assert "Loading a pickle runs code from the store" in configuration
    assert "allow_insecure_http" in configuration
