"""The probe flow of gpu_acceptance.py's ``gpu_pool_deployment`` check (issue 18).

Deployed to the ``gpu`` work pool of prefect.yaml and run by a process worker of that
pool, from the checkout the pull step names (``$BRAINXAI_ROOT``), it runs one task the way
the GPU stages run theirs: tagged :data:`tasks.gpu.GPU_TAG` (the tag concurrency limit) and
inside :func:`tasks.gpu.on_gpu_slot` (one device of the host). The task reports the slot it
got and checks a matmul on that device against the CPU; the flow writes the report to
``out`` (the check reads it there).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import flow, task

from tasks.gpu import GPU_TAG, on_gpu_slot


@task(tags=[GPU_TAG])
@on_gpu_slot
def gpu_probe_task(n: int, dry_run: bool) -> dict[str, Any]:
    """The slot this task holds and a float32 matmul there vs the CPU (TF32 off)."""
    import os

    import torch

    from brainxai.devices import device_slot

    with device_slot() as slot:  # re-entrant: the slot on_gpu_slot holds
        # a dry run's slot is a fake one (BRAINXAI_GPU_SLOTS): compute on the CPU
        dev = torch.device("cpu" if dry_run else slot.device)
        g = torch.Generator().manual_seed(0)
        a = torch.randn(n, n, generator=g)
        saved = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False
        try:
            got = (a.to(dev) @ a.to(dev)).cpu()
        finally:
            torch.backends.cuda.matmul.allow_tf32 = saved
        ref = a @ a
        err = float((got - ref).abs().max() / ref.abs().max())
        return {
            "slot": slot.slot,
            "device_id": slot.device_id,
            "slot_device": slot.device,
            "isolated": slot.isolated,
            "computed_on": str(dev),
            "cuda_available": torch.cuda.is_available(),
            "current_device": torch.cuda.current_device() if dev.type == "cuda" else None,
            "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
            "matmul_rel_err": err,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        }


@flow(name="gpu-acceptance-probe", log_prints=True)
def gpu_probe_flow(out: str, n: int = 64, dry_run: bool = False) -> dict[str, Any]:
    """Run :func:`gpu_probe_task` once and write its report to ``out`` (JSON).

    Args:
        out: where to write the report (a path on the worker's host).
        n: matmul size.
        dry_run: compute on the CPU (the slot is a fake one).
    """
    report = gpu_probe_task(n, dry_run)
    Path(out).write_text(json.dumps(report, indent=2) + "\n")
    return report
