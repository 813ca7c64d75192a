"""Compare sentence segmenters on German and English text of the kind people paste: accuracy on
hand-labelled cases (abbreviations, ordinals, dates, URLs, e-mails, quotes, ellipses, missing
spaces, lower-case starts, line breaks) and speed. Prints a table; writes bench/results/segmenters.json.

    python bench/segmenters.py
"""

from __future__ import annotations

import time

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.provenance import write_result  # noqa: E402

# Each case: the sentences a reader sees; the text is their concatenation with the separator.
CASES = {
    "de": [
        (["Ein Mann fährt Fahrrad.", "Eine Frau liest."], " "),
        (["Dr. Müller kommt um 10 Uhr.", "Er bringt z. B. Kuchen mit."], " "),
        (["Am 3. Mai spielt der 1. FC Köln.", "Das Stadion ist voll."], " "),
        (["Besuchen Sie www.example.de/info.html für mehr.", "Danke!"], " "),
        (["Schreib an info.104@mail.de bitte.", "Wir antworten bald."], " "),
        (["Er sagte: \"Komm her!\"", "Sie kam."], " "),
        (["Warte mal...", "Was war das?"], " "),
        (["Ein Hund rennt", "ein Kind lacht."], "\n"),
        (["Der Preis beträgt ca. 3,50 Euro.", "Das ist günstig."], " "),
        (["Zwei Hunde spielen im Schnee.", "Ein Mann schläft auf einer Bank."], "\n\n"),
        (["Die Firma Meier & Co. KG hat u. a. Autos.", "Sie verkauft sie."], " "),
        (["ein hund rennt über die wiese.", "ein kind spielt."], " "),
        (["EIN MANN FÄHRT FAHRRAD.", "EINE FRAU LIEST."], " "),
        (["Es ist 14.30 Uhr.", "Wir gehen."], " "),
        (["Toll!!!", "Ein Hund bellt."], " "),
        (["Ein Hund bellt…", "Eine Katze schläft."], " "),
        (["Ein Hund rennt über die Wiese...", "3 Katzen schlafen."], " "),
        (["Er zählt bis drei... und springt.", "Alle lachen."], " "),
        (["Ein Hund bellt.", "Die Katze schläft."], ""),
        (["\"Ein Hund.\"", "\"Eine Katze.\""], " "),
        (["Siehe https://example.com/x?y=1 für mehr Fotos.", "Danke."], " "),
    ],
    "en": [
        (["A man rides a bike.", "A woman reads."], " "),
        (["Dr. Smith arrives at 10 a.m. on Monday.", "He brings cake."], " "),
        (["Visit www.example.com/info.html for more.", "Thanks!"], " "),
        (["Write to info.104@mail.com please.", "We answer soon."], " "),
        (["He said: \"Come here!\"", "She came."], " "),
        (["Wait...", "What was that?"], " "),
        (["A dog runs", "a child laughs."], "\n"),
        (["It costs approx. $3.50 in the U.S. today.", "That is cheap."], " "),
        (["Mr. and Mrs. Jones live on St. James St. in London.", "They are happy."], " "),
        (["a dog runs across the field.", "a child plays."], " "),
        (["A MAN RIDES A BIKE.", "A WOMAN READS."], " "),
        (["The version is 2.5.1 now.", "Update it."], " "),
    ],
}


def _pysbd(lang):
    import pysbd
    seg = pysbd.Segmenter(language=lang, clean=False)
    return lambda text: [s.strip() for s in seg.segment(text) if s.strip()]


def _sentencex(lang):
    import sentencex
    return lambda text: [s.strip() for s in sentencex.segment(lang, text) if s.strip()]


def _syntok(lang):
    from syntok import segmenter

    def split(text):
        out = []
        for paragraph in segmenter.analyze(text):
            for sentence in paragraph:
                out.append("".join(t.spacing + t.value for t in sentence).strip())
        return out
    return split


def _ours(lang):
    from nmt.segment import sentence_spans
    return lambda text: [text[a:b] for a, b in sentence_spans(text, lang)]


SEGMENTERS = {"pysbd": _pysbd, "sentencex": _sentencex, "syntok": _syntok,
              "nmt/segment.py (pysbd and the rules around it)": _ours}


def main() -> None:
    rows = []
    for name, make in SEGMENTERS.items():
        for lang, cases in CASES.items():
            split = make(lang)
            correct = sum(split(sep.join(sents)) == sents for sents, sep in cases)
            text = " ".join(" ".join(s) for s, _ in cases) * 20
            started = time.perf_counter()
            for _ in range(5):
                split(text)
            per_kb = (time.perf_counter() - started) / 5 / (len(text) / 1000)
            misses = [sep.join(s) for s, sep in cases if split(sep.join(s)) != s]
            rows.append({"segmenter": name, "lang": lang, "correct": correct, "cases": len(cases),
                         "ms_per_kb": round(per_kb * 1000, 3), "misses": misses})
    print("| segmenter | language | cases right | ms per kB |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['segmenter']} | {r['lang']} | {r['correct']}/{r['cases']} | {r['ms_per_kb']} |")
    for r in rows:
        for m in r["misses"]:
            print(f"  {r['segmenter']}/{r['lang']} missed: {m!r}")
    write_result("segmenters", {"rows": rows})


if __name__ == "__main__":
    main()
