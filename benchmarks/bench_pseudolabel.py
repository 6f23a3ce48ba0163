"""Pseudo-labelling: quality against the generator's truth, and what caching/concurrency buy.

Quality (``--root`` = a study with the standardize stage's outputs): every standardized
session through the stage's library code with the params' config — the ``classical``
proposer — and with ``oracle`` boxes (each truth component's box on each slice: a
perfect box proposer, the upper bound of the box -> prior -> MLP path). Prints Dice,
HD95 and detection of the coarse prior, the refined mask and their union per class,
and box IoU per slice. Refinement ablations: ``--ablate`` adds neighbourhood
statistics / template coordinates to the features.

Speed (always, needs no data): a fake OpenAI-compatible endpoint on 127.0.0.1 with a
fixed latency per request answers a session's slices (a) one request at a time,
(b) ``max_concurrency`` at a time, (c) again from the response cache; ratios vs (a).

    python benchmarks/bench_pseudolabel.py --root /tmp/helperE/study [--limit 8] [--ablate]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from brainxai.config import load_params  # noqa: E402
from brainxai.pseudolabel import PseudolabelConfig, make_proposer, pseudolabel_subject  # noqa: E402
from brainxai.pseudolabel.boxes import VoxelBox  # noqa: E402
from brainxai.pseudolabel.proposers.base import SliceAnswer  # noqa: E402
from brainxai.pseudolabel.stage import session_table  # noqa: E402
from brainxai.pseudolabel.volumes import SubjectVolumes, load_mask  # noqa: E402

QUALITY = [f"{q}_{m}" for q in ("dice", "hd95", "detected") for m in ("coarse", "refined", "union")]


class OracleProposer:
    """Boxes of the truth's 2D components on every slice (uses the truth: bound only)."""

    name = "oracle"

    def __init__(self, truth_path: str) -> None:
        self.truth = load_mask(truth_path)

    def propose(self, subject: SubjectVolumes) -> list[SliceAnswer]:
        from scipy import ndimage

        out = []
        for k in range(self.truth.shape[2]):
            labels, _ = ndimage.label(self.truth[:, :, k])
            boxes = [VoxelBox(k, si.start, si.stop, sj.start, sj.stop)
                     for si, sj in ndimage.find_objects(labels)]  # fmt: skip
            if boxes:
                out.append(SliceAnswer(k, "truth", boxes, "ok"))
        return out


