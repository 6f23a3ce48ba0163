"""One task per GPU: slots never shared, CUDA_VISIBLE_DEVICES per process, CPU twin, limits.

No GPU here: ``BRAINXAI_GPU_SLOTS=N`` fakes N devices (the allocator and the environment
are exercised; no CUDA call is made). Every task records the interval it held its slot;
two intervals on one slot must not overlap.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import pytest
from prefect import flow, task

import tasks  # noqa: F401  (embedded defaults first)
from brainxai.devices import CVD, LOCK_DIR_ENV, SLOTS_ENV, device_slot
from tasks.gpu import GPU_TAG, ensure_gpu_limit, on_gpu_slot
from tasks.runners import task_runner

HOLD_S = 0.15


def _hold(_: int) -> dict:
    """Hold a slot for a while; record which, when, and what the process sees."""
    with device_slot() as slot:
        t0 = time.monotonic()
        time.sleep(HOLD_S)
        return {"slot": slot.slot, "id": slot.device_id, "device": slot.device,
                "cvd": os.environ.get(CVD), "t0": t0, "t1": time.monotonic(),
                "pid": os.getpid()}  # fmt: skip


def _assert_no_overlap(records: list[dict], n_slots: int) -> None:
    by_slot: dict[int, list[tuple[float, float]]] = {}
    for r in records:
        by_slot.setdefault(r["id"], []).append((r["t0"], r["t1"]))
    assert set(by_slot) <= {str(i) for i in range(n_slots)}
    for spans in by_slot.values():
        spans.sort()
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start >= end, f"slot shared: {spans}"


@pytest.fixture
def fake_gpus(monkeypatch, tmp_path):
    monkeypatch.setenv(SLOTS_ENV, "2")
    monkeypatch.setenv(LOCK_DIR_ENV, str(tmp_path / "locks"))
    monkeypatch.delenv(CVD, raising=False)
    return 2


def test_threads_never_share_a_slot_and_use_every_slot(fake_gpus):
    with ThreadPoolExecutor(max_workers=6) as pool:
        records = list(pool.map(_hold, range(6)))
    _assert_no_overlap(records, fake_gpus)
    assert {r["slot"] for r in records} == {0, 1}
    # threads share a process: no CUDA_VISIBLE_DEVICES, the slot's device index instead
    assert all(r["cvd"] is None and r["device"] == f"cuda:{r['slot']}" for r in records)
    # 6 tasks, 2 slots, 0.15 s each: at least 3 rounds
    assert max(r["t1"] for r in records) - min(r["t0"] for r in records) >= 3 * HOLD_S


def test_worker_processes_get_cuda_visible_devices_equal_to_their_slot(fake_gpus):
    with ProcessPoolExecutor(max_workers=3) as pool:
        records = list(pool.map(_hold, range(6)))
    _assert_no_overlap(records, fake_gpus)
    for r in records:
        assert r["cvd"] == r["id"] == str(r["slot"]) and r["device"] == "cuda:0"
    # a process stays on the device its CUDA was pinned to
    pinned: dict[int, set[str]] = {}
    for r in records:
        pinned.setdefault(r["pid"], set()).add(r["id"])
    assert all(len(ids) == 1 for ids in pinned.values())


def test_a_slot_is_reentrant_in_its_thread(fake_gpus):
    with device_slot() as outer, device_slot() as inner:  # would self-deadlock otherwise
        assert inner == outer and outer.slot is not None


def test_cpu_twin_yields_the_cpu_and_never_waits(monkeypatch, tmp_path):
    monkeypatch.delenv(SLOTS_ENV, raising=False)
    monkeypatch.setenv(LOCK_DIR_ENV, str(tmp_path / "locks"))
    barrier = threading.Barrier(4, timeout=10)

    def inside(_: int) -> str:
        with device_slot() as slot:
            barrier.wait()  # all four hold their "slot" at once: nothing blocks
            return slot.device

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(inside, range(4))) == ["cpu"] * 4
    assert not (tmp_path / "locks").exists()


@task(tags=[GPU_TAG])
@on_gpu_slot
def gpu_probe(i: int) -> dict:
    """A GPU-tagged Prefect task: what it sees inside its slot."""
    return _hold(i)


@flow
def probe_flow(n: int) -> list[dict]:
    return [f.result() for f in [gpu_probe.submit(i) for i in range(n)]]


@pytest.mark.slow
def test_prefect_tasks_on_dask_worker_processes_hold_their_own_device(fake_gpus):
    """Process-isolated Prefect tasks (Dask worker processes; Prefect's ProcessPool runner
    starts one ephemeral API per worker without a server, so it is not used here)."""
    runner = task_runner({"runner": {"kind": "dask", "workers": 3}})
    records = probe_flow.with_options(task_runner=runner)(5)
    _assert_no_overlap(records, fake_gpus)
    assert len(records) == 5 and len({r["pid"] for r in records}) > 1
    assert all(r["cvd"] == r["id"] == str(r["slot"]) for r in records)
    assert GPU_TAG in gpu_probe.tags


def test_gpu_stage_tasks_carry_the_tag_and_keep_their_source_for_the_cache_key():
    import inspect

    from tasks.classify3d import train_run
    from tasks.finetune import finetune_cell, finetune_embed
    from tasks.pretrain import pretrain_framework
    from tasks.pseudolabel import pseudolabel_one
    from tasks.xai import explain_task, randomisation_task

    gpu_tasks = [pretrain_framework, finetune_embed, finetune_cell, train_run,
                 explain_task, randomisation_task, pseudolabel_one]  # fmt: skip
    for t in gpu_tasks:
        assert GPU_TAG in t.tags, t.name
        assert f"def {t.fn.__name__}(" in inspect.getsource(t.fn)
        assert "self" not in inspect.signature(t.fn).parameters


def test_gpu_concurrency_limit_is_created_idempotently():
    from prefect.client.orchestration import get_client

    tag = "gpu-test-limit"
    assert ensure_gpu_limit(2, tag=tag) == {"tag": tag, "limit": 2, "changed": True}
    assert ensure_gpu_limit(2, tag=tag)["changed"] is False
    assert ensure_gpu_limit(3, tag=tag)["changed"] is True
    with get_client(sync_client=True) as client:
        assert client.read_concurrency_limit_by_tag(tag).concurrency_limit == 3
        client.delete_concurrency_limit_by_tag(tag)
    with pytest.raises(ValueError, match=">= 1"):
        ensure_gpu_limit(0, tag=tag)
