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
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        self._identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        known = set(self._identifier.nb_classes)
        self.languages = [code for code in languages if code in known]
        if len(self.languages) > 1:
            self._identifier.set_languages(self.languages)
        self._lock = threading.Lock()  # the identifier keeps per-call buffers

    def rank(self, text: str) -> list[tuple[str, float]]:
        """[(language, probability)], best first; one language served: it, with certainty."""
        if len(self.languages) <= 1:
            return [(code, 1.0) for code in self.languages]
        with self._lock:
            return [(code, float(p)) for code, p in self._identifier.rank(text)]