def _one(args: tuple[dict[str, Any], dict[str, Any], str, str]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    sess, cfg_dict, proposer, out = args
    cfg = PseudolabelConfig.from_dict(cfg_dict)
    prop = OracleProposer(sess["lesion_mask"]) if proposer == "oracle" else make_proposer(cfg)
    t0 = time.perf_counter()
    rec = pseudolabel_subject(sess["images"], sess["brain_mask"], Path(out) / sess["key"], cfg,
                              prop, lesion_mask=sess["lesion_mask"])  # fmt: skip
    return {"subject": sess["subject"], "label": sess["label"], "proposer": proposer,
            "seconds": time.perf_counter() - t0,
            **{k: rec[k] for k in [*QUALITY, "box_iou", "n_boxes", "flag"]}}  # fmt: skip


def quality(root: Path, limit: int, ablate: bool, workers: int) -> pd.DataFrame:
    params = load_params(root / "params.yaml")
    base = params["pseudolabel"]["config"]
    manifest = pd.read_parquet(root / "data/processed/manifest_std.parquet")
    sessions = [s for s in session_table(manifest, root) if s["ok"] and s["lesion_mask"]]
    sessions = sessions[:limit] if limit else sessions
    runs: list[tuple[str, str, dict[str, Any]]] = [("classical", "classical", base),
                                                   ("oracle", "oracle", base)]  # fmt: skip
    if ablate:
        for name, extra in (("+neighbourhood 4mm", {"scales_mm": [4.0]}),
                            ("+coords", {"use_coords": True})):  # fmt: skip
            cfg = json.loads(json.dumps(base))
            cfg["refine"].update(extra)
            runs.append((f"classical {name}", "classical", cfg))
    rows = []
    with tempfile.TemporaryDirectory() as tmp, ProcessPoolExecutor(workers) as pool:
        for tag, proposer, cfg in runs:
            jobs = [(s, cfg, proposer, f"{tmp}/{tag}") for s in sessions]
            t0 = time.perf_counter()
            res = list(pool.map(_one, jobs))
            print(f"{tag}: {len(res)} sessions in {time.perf_counter() - t0:.1f} s", flush=True)
            rows += [{**r, "run": tag} for r in res]
    return pd.DataFrame(rows)


def report(df: pd.DataFrame) -> str:
    lines = []
    for run, g in df.groupby("run", sort=False):
        lines.append(f"\n**{run}** ({len(g)} sessions, mean box IoU per slice "
                     f"{g['box_iou'].mean():.3f})\n")  # fmt: skip
        lines.append("| class | n | Dice coarse | Dice refined | Dice union | HD95 coarse | "
                     "HD95 refined | HD95 union | detected c/r/u |")  # fmt: skip
        lines.append("|---|---|---|---|---|---|---|---|---|")
        for cls, c in [*g.groupby("label"), ("all", g)]:
            det = "/".join(
                f"{c[f'detected_{m}'].mean():.2f}" for m in ("coarse", "refined", "union")
            )
            lines.append(
                f"| {cls} | {len(c)} | {c['dice_coarse'].mean():.3f} | "
                f"{c['dice_refined'].mean():.3f} | {c['dice_union'].mean():.3f} | "
                f"{c['hd95_coarse'].mean():.1f} | {c['hd95_refined'].mean():.1f} | "
                f"{c['hd95_union'].mean():.1f} | {det} |"
            )
        better = int((g["dice_refined"] > g["dice_coarse"]).sum())
        lines.append(f"\nrefined > coarse (Dice) in {better}/{len(g)} sessions; "
                     f"mean gain {(g['dice_refined'] - g['dice_coarse']).mean():+.3f}")  # fmt: skip
    return "\n".join(lines)


# --- speed: concurrency and cache against a fake endpoint ------------------------------


def _server(latency_s: float) -> tuple[ThreadingHTTPServer, dict[str, int]]:
    seen = {"requests": 0}
    lock = threading.Lock()

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a: Any) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            with lock:
                seen["requests"] += 1
            time.sleep(latency_s)
            data = json.dumps({"choices": [{"message": {"content": "[]"}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, seen


def speed(latency_s: float, concurrency: int) -> dict[str, float]:
    from tests.test_pseudolabel_refine import phantom

    sub, _ = phantom()
    srv, seen = _server(latency_s)
    url = f"http://127.0.0.1:{srv.server_address[1]}/v1"
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for tag, conc, cache in (("serial", 1, "a"), ("concurrent", concurrency, "b"),
                                 ("cached", concurrency, "b")):  # fmt: skip
            cfg = PseudolabelConfig.from_dict({"proposer": "openai", "openai": {
                "base_url": url, "max_concurrency": conc}, "slices": {"sequences": ["T1C+"],
                "render_size": 128}})  # fmt: skip
            prop = make_proposer(cfg, cache_dir=f"{tmp}/{cache}")
            before = seen["requests"]
            t0 = time.perf_counter()
            answers = prop.propose(sub)
            out[tag] = time.perf_counter() - t0
            out[f"{tag}_requests"] = seen["requests"] - before
            out["slices"] = len(answers)
    srv.shutdown()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, default=None, help="study root with standardized data")
    ap.add_argument("--limit", type=int, default=0, help="first N sessions only (0 = all)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--ablate", action="store_true")
    ap.add_argument("--latency", type=float, default=0.05, help="fake endpoint latency (s)")
    ap.add_argument("--csv", type=Path, default=None)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    s = speed(args.latency, concurrency=4)
    print(f"\nVLM requests for one session ({int(s['slices'])} slices, fake endpoint "
          f"{args.latency * 1000:.0f} ms/request):")  # fmt: skip
    print(f"  serial      {s['serial']:.2f} s  ({int(s['serial_requests'])} requests)  1.00x")
    print(f"  4 in flight {s['concurrent']:.2f} s  ({int(s['concurrent_requests'])} requests)  "
          f"{s['serial'] / s['concurrent']:.2f}x")  # fmt: skip
    print(f"  cached      {s['cached']:.2f} s  ({int(s['cached_requests'])} requests)  "
          f"{s['serial'] / max(s['cached'], 1e-9):.1f}x")  # fmt: skip
    if args.root is not None:
        df = quality(args.root, args.limit, args.ablate, args.workers)
        if args.csv:
            df.to_csv(args.csv, index=False)
        print(report(df))
        secs = df.groupby("run", sort=False)["seconds"].mean().round(1).to_dict()
        print(f"\nseconds per session (mean): {secs}")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
