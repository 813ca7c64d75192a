"""Self-describing checkpoints: plain dicts of tensors and primitives, loaded with
`torch.load(weights_only=True)` (no pickled objects).

Contents: format, model config, model weights, the SentencePiece model(s) as bytes with their
sha256, special ids, languages, step and metrics; training checkpoints add optimizer, scheduler,
RNG and data position for exact resumption.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from nmt.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from training.model import ModelConfig, Seq2Seq

FORMAT = 1
SPECIAL_IDS = {"pad": PAD_ID, "unk": UNK_ID, "bos": BOS_ID, "eos": EOS_ID}


class CheckpointError(ValueError):
    pass


def spm_entry(path: Path) -> dict:
    data = path.read_bytes()
    return {"name": path.name, "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": torch.frombuffer(bytearray(data), dtype=torch.uint8)}


def save(path: Path, payload: dict) -> None:
    """Write atomically: an interrupted save never leaves a truncated checkpoint behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"format": FORMAT, **payload}, tmp)
    os.replace(tmp, path)


def load(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt or foreign files
        raise CheckpointError(f"{path}: not a loadable checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: unknown checkpoint format {ckpt.get('format') if isinstance(ckpt, dict) else '?'}")
    return ckpt


def write_spm(ckpt: dict, directory: Path) -> dict[str, Path]:
    """Write the embedded SentencePiece model(s) to `directory`, checking their hashes."""
    out = {}
    for side, entry in ckpt["spm"].items():
        data = entry["bytes"].numpy().tobytes()
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise CheckpointError(f"SentencePiece model {entry['name']} does not match its sha256")
        path = directory / entry["name"]
        directory.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        out[side] = path
    return out


def lineage(parent: dict, path: str | Path) -> list[dict]:
    """What a fine-tuned checkpoint records of where it started: the parent's own lineage, then
    the parent (its step, training configuration, validation BLEU, and a trimmed vocabulary)."""
    entry = {"checkpoint": Path(path).name, "step": parent.get("step"),
             "training_config": parent.get("training_config", {}),
             "valid_bleu": parent.get("metrics", {}).get("valid_bleu")}
    if "trimmed_target_vocab" in parent:
        entry["trimmed_target_vocab"] = parent["trimmed_target_vocab"]
    return [*parent.get("lineage", []), entry]


def build_model(ckpt: dict) -> Seq2Seq:
    model = Seq2Seq(ModelConfig.from_dict(ckpt["model_config"]))
    state = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    model.load_state_dict(state)
    model.eval()
    return model


def release(ckpt: dict, half: bool = True) -> dict:
    """The checkpoint without optimizer/resume state, weights optionally in half precision."""
    keep = {k: v for k, v in ckpt.items() if k not in ("optimizer", "scheduler", "rng", "trainer", "format")}
    if half:
        keep["model"] = {k: v.half() if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    return keep


def round_weights_to_half(model: Seq2Seq, min_elements: int) -> Seq2Seq:
    """Weights of at least `min_elements` rounded through fp16 (kept as fp32): the model as a bundle
    that stores those in half precision computes it (export/onnx_export.py, store_half)."""
    import torch

    with torch.no_grad():
        for p in model.parameters():
            if p.numel() >= min_elements:
                p.copy_(p.half().float())
    return model
