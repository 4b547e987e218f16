"""The on-device intent matcher: which outgoing edge does the user's turn mean?

Per edge (``data``): ``keywords`` (a whole-phrase hit scores 1.0), ``examples`` (the best
cosine similarity of the turn's embedding to theirs; without embeddings a phrase of the
turn equal to an example scores 0.9), ``slots`` (values the edge needs: an edge whose
required slots are missing, or differ from ``equals``, is not a candidate; an edge with
slots and no phrases scores ``threshold``, so any stronger phrase intent beats it) and
``dtmf``. The best candidate at or above ``threshold`` wins; ties go to the first (the
node's own edges, then the global ones, in file order). Deterministic for a given model.

Embeddings come from :func:`~._embed.shared_embedder` (loaded once per process) and run in a
worker thread (``asyncio.to_thread``), never on the event loop; when the model or the
tokenizer is missing the matcher logs it once and goes on with keywords and exact examples.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from ...errors import ConfigError, MissingExtraError
from ._model import GraphEdge
from ._slots import extract_slot, normalize

__all__ = ["Embedder", "IntentMatch", "IntentMatcher"]

logger = logging.getLogger("flowcat.agent.intent")


class Embedder(Protocol):
    """Anything with ``encode(sentences) -> (n, d) unit vectors`` (blocking)."""

    def encode(self, sentences: Sequence[str]) -> npt.NDArray[np.float32]: ...


@dataclass
class IntentMatch:
    """The chosen edge, its score, how it was chosen and the slot values taken."""

    edge: GraphEdge
    score: float
    via: str
    slots: dict[str, Any] = field(default_factory=dict)


class IntentMatcher:
    """Matches a transcript (or keys) to edges.

    Args:
        embedder: ``"auto"`` (default): the bundled all-MiniLM-L6-v2 if installed, else
            keywords only; ``None``: keywords and exact examples only; or an :class:`Embedder`.
        threshold: Minimum score of a match (cosine similarity for examples).
    """

    def __init__(self, *, embedder: Embedder | str | None = "auto", threshold: float = 0.6) -> None:
        self.threshold = threshold
        self._embedder_spec = embedder
        self._embedder: Embedder | None = None if isinstance(embedder, str) else embedder
        self._resolved = not isinstance(embedder, str)
        self._vectors: dict[str, npt.NDArray[np.float32]] = {}

    def _get_embedder(self) -> Embedder | None:
        if not self._resolved:
            self._resolved = True
            try:
                from ._embed import shared_embedder

                self._embedder = shared_embedder()
            except (ConfigError, MissingExtraError) as exc:
                logger.warning("intent: no embeddings (%s); matching keywords and exact examples only", exc)
                self._embedder = None
        return self._embedder

    @property
    def uses_embeddings(self) -> bool:
        """Whether example phrases are compared by embeddings (loads the model on first use)."""
        return self._get_embedder() is not None

    async def _embed(self, texts: Sequence[str]) -> dict[str, npt.NDArray[np.float32]]:
        emb = self._get_embedder()
        if emb is None:
            return {}
        missing = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        if missing:
            vecs = await asyncio.to_thread(emb.encode, missing)
            for t, v in zip(missing, vecs, strict=True):
                self._vectors[t] = np.asarray(v, dtype=np.float32)
        return {t: self._vectors[t] for t in texts}

    async def prepare(self, edges: Sequence[GraphEdge]) -> None:
        """Embed every example phrase now (else on first use)."""
        await self._embed([normalize(x) for e in edges for x in e.data.examples])

    def match_dtmf(self, digits: str, edges: Sequence[GraphEdge]) -> IntentMatch | None:
        """The first edge whose ``dtmf`` equals ``digits`` (a trailing ``#`` ignored)."""
        keys = digits.rstrip("#") or digits
        for e in edges:
            if e.data.dtmf is not None and e.data.dtmf in (digits, keys):
                return IntentMatch(e, 1.0, "dtmf")
        return None

    async def match(self, text: str, edges: Sequence[GraphEdge], *, now: datetime) -> IntentMatch | None:
        """The best edge for ``text`` at or above the threshold, or None."""
        t = normalize(text)
        if not t:
            return None
        padded = f" {t} "
        examples = [normalize(x) for e in edges for x in e.data.examples]
        vectors = await self._embed([t, *examples]) if examples else {}
        best: IntentMatch | None = None
        for e in edges:
            slots: dict[str, Any] = {}
            ok = True
            for spec in e.data.slots:
                value = extract_slot(spec.type, text, now=now)
                if value is None:
                    ok = ok and not spec.required
                    continue
                if spec.equals is not None and value != spec.equals:
                    ok = False
                slots[spec.name] = value
            if not ok:
                continue
            score, via = 0.0, ""
            if any(f" {normalize(k)} " in padded for k in e.data.keywords if normalize(k)):
                score, via = 1.0, "keyword"
            for x in e.data.examples:
                nx = normalize(x)
                if vectors:
                    s = float(vectors[t] @ vectors[nx])
                    if s > score:
                        score, via = s, "embedding"
                elif nx and f" {nx} " in padded and score < 0.9:
                    score, via = 0.9, "example"
            if not e.data.keywords and not e.data.examples and e.data.slots:
                score, via = self.threshold, "slots"
            if score >= self.threshold and (best is None or score > best.score):
                best = IntentMatch(e, score, via, slots)
        if best is not None:
            logger.debug("intent: %r -> %s (%.3f via %s)", text, best.edge.id, best.score, best.via)
        return best
