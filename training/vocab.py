"""SentencePiece vocabularies trained on the training data (joint or separate)."""

from __future__ import annotations

import io
from pathlib import Path

import sentencepiece as spm

from nmt.protect import PLACEHOLDERS
from nmt.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from training.data import DataError


def train_sentencepiece(texts: list[str], path: Path, vocab_size: int, model_type: str,
                        seed_sentences: int = 1_000_000) -> Path:
    """Train a SentencePiece model on `texts` and write it to `path` (a `.model` file).

    Byte fallback: a character outside the vocabulary becomes its UTF-8 bytes, never `⁇`.
    The placeholders of nmt/protect.py are user-defined symbols: always one token each."""
    if model_type not in ("unigram", "bpe"):
        raise ValueError(f"vocab type must be unigram or bpe, got {model_type!r}")
    smallest = 4 + len(PLACEHOLDERS) + 256 + 1
    if vocab_size < smallest:
        raise DataError(f"vocab.size must be at least {smallest} (special tokens, placeholders and "
                        f"the 256 byte-fallback pieces), got {vocab_size}")
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts), model_writer=model, vocab_size=vocab_size,
            model_type=model_type, character_coverage=1.0, input_sentence_size=seed_sentences,
            shuffle_input_sentence=True, pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID,
            hard_vocab_limit=False, minloglevel=2, num_threads=2,
            byte_fallback=True, user_defined_symbols=list(PLACEHOLDERS))
    except RuntimeError as e:  # e.g. a vocabulary larger than the corpus allows
        raise DataError(f"SentencePiece training failed for {path.name}: {e}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.getvalue())
    return path
