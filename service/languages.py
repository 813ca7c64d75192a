"""Language names and language identification for the HTTP API (LibreTranslate's /languages,
/detect and `source: auto`). Identification: py3langid (langid.py's model, numpy only), restricted
to the languages the served models read."""

from __future__ import annotations

import threading

NAMES = {
    "ar": "Arabic", "cs": "Czech", "da": "Danish", "de": "German", "el": "Greek", "en": "English",
    "es": "Spanish", "fi": "Finnish", "fr": "French", "hu": "Hungarian", "it": "Italian",
    "ja": "Japanese", "ko": "Korean", "nl": "Dutch", "pl": "Polish", "pt": "Portuguese",
    "ro": "Romanian", "ru": "Russian", "sv": "Swedish", "tr": "Turkish", "uk": "Ukrainian",
    "zh": "Chinese",
}


def name(code: str) -> str:
    return NAMES.get(code, code)


class Detector:
    """Ranks the given languages for a text; probabilities normalised over those languages."""

    def __init__(self, languages: list[str]) -> None:
        import numpy as np
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        full = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        self.languages = [code for code in languages if code in full.nb_classes]
        # An identifier of only these languages: `set_languages` would keep the whole model too
        # (28 MB of the server's memory for 142 languages it never ranks).
        keep = [full.nb_classes.index(code) for code in self.languages]
        self._identifier = LanguageIdentifier(
            np.ascontiguousarray(full.nb_ptc[:, keep]), full.nb_pc[keep], self.languages,
            full.tk_nextmove, full.tk_output, norm_probs=True, tk_row=full.tk_row)
        self._lock = threading.Lock()  # the identifier keeps per-call buffers

    def rank(self, text: str) -> list[tuple[str, float]]:
        """[(language, probability)], best first; one language served: it, with certainty."""
        if len(self.languages) <= 1:
            return [(code, 1.0) for code in self.languages]
        with self._lock:
            return [(code, float(p)) for code, p in self._identifier.rank(text)]
