"""Prefect artifacts of a stage flow: the metrics table equals the stage's metrics JSON.

Runs the real ``synth`` stage flow (tiny cohort) against the ephemeral API and reads the
artifacts back with the Prefect client.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

from prefect import flow

import tasks  # noqa: F401  (embedded defaults first)
from tasks.artifacts import artifact_key, metric_rows, publish_stage
from tests.conftest import make_study

KEY = r"^[a-z0-9-]+$"


def _read(key: str) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        )


def _png(path: Path) -> Path:
    """A valid 1x1 PNG (by construction: signature, IHDR, IDAT, IEND)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    raw = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0\0"))
    path.write_bytes(raw + chunk(b"IEND", b""))
    return path


def test_keys_are_valid_prefect_artifact_keys():
    import re

    for parts in [("pretrain_simclr", "metrics"), ("xai", "plot", "byol__finetune__f0.1")]:
        assert re.match(KEY, artifact_key(*parts))
    assert artifact_key("xai", "plot", "byol__finetune__f0.1__s0__gradcam++") == (
        "xai-plot-byol-finetune-f0-1-s0-gradcam"
    )


def test_metric_rows_flatten_nested_json():
    rows = metric_rows({"b": {"y": 2, "x": 1.5}, "a": [1, 2], "c": "ok"})
    assert rows == [
        {"metric": "a", "value": "[1, 2]"},
        {"metric": "b.x", "value": 1.5},
        {"metric": "b.y", "value": 2},
        {"metric": "c", "value": "ok"},
    ]


def test_plot_is_embedded_as_a_data_uri_and_read_back(tmp_path):
    import base64

    png = _png(tmp_path / "tiny_plot.png")
    metrics = tmp_path / "m.json"
    metrics.write_text(json.dumps({"acc": 0.5}))

    @flow(name="artifact-plot")
    def plot_flow() -> dict:
        return publish_stage("unit-test", metrics, [png, tmp_path / "missing.png"])

    created = plot_flow()
    assert set(created) == {"m-metrics", "unit-test-plot-tiny-plot"}
    (art,) = [a for a in _read("unit-test-plot-tiny-plot") if str(a.id) == created[
        "unit-test-plot-tiny-plot"]]  # fmt: skip
    uri = art.data.split("](", 1)[1].split(")", 1)[0]
    assert base64.b64decode(uri.removeprefix("data:image/png;base64,")) == png.read_bytes()


def test_synth_stage_flow_attaches_its_metrics_table(tmp_path, monkeypatch):
    from flows.synth import synth_flow

    root = make_study(tmp_path / "study")
    monkeypatch.setenv("BRAINXAI_ROOT", str(root))
    synth_flow(root=str(root))
    expected = metric_rows(json.loads((root / "reports/metrics/synth.json").read_text()))
    arts = _read("synth-metrics")
    assert arts, "no synth-metrics artifact"
    newest = max(arts, key=lambda a: a.created)
    assert newest.type == "table" and newest.flow_run_id is not None
    assert json.loads(newest.data) == expected
