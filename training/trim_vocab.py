"""A joint vocabulary's target side trimmed to the pieces the training targets use.

With one SentencePiece vocabulary for both languages, the decoder's output layer scores every
piece of both: the demo's English targets use about half of its 8,000 pieces, and the output
projection, the largest weight a decoder step reads, does twice the work it needs to. This
writes a checkpoint whose target side is its own SentencePiece model holding only the pieces
that the training targets (as the augmentation changes them) use, plus the special, placeholder
and byte pieces, with the target embedding and the output layer cut to those rows.

Unigram models only (the demo's): a unigram segmentation is the best path over the pieces, so
removing pieces that a text's best path does not use leaves that path the best one, and every
training target is split exactly as before. (BPE builds a piece through intermediate merges that
a final segmentation need not show: removing those would change it.) The model is not otherwise
changed; its softmax now runs over fewer pieces, so probabilities are renormalised: greedy
outputs stay nearly all the same, beam scores move a little. A short fine-tune
(`train.init_from`) lets the model adjust to it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from sentencepiece import sentencepiece_model_pb2 as spm_model

from nmt.tokenizer import Tokenizer
from training import checkpoint
from training.augment import AugmentRates, augment, build_lexicon, strip_final_punct, title_case
from training.data import clean, read_corpus

NORMAL = spm_model.ModelProto.SentencePiece.NORMAL
TARGET_ROWS = ("tgt_embed.weight", "generator.weight", "generator.bias")


def target_variants(sources: list[str], targets: list[str], rates: AugmentRates, seed: int,
                    epochs: int) -> list[str]:
    """The targets as training shows them: as written, in every casing, without final marks,
    and `epochs` epochs of the training augmentation (placeholders land on different words)."""
    cased = [f(t) for t in targets for f in (str, str.lower, str.upper, title_case)]
    texts = cased + [strip_final_punct(t) for t in cased]
    lexicon = build_lexicon(sources, targets) if rates.placeholders > 0 or rates.fragments > 0 else {}
    words = build_lexicon(sources, targets, max_share=1.0) if rates.fragments > 0 else {}
    for epoch in range(epochs):
        texts += augment(sources, targets, rates, lexicon, seed, epoch, words)[1]
    return texts


def used_ids(tokenizer: Tokenizer, texts: list[str]) -> list[int]:
    """Ids of the pieces `texts` use, with every piece that is not an ordinary one (specials,
    placeholders, byte fallback), in the vocabulary's order."""
    proto = spm_model.ModelProto.FromString(tokenizer.path.read_bytes())
    if proto.trainer_spec.model_type != spm_model.TrainerSpec.UNIGRAM:
        raise checkpoint.CheckpointError(f"{tokenizer.path.name}: only unigram vocabularies can be "
                                         "trimmed (BPE needs its intermediate merges)")
    used = {i for ids in tokenizer.encode_batch(texts) for i in ids}
    return [i for i, p in enumerate(proto.pieces) if p.type != NORMAL or i in used]


def trimmed_model(model_bytes: bytes, keep: list[int]) -> bytes:
    """The SentencePiece model with only the pieces `keep` (ids), in their order."""
    proto = spm_model.ModelProto.FromString(model_bytes)
    pieces = [proto.pieces[i] for i in keep]
    del proto.pieces[:]
    proto.pieces.extend(pieces)
    proto.trainer_spec.vocab_size = len(pieces)
    return proto.SerializeToString()


def trim(ckpt: dict, keep: list[int], target_name: str, work: Path) -> dict:
    """The checkpoint with its target vocabulary reduced to `keep`; scores on test sets are
    dropped (they belong to the untrimmed model; its validation BLEU is kept as the parent's)."""
    spm_path = checkpoint.write_spm(ckpt, work)["tgt"]
    new_spm = work / target_name
    new_spm.write_bytes(trimmed_model(spm_path.read_bytes(), keep))
    Tokenizer(new_spm)  # checks the special ids kept their places
    rows = torch.tensor(keep)
    model = {k: (v.index_select(0, rows) if k in TARGET_ROWS else v) for k, v in ckpt["model"].items()}
    out = {k: v for k, v in ckpt.items() if k not in ("metrics", "format")}
    out["metrics"] = {k: v for k, v in ckpt.get("metrics", {}).items() if k != "test"}
    out["model"] = model
    out["model_config"] = {**ckpt["model_config"], "tgt_vocab_size": len(keep)}
    out["spm"] = {"src": ckpt["spm"]["src"], "tgt": checkpoint.spm_entry(new_spm)}
    out["trimmed_target_vocab"] = {"from": int(ckpt["model_config"]["tgt_vocab_size"]), "to": len(keep)}
    return out


def trim_checkpoint(path: str, out: str, train_src: str, train_tgt: str, epochs: int = 10) -> dict:
    ckpt = checkpoint.load(path)
    if ckpt["spm"]["src"]["sha256"] != ckpt["spm"]["tgt"]["sha256"]:
        raise checkpoint.CheckpointError(f"{path}: its vocabularies are already separate")
    config = ckpt.get("training_config", {})
    rates = AugmentRates(**{k: v for k, v in config.get("augment", {}).items()
                            if k in AugmentRates.__dataclass_fields__})
    corpus = clean(read_corpus(train_src, train_tgt))
    with tempfile.TemporaryDirectory(prefix="trim-") as tmp:
        work = Path(tmp)
        tokenizer = Tokenizer(checkpoint.write_spm(ckpt, work)["tgt"])
        texts = target_variants(corpus.sources, corpus.targets, rates,
                                int(config.get("train", {}).get("seed", 1)), epochs)
        keep = used_ids(tokenizer, texts)
        language = ckpt.get("languages", {}).get("target", "tgt")
        trimmed = trim(ckpt, keep, f"spm.{language}.model", work)
    checkpoint.save(Path(out), trimmed)
    return trimmed["trimmed_target_vocab"]
