"""SentencePiece tokenization. The `.model` file is the only source of token ids."""

from __future__ import annotations

import hashlib
import unicodedata
from pathlib import Path

import sentencepiece as spm

# Fixed special ids, set when the SentencePiece model is trained (training/vocab.py).
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3


# invisible characters that text copied from web pages carries inside words: soft hyphens,
# zero-width spaces, word joiners, byte order marks ("Fahr\u00adrad" was copied, not translated)
_INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u200b\u2060\ufeff"))


def normalize(text: str) -> str:
    """Unicode NFC, invisible characters removed, whitespace collapsed: what training saw, serving
    must see too."""
    return " ".join(unicodedata.normalize("NFC", text).translate(_INVISIBLE).split())


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class Tokenizer:
    def __init__(self, model_path: str | Path) -> None:
        self.path = Path(model_path)
        self.sp = spm.SentencePieceProcessor(model_file=str(self.path))
        for name, expected in (("pad", PAD_ID), ("unk", UNK_ID), ("bos", BOS_ID), ("eos", EOS_ID)):
            actual = getattr(self.sp, f"{name}_id")()
            if actual != expected:
                raise ValueError(f"{self.path}: {name} id is {actual}, expected {expected}")

    def __len__(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        return self.sp.encode(normalize(text))

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return self.sp.encode([normalize(t) for t in texts])

    def pieces(self, ids: list[int]) -> list[str]:
        return [self.sp.id_to_piece(i) for i in ids]

    def decode(self, ids: list[int]) -> str:
        return self.sp.decode(ids)

    def decode_batch(self, batch: list[list[int]]) -> list[str]:
        return self.sp.decode(batch)
