"""manifest.json and MODEL_CARD.md of a bundle."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import onnx

from nmt.bundle import FORMAT_VERSION, MANIFEST
from nmt.tokenizer import file_sha256

DTYPES = {onnx.TensorProto.INT64: "int64", onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.BOOL: "bool"}


def _signature(path: Path) -> dict:
    graph = onnx.load(str(path), load_external_data=False).graph
    io = lambda values: [{"name": v.name, "dtype": DTYPES[v.type.tensor_type.elem_type]} for v in values]  # noqa: E731
    return {"file": path.name, "inputs": io(graph.input), "outputs": io(graph.output)}


def write(directory: Path, name: str, ckpt: dict, model, quantization: str, storage: str, opset: int,
          shortlist: dict | None = None) -> dict:
    from training.onnx_names import decoder_state_names

    files = sorted(p.name for p in directory.iterdir() if p.name != MANIFEST)
    metrics = ckpt.get("metrics", {})
    manifest = {
        "format_version": FORMAT_VERSION,
        "name": name,
        "source_language": ckpt["languages"]["source"],
        "target_language": ckpt["languages"]["target"],
        "architecture": ckpt["model_config"],
        "parameters": sum(p.numel() for p in model.parameters()),
        "special_ids": ckpt["special_ids"],
        "tokenizers": {"source": ckpt["spm"]["src"]["name"], "target": ckpt["spm"]["tgt"]["name"]},
        "decoder_state": decoder_state_names(ckpt["model_config"]),
        "known_words": "source_words.txt" if (directory / "source_words.txt").exists() else None,
        "copied_words": "copied_words.txt" if (directory / "copied_words.txt").exists() else None,
        "onnx_opset": opset,
        "graphs": {"encoder": _signature(directory / "encoder.onnx"),
                   "decoder": _signature(directory / "decoder.onnx")},
        "quantization": quantization,
        "weights_storage": storage,
        "shortlist": shortlist,  # nmt/shortlist.py; used by requests that ask (use_shortlist)
        "training": {"step": ckpt.get("step"), "data": ckpt.get("data", {}),
                     "config": ckpt.get("training_config", {}), "lineage": ckpt.get("lineage", []),
                     "trimmed_target_vocab": ckpt.get("trimmed_target_vocab")},
        "scores": metrics.get("test", {}),
        "valid_bleu": metrics.get("valid_bleu"),
        "exported_with": {"onnx": onnx.__version__, "python": platform.python_version()},
        "files": {f: file_sha256(directory / f) for f in files},
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def add_verification(directory: Path, report: dict, scores: dict | None = None) -> None:
    """Record the export-time checks (and, for quantized bundles, their own scores), then write the
    model card and hash it too."""
    path = directory / MANIFEST
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["verification"] = report
    if scores is not None:
        manifest["scores"] = scores
    card = directory / "MODEL_CARD.md"
    card.write_text(model_card(manifest), encoding="utf-8")
    manifest["files"]["MODEL_CARD.md"] = file_sha256(card)
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def model_card(m: dict) -> str:
    arch, data, cfg = m["architecture"], m["training"]["data"], m["training"].get("config", {})
    scores = m.get("scores") or {}
    rows = "\n".join(
        f"| {key} | {s['bleu']} | {s['chrf']} | `{s['bleu_signature']}` |" for key, s in sorted(scores.items())
    ) or "| (not evaluated) | | | |"
    v = m.get("verification", {})
    par, inv = v.get("parity_greedy", {}), v.get("batch_invariance", {})
    data_cfg = cfg.get("data", {})
    quantize = "" if m["quantization"] == "none" else f" --quantize {m['quantization']}"
    return f"""# Model card: {m['name']}

**What it is.** A {m['source_language']}→{m['target_language']} translator: the encoder-decoder with
attention of Bahdanau et al. (2015) and Luong et al. (2015). Bidirectional {arch['rnn_type'].upper()}
encoder ({arch['encoder_layers']} layer(s), {arch['encoder_hidden']} per direction), {arch['attention']}
attention, {arch['rnn_type'].upper()} decoder of {arch['decoder_hidden']} with input feeding,
{_vocabulary(arch, _trim(m['training']))}; {m['parameters']:,} parameters. Exported to ONNX
(opset {m['onnx_opset']}), weights stored as {m['weights_storage']}, computed in fp32,
quantization: {m['quantization']}.

