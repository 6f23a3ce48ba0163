"""VLM box proposer: render slices, ask with the prompt set's template, parse, retry strictly.

Shared by both model backends (:mod:`.transformers_vlm`, :mod:`.openai_client`), which
only turn ``(image, prompt)`` pairs into text, in batches. Per session: every brain
slice of every sequence asked (``slices.sequences``, else the prompt set's: T1C+ only for
``paper003``) is rendered (:mod:`..render`); answers
come from the response cache when present, the misses are asked in batches and each
batch is cached as soon as it returns, so a crashed run resumes without re-asking.
A malformed answer is asked again with the strict template (``prompts.max_retries``
times), then recorded as "no box" with status ``malformed`` and its raw text.
Transport errors are not answers: they propagate (the task's retry picks up from the cache).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from PIL import Image

from brainxai.pseudolabel.boxes import MalformedAnswer, SliceGeometry, parse_boxes
from brainxai.pseudolabel.cache import ResponseCache, cache_key
from brainxai.pseudolabel.config import PROMPT_SETS, PromptConfig, SliceConfig, coords_for_model
from brainxai.pseudolabel.prompts import load_template, render_prompt
from brainxai.pseudolabel.proposers.base import SliceAnswer
from brainxai.pseudolabel.render import image_sha256, render_slice, window
from brainxai.pseudolabel.volumes import SubjectVolumes


class TextBackend(Protocol):
    """A model answering ``(image, prompt)`` pairs with text, in batches."""

    model_id: str
    batch_size: int

    def settings(self) -> dict[str, Any]: ...

    def generate(self, requests: list[tuple[Image.Image, str]]) -> list[str]: ...


@dataclass
class _Request:
    answer: SliceAnswer
    geom: SliceGeometry
    image: Image.Image
    image_sha: str


class VLMProposer:
    """Boxes from a vision-language model (``name`` = ``transformers`` or ``openai``).

    ``model``: the answering model's name or ``model_type`` — it picks the box coordinates
    when ``prompts.coords`` is ``auto`` (:func:`~brainxai.pseudolabel.config.coords_for_model`).
    """

    def __init__(
        self,
        name: str,
        backend: TextBackend,
        slices: SliceConfig,
        prompts: PromptConfig,
        cache: ResponseCache | None = None,
        model: str = "",
    ) -> None:
        self.name = name
        self.backend = backend
        self.slices = slices
        self.prompts = prompts
        self.cache = cache
        self.model = model
        self.coords = coords_for_model(prompts.coords, model)
        self.sequences = tuple(slices.sequences) or PROMPT_SETS[prompts.set]
        self.queried = 0  # model calls made (cache misses)

    def _requests(self, subject: SubjectVolumes) -> list[_Request]:
        nx, ny, _ = subject.shape
        reqs = []
        ks = subject.axial_slices(self.slices.min_brain_fraction)
        for seq in self.sequences:
            if seq not in subject.volumes:
                raise KeyError(f"sequence {seq} not standardized for this session")
            u8 = window(subject.volumes[seq], subject.brain, self.slices.window_percentiles)
            for k in ks:
                geom = SliceGeometry.fit(k, nx, ny, self.slices.render_size,
                                         self.slices.radiological)  # fmt: skip
                img = render_slice(u8, geom)
                reqs.append(_Request(SliceAnswer(k, seq), geom, img, image_sha256(img)))
        return reqs

    def _prompt(self, template: str, req: _Request) -> str:
        return render_prompt(
            load_template(template), req.answer.sequence, req.geom.width, req.geom.height,
            self.coords, self.slices.radiological,
        )  # fmt: skip

    def _ask(self, pending: list[tuple[_Request, str]]) -> list[tuple[str, bool]]:
        """Answers (text, from cache) for ``(request, prompt)`` pairs; misses in batches."""
        settings = self.backend.settings()
        keys = [cache_key(r.image_sha, p, self.backend.model_id, settings) for r, p in pending]
        texts: list[str | None] = [self.cache.get(k) if self.cache else None for k in keys]
        out = [(t or "", t is not None) for t in texts]
        misses = [i for i, t in enumerate(texts) if t is None]
        bs = self.backend.batch_size
        for start in range(0, len(misses), bs):
            idx = misses[start : start + bs]
            answers = self.backend.generate([(pending[i][0].image, pending[i][1]) for i in idx])
            self.queried += len(idx)
            for i, text in zip(idx, answers, strict=True):
                if self.cache is not None:
                    self.cache.put(keys[i], text, {"model": self.backend.model_id})
                out[i] = (text, False)
        return out

    def propose(self, subject: SubjectVolumes) -> list[SliceAnswer]:
        reqs = self._requests(subject)
        todo = list(reqs)
        templates = [self.prompts.template] + [self.prompts.strict] * self.prompts.max_retries
        for template in templates:
            if not todo:
                break
            answers = self._ask([(r, self._prompt(template, r)) for r in todo])
            retry = []
            for req, (text, cached) in zip(todo, answers, strict=True):
                ans = req.answer
                ans.raw, ans.cached = text, cached
                ans.attempts += 1
                try:
                    boxes = parse_boxes(text, req.geom.width, req.geom.height, self.coords)
                except MalformedAnswer:
                    ans.status, ans.boxes = "malformed", []
                    retry.append(req)
                    continue
                ans.boxes = [req.geom.to_voxels(b) for b in boxes]
                ans.status = "ok" if ans.boxes else "no_box"
            todo = retry
        return [r.answer for r in reqs]
