"""Training-time noise that teaches the model the input people actually type.

Each epoch, a share of the training pairs is changed on both sides consistently (the same
change to source and target, so the model learns to carry it over):
- casing: lower-cased, UPPER-CASED or Title Cased;
- final punctuation stripped;
- fragments: the pair replaced by a short phrase of it (one to three words on each side that
  translate each other word by word, e.g. "Ein Hund" / "A dog", "Großer Hund" / "Large dog"),
  so that the model knows when to stop on the two-word input people type into a search box;
- placeholders: word pairs that translate each other (mutual best Dice association over the
  corpus, Och & Ney style, no external aligner) or identical items such as numbers are replaced
  by the same placeholder token `⦅k⦆` on both sides. Serving replaces numbers, URLs, e-mail
  addresses, emoji and unknown names by placeholders (nmt/protect.py) and puts them back, so
  the model only has to learn to copy `⦅k⦆` to the right place.

Everything follows from (seed, epoch): resumption and DDP ranks see the same pairs.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np

from nmt.protect import PLACEHOLDERS, word_key

_FINAL_PUNCT = re.compile(r"[\s.!?。…]+$")


@dataclass
class AugmentRates:
    lower: float = 0.0
    upper: float = 0.0
    title: float = 0.0
    strip_punct: float = 0.0
    placeholders: float = 0.0
    max_placeholders: int = 2
    fragments: float = 0.0


def title_case(text: str) -> str:
    """Every word capitalised, the rest of the word kept (str.title breaks "man's" and "iPhone")."""
    return " ".join(w[:1].upper() + w[1:] for w in text.split(" "))


def strip_final_punct(text: str) -> str:
    stripped = _FINAL_PUNCT.sub("", text)
    return stripped or text


def build_lexicon(sources: list[str], targets: list[str], min_count: int = 3,
                  min_dice: float = 0.3, max_share: float = 0.01) -> dict[str, str]:
    """source word -> target word, for mutually best Dice-associated word pairs (keys lower-cased).
    Function words (in more than `max_share` of the sentences) are left out: placeholders stand
    for content words, names and numbers."""
    src_count, tgt_count, pair_count = Counter(), Counter(), Counter()
    for s, t in zip(sources, targets):
        sw = {word_key(w) for w in s.split()} - {""}
        tw = {word_key(w) for w in t.split()} - {""}
        src_count.update(sw)
        tgt_count.update(tw)
        pair_count.update((a, b) for a in sw for b in tw)
    best_src: dict[str, tuple[float, str]] = {}
    best_tgt: dict[str, tuple[float, str]] = {}
    frequent = max_share * len(sources)
    for (a, b), c in pair_count.items():
        if c < min_count or src_count[a] > frequent or tgt_count[b] > frequent:
            continue
        dice = 2 * c / (src_count[a] + tgt_count[b])
        if dice > best_src.get(a, (0.0, ""))[0]:
            best_src[a] = (dice, b)
        if dice > best_tgt.get(b, (0.0, ""))[0]:
            best_tgt[b] = (dice, a)
    return {a: b for a, (dice, b) in best_src.items()
            if dice >= min_dice and best_tgt.get(b, (0, ""))[1] == a}


def _bare(word: str) -> str:
    """A word without the punctuation around it: "(Hund)," -> "Hund"."""
    return re.sub(r"^\W+|\W+$", "", word)


def truecase_table(sentences: list[str]) -> list[str]:
    """Each word's most frequent form where its casing tells something (not sentence-initial; a word
    seen only sentence-initially keeps that form): "Hund", "ein", "Mann"."""
    counts: dict[str, Counter] = {}
    initial: dict[str, Counter] = {}
    for sentence in sentences:
        for i, word in enumerate(sentence.split()):
            core = _bare(word)
            if not core:
                continue
            (initial if i == 0 else counts).setdefault(core.lower(), Counter())[core] += 1
    forms = {k: c.most_common(1)[0][0] for k, c in initial.items()}
    forms.update({k: c.most_common(1)[0][0] for k, c in counts.items()})
    return sorted(forms.values())


def copied_words(sources: list[str], targets: list[str], max_count: int = 5) -> list[str]:
    """Words with a capital letter that the training sources have at most `max_count` times, each
    time with the same word in the target: names, places, brands ("Peter", "Berlin", "iPhone").
    Seen that rarely, the model did not learn to copy them and translates them as something else
    ("Peter" -> "nurse"); serving protects them as it protects unknown names. Rare German nouns,
    capitalised too, are translated in their targets and stay out."""
    seen: Counter = Counter()
    copied: Counter = Counter()
    for src, tgt in zip(sources, targets):
        in_target = {_bare(w) for w in tgt.split()}
        for word in src.split():
            core = _bare(word)
            if core and any(ch.isupper() for ch in core):
                seen[core] += 1
                copied[core] += core in in_target
    return sorted(w for w, n in seen.items() if n <= max_count and copied[w] == n)


def fragment(src: str, tgt: str, lexicon: dict[str, str], content: dict[str, str] | set,
             rng: np.random.Generator) -> tuple[str, str] | None:
    """A phrase of 1-3 source words and the target words that translate them one by one, in order
    and adjacent on both sides, with at least one content word; capitalised like a fragment typed
    on its own."""
    sw, tw = src.split(), tgt.split()
    tkeys = [word_key(w) for w in tw]
    spans = []
    for i in range(len(sw)):
        j = tkeys.index(lexicon[word_key(sw[i])]) if lexicon.get(word_key(sw[i])) in tkeys else -1
        if j < 0:
            continue
        n = 1
        while (n < 3 and i + n < len(sw) and j + n < len(tw)
               and lexicon.get(word_key(sw[i + n])) == tkeys[j + n]):
            n += 1
        for m in range(1, n + 1):
            if any(word_key(w) in content for w in sw[i:i + m]):
                spans.append((i, j, m))
    if not spans:
        return None
    weight = np.array([m for _, _, m in spans], float)  # phrases rather than single words
    i, j, m = spans[int(rng.choice(len(spans), p=weight / weight.sum()))]
    clean = lambda words: [_bare(w) for w in words]  # noqa: E731
    a, b = " ".join(clean(sw[i:i + m])), " ".join(clean(tw[j:j + m]))
    if not a or not b:
        return None
    return a[:1].upper() + a[1:], b[:1].upper() + b[1:]


def _placeholder_pairs(src_words: list[str], tgt_words: list[str], lexicon: dict[str, str]):
    """(source index, target index) of words that can share a placeholder: each occurs once."""
    src_keys = [word_key(w) for w in src_words]
    tgt_keys = [word_key(w) for w in tgt_words]
    src_once = {k for k, n in Counter(src_keys).items() if n == 1 and k}
    tgt_pos = {k: i for i, k in enumerate(tgt_keys) if tgt_keys.count(k) == 1 and k}
    pairs = []
    for i, k in enumerate(src_keys):
        if k not in src_once:
            continue
        j = tgt_pos.get(k) if any(ch.isdigit() for ch in k) else tgt_pos.get(lexicon.get(k, ""))
        if j is not None:
            pairs.append((i, j))
    return pairs


def _replace_word(word: str, placeholder: str) -> str:
    """Keep punctuation glued to the word ("Fahrrad." -> "⦅1⦆.")."""
    m = re.match(r"^(\W*)(.*?)(\W*)$", word)
    return m.group(1) + placeholder + m.group(3) if m else placeholder


def add_placeholders(src: str, tgt: str, lexicon: dict[str, str], rng: np.random.Generator,
                     max_count: int) -> tuple[str, str]:
    sw, tw = src.split(" "), tgt.split(" ")
    pairs = _placeholder_pairs(sw, tw, lexicon)
    if not pairs:
        return src, tgt
    count = int(rng.integers(1, max_count + 1))
    chosen = rng.choice(len(pairs), size=min(count, len(pairs)), replace=False)
    names = rng.choice(len(PLACEHOLDERS), size=len(chosen), replace=False)
    for pick, name in zip(chosen, names):
        i, j = pairs[pick]
        sw[i] = _replace_word(sw[i], PLACEHOLDERS[name])
        tw[j] = _replace_word(tw[j], PLACEHOLDERS[name])
    return " ".join(sw), " ".join(tw)


def augment(sources: list[str], targets: list[str], rates: AugmentRates, lexicon: dict[str, str],
            seed: int, epoch: int, word_lexicon: dict[str, str] | None = None) -> tuple[list[str], list[str]]:
    """The corpus of one epoch: the same number of pairs, a share of them changed."""
    rng = np.random.default_rng([seed, epoch, 7])
    out_src, out_tgt = [], []
    case_roll = rng.random(len(sources))
    punct_roll = rng.random(len(sources))
    ph_roll = rng.random(len(sources))
    frag_roll = rng.random(len(sources))
    lower_to = rates.lower
    upper_to = lower_to + rates.upper
    title_to = upper_to + rates.title
    for i, (s, t) in enumerate(zip(sources, targets)):
        if frag_roll[i] < rates.fragments and word_lexicon:
            s, t = fragment(s, t, word_lexicon, lexicon, rng) or (s, t)
        elif ph_roll[i] < rates.placeholders:
            s, t = add_placeholders(s, t, lexicon, rng, rates.max_placeholders)
        if punct_roll[i] < rates.strip_punct:
            s, t = strip_final_punct(s), strip_final_punct(t)
        r = case_roll[i]
        if r < lower_to:
            s, t = s.lower(), t.lower()
        elif r < upper_to:
            s, t = s.upper(), t.upper()
        elif r < title_to:
            s, t = title_case(s), title_case(t)
        out_src.append(s)
        out_tgt.append(t)
    return out_src, out_tgt