**Data.** {data.get('license') or 'see the training configuration'}.
Trained on {data.get('train_pairs', '?')} sentence pairs ({data_cfg.get('train_src', '')},
{data_cfg.get('train_tgt', '')}); checkpoint chosen by validation BLEU
({data_cfg.get('valid_src', '')}).{_fine_tuned(m['training'].get('lineage', []))} Multi30k's text is provided for **non-commercial research and
educational purposes** only, and so is this model.

**Scores** (sacreBLEU on the test set, cased, 13a tokenisation):

| decoding | BLEU | chrF | signature |
|---|---|---|---|
{rows}

**Export checks.** On {v.get('verification_set', '?')}: ONNX Runtime and PyTorch greedy outputs identical
for {par.get('identical', 0):.2%} of {par.get('sentences', 0)} sentences (largest log-prob
difference {par.get('max_log_prob_diff', 0):.1e}); outputs identical alone and inside a batch of
{inv.get('batch', '?')} for {inv.get('identical', 0):.2%} of {inv.get('sentences', 0)} sentences.

**How to reproduce.**

```
{_reproduce(cfg, _trim(m['training']))}
python -m export --checkpoint models/checkpoints/demo-de-en.pt --out models/{m['name']}{quantize}
```

**Known limits.** Image-caption domain (Flickr30K descriptions): short, literal, present-tense
sentences about people, animals and scenes. Expect poor output on other domains and on long
sentences. The serving pipeline splits texts into sentences, truecases all-caps, all-lower and
Title Case input, completes a missing final full stop, and copies numbers, URLs, e-mail addresses,
emoji and unknown names through placeholders; words it has never seen that are not names are still
translated piece by piece, often badly.
"""


def _trim(training: dict) -> dict | None:
    """How the target vocabulary was trimmed: in this checkpoint, or in the one it was fine-tuned from."""
    trims = [e["trimmed_target_vocab"] for e in training.get("lineage", []) if "trimmed_target_vocab" in e]
    return training.get("trimmed_target_vocab") or (trims[-1] if trims else None)


def _vocabulary(arch: dict, trim: dict | None) -> str:
    src, tgt = arch["src_vocab_size"], arch["tgt_vocab_size"]
    if src == tgt:
        return f"SentencePiece vocabulary of {tgt}"
    how = f" (the joint vocabulary's target side, trimmed from {trim['from']})" if trim else ""
    return f"SentencePiece vocabularies of {src} source and {tgt} target pieces{how}"


def _fine_tuned(lineage: list[dict]) -> str:
    if not lineage:
        return ""
    parent = lineage[-1]
    steps = parent.get("training_config", {}).get("train", {})
    return (f" Fine-tuned from {parent['checkpoint']} (step {parent.get('step')} of a run of at most "
            f"{steps.get('max_steps', '?')} steps at learning rate {steps.get('lr', '?')}"
            f"{', target vocabulary trimmed' if 'trimmed_target_vocab' in parent else ''}).")


def _reproduce(cfg: dict, trim: dict | None) -> str:
    """The training commands: the run from the configuration, the vocabulary trim, and the
    fine-tuning run with the settings it used."""
    train_cmd = "python -m training train --config configs/multi30k_de_en.toml"
    lines, best = [train_cmd], "runs/multi30k_de_en/best.pt"
    train = cfg.get("train", {})
    if trim:
        lines.append(f"python -m training trim-vocab --checkpoint {best} --out runs/trimmed.pt "
                     "--train-src ../shared/data/multi30k/train.de.gz --train-tgt ../shared/data/multi30k/train.en.gz")
        best = "runs/trimmed.pt"
    if train.get("init_from"):
        flags = " ".join(f"--set train.{k}={train[k]}" for k in ("lr", "min_lr", "max_steps", "valid_every", "patience"))
        lines.append(f"{train_cmd} --set train.init_from={best} --set train.out_dir=runs/fine_tuned {flags}")
        best = "runs/fine_tuned/best.pt"
    return "\n".join(lines) + (f"\npython -m training evaluate --checkpoint {best} --src ../shared/data/multi30k/"
                               "test_2016_flickr.de.gz --ref ../shared/data/multi30k/test_2016_flickr.en.gz --beam 5 --record")
