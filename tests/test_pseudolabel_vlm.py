"""Both VLM backends end to end on local stand-ins, and the response cache.

``openai``: a small HTTP server on 127.0.0.1 answering in the OpenAI chat format (named as a
Qwen3-VL, so ``prompts.coords: auto`` reads its boxes on the 0-1000 grid) — it
boxes the lesion on the 0-1000 grid from the truth, answers one slice with prose first
(-> strict retry), fails once with 503 (-> back-off retry), records the concurrency
it sees, and can "crash" after N answers (-> the re-run asks only the missing slices).
``transformers``: a tiny randomly initialised Qwen3-VL saved with
``save_pretrained`` and loaded through the stage's own loader (random text -> every
answer malformed -> retried with the strict prompt -> "no box" with the raw text kept).
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from brainxai.pseudolabel import PseudolabelConfig, make_proposer, pseudolabel_subject
from brainxai.pseudolabel.proposers.vlm import VLMProposer
from tests.test_pseudolabel_refine import phantom, save_phantom


class FakeVLM:
    """State of the fake endpoint: the box to give, failures to inject, what it saw."""

    def __init__(self, box_1000: list[int]) -> None:
        self.box = box_1000
        self.lock = threading.Lock()
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.fail_first = 1  # 503 answers before the first success
        self.prose_once = True
        self.ok_budget = 10**9  # successful answers left before the server "crashes" (503s)
        self.delay_s = 0.02


def _handler(state: FakeVLM) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with state.lock:
                state.requests += 1
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
                fail = state.fail_first > 0 or state.ok_budget <= 0
                state.fail_first -= 1 if state.fail_first > 0 else 0
                state.ok_budget -= 0 if fail else 1
            time.sleep(state.delay_s)
            with state.lock:
                state.in_flight -= 1
            if self.path != "/v1/chat/completions" or fail:
                self.send_response(503 if fail else 404)
                self.end_headers()
                return
            parts = body["messages"][0]["content"]
            url = next(p["image_url"]["url"] for p in parts if p["type"] == "image_url")
            text = next(p["text"] for p in parts if p["type"] == "text")
            img = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
            assert img.format == "PNG" and "JSON" in text
            bright = np.asarray(img.convert("L")).max() > 250  # the lesion slices only
            strict = "could not be read" in text
            with state.lock:
                prose = state.prose_once and bright and not strict
                state.prose_once = state.prose_once and not prose
            if prose:
                answer = "There is an enhancing mass in the right hemisphere."
            elif bright:
                answer = json.dumps([{"bbox_2d": state.box, "label": "tumor"}])
            else:
                answer = "[]"
            out = {"choices": [{"index": 0, "message": {"role": "assistant", "content": answer}}]}
            data = json.dumps(out).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


@pytest.fixture
def fake_server() -> Iterator[tuple[str, FakeVLM]]:
    state = FakeVLM([0, 0, 0, 0])
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", state
    server.shutdown()
    server.server_close()


def _vlm_cfg(proposer: str, **section: Any) -> PseudolabelConfig:
    return PseudolabelConfig.from_dict(
        {
            "proposer": proposer,
            proposer: section,
            "slices": {"sequences": ["T1C+"], "render_size": 96, "min_brain_fraction": 0.5,
                       "window_percentiles": [0.5, 99.9]},
            "refine": {"n_positive": 1500, "n_negative": 4500, "epochs": 10},
        }
    )  # fmt: skip


def test_openai_backend_end_to_end_with_retries_and_cache(tmp_path: Path, fake_server) -> None:
    url, state = fake_server
    sub, truth = phantom()
    files = save_phantom(sub, truth, tmp_path / "in")
    # the lesion's bounding box in pixels of the rendered (radiological) slice, on the 0-1000 grid
    nx, ny, _ = truth.shape
    ii, jj = np.nonzero(truth.any(axis=2))
    cols = (nx - 1 - ii.max(), nx - ii.min())  # radiological: column = nx - 1 - i
    rows = (ny - 1 - jj.max(), ny - jj.min())  # anterior at the top
    state.box = [round(1000 * cols[0] / nx), round(1000 * rows[0] / ny),
                 round(1000 * cols[1] / nx), round(1000 * rows[1] / ny)]  # fmt: skip
    cfg = _vlm_cfg("openai", base_url=url, model="fake-Qwen3-VL", max_concurrency=3, retries=2,
                   backoff_s=0.01, timeout_s=5.0)  # fmt: skip
    images = {s: files[s] for s in ("T1", "T1C+", "T2", "FLAIR")}
    prop = make_proposer(cfg, cache_dir=tmp_path / "cache")
    assert isinstance(prop, VLMProposer)
    rec = pseudolabel_subject(images, files["brain"], tmp_path / "out", cfg, prop,
                              lesion_mask=files["lesion"])  # fmt: skip
    answers = json.loads(Path(rec["files"]["answers"]).read_text())["answers"]
    n_slices = rec["n_answers"]
    assert state.max_in_flight <= 3 and state.max_in_flight >= 2  # bounded, and concurrent
    assert prop.queried == n_slices + 1  # one slice asked twice (strict retry)
    assert state.requests == prop.queried + 1  # plus the 503 that was retried
    retried = [a for a in answers if a["attempts"] == 2]
    assert len(retried) == 1 and retried[0]["status"] == "ok"
    assert rec["n_boxes"] > 0 and rec["detected_coarse"] and rec["box_iou"] > 0.3
    lesion_slices = set(np.flatnonzero(truth.any(axis=(0, 1))).tolist())
    assert {a["k"] for a in answers if a["boxes"]} <= lesion_slices
    # re-run: every answer from the cache, no request sent, the same masks
    before = state.requests
    prop2 = make_proposer(cfg, cache_dir=tmp_path / "cache")
    rec2 = pseudolabel_subject(images, files["brain"], tmp_path / "out2", cfg, prop2,
                               lesion_mask=files["lesion"])  # fmt: skip
    assert state.requests == before and prop2.queried == 0 and rec2["n_cached"] == n_slices
    assert rec2["dice_union"] == rec["dice_union"]


def test_openai_crash_mid_session_then_resume_asks_only_missing_slices(
    tmp_path: Path, fake_server
) -> None:
    from brainxai.pseudolabel.proposers.openai_client import EndpointError

    url, state = fake_server
    state.fail_first, state.prose_once, state.box = 0, False, [100, 100, 300, 300]
    state.ok_budget = 8  # the endpoint dies after 8 answers
    cfg = _vlm_cfg(
        "openai", base_url=url, retries=1, backoff_s=0.01, timeout_s=5.0, max_concurrency=2
    )  # fmt: skip  (batches of 8 slices are cached as they return)
    sub, _ = phantom()
    with pytest.raises(EndpointError, match="no answer after 2 tries"):
        make_proposer(cfg, cache_dir=tmp_path / "c").propose(sub)
    state.ok_budget = 10**9  # back up: the re-run asks only what was not answered
    prop = make_proposer(cfg, cache_dir=tmp_path / "c")
    answers = prop.propose(sub)
    assert prop.queried == len(answers) - 8 and sum(a.cached for a in answers) == 8


def test_tiny_qwen3vl_load_prompt_generate_parse(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from tests.tiny_vlm import build_tiny_qwen3vl

    model_dir = build_tiny_qwen3vl(tmp_path / "tiny-qwen3vl")
    cfg = _vlm_cfg("transformers", model_path=str(model_dir), batch_size=4, max_new_tokens=6,
                   device="cpu")  # fmt: skip
    cfg = PseudolabelConfig.from_dict(
        {**cfg.to_dict(), "slices": {**cfg.to_dict()["slices"], "min_brain_fraction": 0.9}}
    )
    sub, _ = phantom()
    prop = make_proposer(cfg, cache_dir=tmp_path / "cache")
    answers = prop.propose(sub)
    assert answers and all(a.attempts == 2 for a in answers)  # expert, then strict prompt
    assert all(a.status == "malformed" and not a.boxes for a in answers)
    assert prop.queried == 2 * len(answers)
    cached = make_proposer(cfg, cache_dir=tmp_path / "cache")
    again = cached.propose(sub)
    assert cached.queried == 0 and [a.raw for a in again] == [a.raw for a in answers]
