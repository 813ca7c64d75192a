"""What people actually type: several sentences and paragraphs, any casing, no final full stop,
numbers, URLs, e-mail addresses, names and emoji. Unit tests of the text pipeline, then the same
through a real server with the committed demo bundle."""

import re

import numpy as np
import pytest

from nmt.brackets import Bracket, put_back, take_out
from nmt.protect import PLACEHOLDERS, protect, repair, restore
from nmt.segment import sentence_spans
from nmt.text import casing_style, compound_head, join, truecase

GERMAN = ("Ein kleines Mädchen klettert in ein Spielhaus aus Holz. Ein Mann schläft auf einer Bank.  "
          "Zwei Hunde rennen über eine Wiese!\n\nAm 3. Mai spielt der 1. FC Köln. Dr. Müller kommt z. B. "
          "um 10 Uhr\nein hund rennt")


def test_segmentation_finds_sentences_and_keeps_the_whitespace_between_them():
    spans = sentence_spans(GERMAN, "de")
    sentences = [GERMAN[a:b] for a, b in spans]
    assert sentences == ["Ein kleines Mädchen klettert in ein Spielhaus aus Holz.",
                         "Ein Mann schläft auf einer Bank.", "Zwei Hunde rennen über eine Wiese!",
                         "Am 3. Mai spielt der 1. FC Köln.", "Dr. Müller kommt z. B. um 10 Uhr",
                         "ein hund rennt"]

    class S:  # what join needs of a sentence: its span
        def __init__(self, span):
            self.start, self.end = span
    # translating every sentence as itself gives the text back, byte for byte
    assert join(GERMAN, [S(s) for s in spans], sentences) == GERMAN
    assert join("  a.  ", [S((2, 4))], ["X"]) == "  X  "
    assert sentence_spans("   \n ", "de") == [] and sentence_spans("", "de") == []
    assert [x for x in sentence_spans("Un chat. Deux chiens.", "xx")]  # no pysbd language: sentencex
    # a line whose only marks end it is one sentence (pysbd cut "Sand.." into "Sand." and ".")
    for line in ("Ein Hund rennt über den Sand..", "ein hund rennt", "Ein Hund (braun) rennt!?", "一只狗在跑。"):
        assert sentence_spans(line, "de") == [(0, len(line))]
    assert len(sentence_spans("一只狗在跑。一只猫在睡。", "zh")) == 2  # other scripts' marks count too
    dated = "Am 1. Jan. 2020 schneit es. Kinder spielen."  # pysbd ended one after "Jan."
    assert [dated[a:b] for a, b in sentence_spans(dated, "de")] == ["Am 1. Jan. 2020 schneit es.", "Kinder spielen."]
    text = 'Ein Hund bellt.Die Katze schläft. "Ein Hund." "Eine Katze." z.B. in St.Pauli'
    assert [text[a:b] for a, b in sentence_spans(text, "de")] == [  # no space after the mark; quotes
        "Ein Hund bellt.", "Die Katze schläft.", '"Ein Hund."', '"Eine Katze."', "z.B. in St.Pauli"]


def test_no_sentence_ends_inside_a_url_or_an_address():
    text = "Siehe https://example.com/x?y=1&z=2 für mehr. Ein Hund bellt? Schreib an a.b@c.de! Gut."
    assert [text[a:b] for a, b in sentence_spans(text, "de")] == [
        "Siehe https://example.com/x?y=1&z=2 für mehr.", "Ein Hund bellt?", "Schreib an a.b@c.de!", "Gut."]
    tail = "zwei kinder spielen im park, siehe www.park.de/plan?tag=3"
    assert [tail[a:b] for a, b in sentence_spans(tail, "de")] == [tail]


def test_list_markers_stay_outside_the_sentences():
    text = "• Ein Hund\n- Eine Katze schläft.\n1. Zwei Vögel\n2) Drei Fische\na) Vier Pferde\nAm 3. Mai regnet es."
    assert [text[a:b] for a, b in sentence_spans(text, "de")] == [
        "Ein Hund", "Eine Katze schläft.", "Zwei Vögel", "Drei Fische", "Vier Pferde", "Am 3. Mai regnet es."]
    assert [("- ")[a:b] for a, b in sentence_spans("- ", "de")] == ["-"]  # nothing after it: kept as typed


def test_runs_of_exclamation_and_question_marks_and_ellipses_end_sentences():
    text = "Toll!!! Ein Hund bellt. Was??? Eine Katze?!? Ja!!"
    assert [text[a:b] for a, b in sentence_spans(text, "de")] == [
        "Toll!!!", "Ein Hund bellt.", "Was???", "Eine Katze?!?", "Ja!!"]
    text = "Ein Hund bellt… Eine Katze wartet… und wartet."
    assert [text[a:b] for a, b in sentence_spans(text, "de")] == [
        "Ein Hund bellt…", "Eine Katze wartet… und wartet."]  # before a capital or a digit only
    # pysbd kept "... 3 Katzen" in the sentence before (the model then dropped it) and cut
    # "1..." into "1.." and a sentence "."
    text = "Ein Hund rennt über die Wiese... 3 Katzen schlafen. Er zählt 1... 2... 3 und springt... und lacht."
    assert [text[a:b] for a, b in sentence_spans(text, "de")] == [
        "Ein Hund rennt über die Wiese...", "3 Katzen schlafen.", "Er zählt 1...", "2...",
        "3 und springt... und lacht."]


def test_protected_items_become_placeholders_and_come_back():
    text = "Schreib an info.104@mail.de oder https://zoo-leipzig.de/tickets, Linie 99 um 14:30 😀 Grzegorz!"
    p = protect(text, is_name=lambda w: w == "Grzegorz")
    assert p.items == {"⦅1⦆": "info.104@mail.de", "⦅2⦆": "https://zoo-leipzig.de/tickets", "⦅3⦆": "99",
                       "⦅4⦆": "14:30", "⦅5⦆": "😀", "⦅6⦆": "Grzegorz"}
    assert "⦅1⦆" in p.text and "@" not in p.text and "Schreib" in p.text
    assert restore(p.text, p.items) == text
    money = protect("Ein Eis kostet 2,50 € oder $3, bei 50 % Rabatt #sommer @eisdiele")
    assert list(money.items.values()) == ["2,50 €", "$3", "50 %", "#sommer", "@eisdiele"]
    units = protect("In 5 km fährt er 50 km/h, 3 m hoch, bei 20 °C; 5 Hunde :) <3")
    assert list(units.items.values()) == ["5 km", "50 km/h", "3 m", "20 °C", "5", ":)", "<3"]
    phones = protect("Ruf +49 30 1234567 an oder 030 123 4567, nicht 10 20 30")
    assert list(phones.items.values()) == ["+49 30 1234567", "030 123 4567", "10", "20", "30"]
    many = protect(" ".join(str(n) for n in range(20)))
    assert len(many.items) == len(PLACEHOLDERS) and "19" in many.text  # the rest left as typed


def test_short_quotations_are_one_item_each_in_english_quotes():
    p = protect('Ein Boot namens "El Corazon" und ein Schild mit „Stop 93“ und »Bäckerei«.')
    assert list(p.items.values()) == ['"El Corazon"', '"Stop 93"', '"Bäckerei"']  # the number inside too
    for left in ('Er sagt: „Ein Hund bellt.“', 'Ein Schild: "eins zwei drei vier fünf sechs sieben"',
                 'Ein „kleiner“ Hund', 'Ein Hund"s Napf', '""'):
        assert protect(left).items == {}, left  # a sentence, a long quotation, emphasis, no pair, empty


def test_repair_puts_a_dropped_placeholder_after_its_neighbours_translation():
    # source: "schreibt ⦅1⦆ an" ; output "writes on" lost the placeholder (target id 50)
    source_words = [True, False, True]
    attention = np.array([[0.9, 0.05, 0.05], [0.1, 0.1, 0.8]], np.float32)
    ids, att = repair([10, 11], attention, {50: 1}, {50, 51}, source_words, [True, True], space_id=4)
    assert ids == [10, 4, 50, 11]
    assert att.shape == (4, 3) and att[2, 1] == 1.0 and np.allclose(att[0], attention[0])
    # an invented placeholder and a duplicate are dropped
    ids, _ = repair([50, 10, 50, 51], None, {50: 1}, {50, 51}, source_words, [True] * 4)
    assert ids == [50, 10]


def test_bracket_pairs_and_emphasis_are_taken_out_and_others_left_in_the_text():
    assert take_out("Ein Kind spielt (im Garten).") == ("Ein Kind spielt im Garten.", [Bracket("(", ")", 16, 25)])
    text, [outer, inner] = take_out("Ein Hund ( der [sehr] große ) bellt")
    assert text == "Ein Hund der sehr große bellt"  # the spaces just inside go with the bracket
    assert text[outer.start:outer.end] == "der sehr große" and (inner.open, text[inner.start:inner.end]) == ("[", "sehr")
    for kept in ("Foto(s) vom Urlaub", "Ein Hund ) bellt ( laut", "Ein Hund (bellt", "Smiley ()", "(a [b) c]",
                 "snake_case und 2*3*4", "Ein ** Hund ** bellt"):
        assert take_out(kept) == (kept, [])  # inside a word, unbalanced, empty, crossed, not emphasis
    text, marks = take_out("Ein **großer** und _schneller_ Hund")  # Markdown emphasis
    assert text == "Ein großer und schneller Hund"
    assert [(m.open, text[m.start:m.end]) for m in marks] == [("**", "großer"), ("_", "schneller")]
    text, [quote] = take_out("Ein „kleiner“ Hund")  # one lower-case word in quotes: emphasis, quoted in English
    assert text == "Ein kleiner Hund" and (quote.open, quote.close, text[quote.start:quote.end]) == ('"', '"', "kleiner")
    assert take_out('Ein Boot namens "El Corazon"') == ('Ein Boot namens "El Corazon"', [])  # a name: protect's


def test_brackets_go_around_the_words_the_attention_aligns_with_what_they_enclosed():
    source, [b] = take_out("Ein Kind spielt (im Garten).")
    src = ["▁Ein", "▁Kind", "▁spielt", "▁im", "▁Garten", "."]
    out = ["▁A", "▁child", "▁plays", "▁in", "▁the", "▁garden", "."]
    peaks = [0, 1, 2, 3, 3, 4, 5]  # the source token each output token attends to most
    attention = np.eye(len(src))[peaks] * 0.8 + 0.2 / len(src)
    assert put_back("A child plays in the garden.", out, source, src, attention, [b]) == "A child plays (in the garden)."
    attention[3] = np.eye(len(src))[2]  # "in" attends to "spielt": only the words just before count
    assert put_back("A child plays in the garden.", out, source, src, attention, [b]) == "A child plays in (the garden)."
    attention[3:6] = np.eye(len(src))[2]  # nothing renders the enclosed words: the brackets go too
    assert put_back("A child plays in the garden.", out, source, src, attention, [b]) == "A child plays in the garden."
    attention[3:6] = [0.25, 0.25, 0.2, 0.0, 0.3, 0.0]  # a glance (their peak, but under half): too
    assert put_back("A child plays in the garden.", out, source, src, attention, [b]) == "A child plays in the garden."
    assert put_back("A child plays.", out[:3], source, src, None, [b]) == "A child plays."  # no attention


def test_emoji_at_the_edges_of_a_sentence_are_kept_apart():
    from nmt.text import edge_symbols

    assert edge_symbols("Ein Hund bellt 🐶") == ("", "Ein Hund bellt", " 🐶")
    assert edge_symbols("😀😀 Ein Hund 😀 bellt 👍🏽!!!") == ("😀😀 ", "Ein Hund 😀 bellt", " 👍🏽!!!")
    assert edge_symbols("Ein Hund bellt!") == ("", "Ein Hund bellt!", "")  # its own final mark stays


def test_casing_styles_and_truecasing():
    forms = {w.lower(): w for w in ["Hund", "ein", "Mann", "Straße", "Fußgänger", "Weg", "fährt", "Fahrrad"]}
    assert [casing_style(t) for t in ["EIN MANN", "ein mann fährt", "Ein Mann Fährt Fahrrad",
                                      "Ein Mann fährt Fahrrad."]] == ["upper", "lower", "title", "mixed"]
    assert truecase("EIN MANN FÄHRT FAHRRAD.", forms) == "Ein Mann fährt Fahrrad."
    assert truecase("ein hund auf der strasse", forms) == "Ein Hund Auf Der Straße"  # unknown: names
    assert truecase("ein fußgängerweg und grzegorz", forms, names=False) == "Ein Fußgängerweg und grzegorz"
    assert compound_head("fußgängerweg", forms) == "weg" and compound_head("grzegorz", forms) is None
    assert compound_head("hundeweg", forms) == "weg" and compound_head("eweg", forms) is None  # links only join


# -- through the server ---------------------------------------------------------------------

from service.client import TranslatorClient  # noqa: E402
from tests.servers import RunningServer, make_config  # noqa: E402


@pytest.fixture(scope="module")
def client():
    srv = RunningServer(make_config(limits__max_chars=2000, limits__max_sentences=4,
                                    limits__max_request_sentences=6)).start()
    with TranslatorClient(srv.address) as c:
        c.server = srv
        yield c
    srv.stop()


def test_a_text_of_several_sentences_returns_every_sentence(client):
    text = ("Ein kleines Mädchen klettert in ein Spielhaus aus Holz. Ein Mann schläft auf einer Bank.\n\n"
            "Zwei Hunde rennen über eine Wiese.")
    [t] = client.translate([text], beam_size=2, num_hypotheses=2, return_attention=True)
    assert len(t.sentences) == 3
    assert [text[s.start:s.end] for s in t.sentences][1] == "Ein Mann schläft auf einer Bank."
    words = t.text.lower()
    assert "girl" in words and "bench" in words and "dogs" in words
    # the text's own whitespace between sentences
    first, second, third = (s.best.text for s in t.sentences)
    assert t.text == f"{first} {second}\n\n{third}"
    # per sentence: its own alignment; whole text: block diagonal, each row summing to 1
    for s in t.sentences:
        assert s.best.attention.shape == (len(s.best.tokens), len(s.source_tokens))
    whole = t.best.attention
    assert whole.shape == (len(t.best.tokens), len(t.source_tokens))
    np.testing.assert_allclose(whole.sum(axis=1), 1.0, atol=1e-4)
    rows, cols = len(t.sentences[0].best.tokens), len(t.sentences[0].source_tokens)
    assert whole[:rows, cols:].sum() == 0 and whole[rows:, :cols].sum() == 0
    assert len(t.hypotheses) == 2 and len(t.sentences[0].hypotheses) == 2


def test_sentence_limits_are_invalid_argument_naming_the_limit(client):
    import grpc

    with pytest.raises(grpc.RpcError) as err:
        client.translate(["Ein Hund. " * 5])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "5 sentences exceed the maximum of 4 per text" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        client.translate(["Ein Hund. Eine Katze. Ein Pferd."] * 3)
    assert "9 sentences exceed the maximum of 6 per request" in err.value.details()
    assert client.translate(["Ein Hund."])[0].text


def test_numbers_and_dates_come_back_as_english_writes_them(client):
    thousand, price, date, english = client.translate(
        ["Über 1.000 Menschen stehen auf der Straße.", "Ein Mann kauft Brot für 4,99 Euro.",
         "Ein Mann läuft am 3. Mai einen Marathon.", "Es ist 3.5 Meter hoch."], return_attention=True)
    assert "1,000 people" in thousand.text and "1.000" not in thousand.text  # a German thousand, not one
    assert "€4.99" in price.text and "on May 3" in date.text and "Mai" not in date.text
    assert "3.5" in english.text  # not a German number: as typed
    assert "1,000" in thousand.sentences[0].best.tokens  # the attention's tokens show what was written
    aside, measure, both = client.translate(["Ein geschäftiger (34) Tag auf einem Platz.",
                                             "Ein Hund läuft (2 Tage) lang.",
                                             "Eine Frau (34) läuft am 3. Mai 5,5 Kilometer."])
    assert "(34)" in aside.text and "days" not in aside.text  # not "(34 days)"
    assert "(2 days)" in measure.text
    assert "(34)" in both.text and "May 3" in both.text and "5.5 kilometers" in both.text  # an aside beside them


def test_links_keep_their_case_whatever_the_casing_of_the_text(client):
    shouted, quiet = client.translate(["EIN MANN NAMENS GRZEGORZ SCHREIBT AN info@example.de",
                                       "ein hund bellt auf www.Example.com/Hund"])
    # a lower-case address made the text "mixed": the capitals stayed capitals for the model, and
    # "an" came back "on"; the address itself is not ours to upper- or lower-case
    assert "info@example.de" in shouted.text and shouted.text.replace("info@example.de", "").isupper()
    assert "GRZEGORZ" in shouted.text and "www.Example.com/Hund" in quiet.text


def test_what_people_type_comes_back_whole(client):
    cases = ["Ein Bus der Linie 99 fährt durch die Stadt.",
             "Ein Mann schreibt info.104@mail.de an eine Tafel.",
             "Eine Frau geht an einem Plakat für www.sommerfest2024.de vorbei.",
             "Ein Hund namens Balthasar spielt im Park.",
             "Zwei Kinder essen Eis 🍦 am Strand.",
             "Grzegorz fährt mit dem Fahrrad zur Arbeit.",  # a name as the first word
             "Anna und Balthasar spielen Gitarre."]
    cases += ["Ein Eis kostet 2,50 €.", "Ein Mann mit einem Schild #streik läuft.",
              "Eine Frau fotografiert https://example.com/x?y=1 mit dem Handy.", "Ein Hund <3",
              "Ein Auto fährt 50 km/h.", "Eine Frau verkauft auf eBay.", "Ein Mann zahlt 20 USD.",
              "Ein Hund spielt von 10–12 Uhr.", "Ein Mann gewinnt 1.000.000 Euro."]
    items = ["99", "info.104@mail.de", "www.sommerfest2024.de", "Balthasar", "🍦", "Grzegorz", "Anna",
             "€2.50", "#streik", "https://example.com/x?y=1", "<3", "50 km/h", "eBay", "20 USD", "10–12", "€1,000,000"]
    results = [t for i in range(0, len(cases), 4) for t in client.translate(cases[i:i + 4], beam_size=5)]
    for item, t in zip(items, results):
        assert t.text.count(item) == 1, (item, t.text)
        assert "⦅" not in t.text and "⁇" not in t.text
    ended, started, inside, plain = client.translate(["Ein Hund bellt 🐶", "🐶 Ein Hund bellt.", "Ein Hund 🐶 bellt.",
                                                      "Ein Hund bellt."])
    assert ended.text == plain.text.rstrip(".") + " 🐶" and started.text == "🐶 " + plain.text  # and no verb lost
    assert inside.text.count("🐶") == 1 and " ".join(inside.text.replace("🐶", " ").split()) == plain.text
    assert inside.text.startswith("A dog 🐶 ")  # after the word its left neighbour became
    hidden, plain = client.translate(["Ein Mann fährt Fahr\u00adrad.\u200b", "Ein Mann fährt Fahrrad."])
    assert hidden.text.rstrip("\u200b") == plain.text  # soft hyphens and zero-width spaces from web pages
    [runes] = client.translate(["Ein Schild mit ᚠᚢᚦ hängt an der Wand."])
    assert "ᚠᚢᚦ" in runes.text  # characters outside the vocabulary: copied, never ⁇ or lost
    [upper, lower, plain] = client.translate(["EIN MANN FÄHRT FAHRRAD.", "ein mann fährt fahrrad",
                                              "Ein Mann fährt Fahrrad."])
    assert upper.text == upper.text.upper() and "MAN" in upper.text and "FAHRRAD" not in upper.text
    assert "man" in lower.text.lower() and lower.text.rstrip()[-1] != "."  # typed without a full stop
    marks = client.translate(["...", "???", "- - -", "Ein Hund. . . Eine Katze."], beam_size=3, num_hypotheses=2)
    assert [t.text for t in marks[:3]] == ["...", "???", "- - -"]  # nothing for the model: as typed
    assert marks[3].text.startswith("A dog. . . ") and all(t.hypotheses for t in marks)
    [shouted] = client.translate(["Ein Mann!!! Eine Frau???"])
    assert shouted.text.startswith("A man") and "!!! A woman" in shouted.text and shouted.text.endswith("???")
    shouted, calm, acronym = client.translate(["Ein Mann fährt ein ROTES Auto.", "Ein Mann fährt ein rotes Auto.",
                                               "Ein DJ spielt Musik."])
    assert "RED" in shouted.text and shouted.text.lower() == calm.text.lower() and "DJ" in acronym.text
    quoted, comma, spaced, plain = client.translate(["„Ein Hund bellt.“", "Ein Hund bellt;", "Ein Hund bellt .",
                                                     "Ein Hund bellt."])
    assert quoted.text == '"' + plain.text + '"' and comma.text == plain.text.rstrip(".") + ";"  # English quotes
    assert spaced.text == plain.text  # a space before "," or "." is not the model's business
    trailing = client.translate(["Ein Hund...", "Ein Hund bellt… Eine Katze schläft…"])
    assert trailing[0].text == "A dog..."  # the model reads a full stop, the output ends as typed
    assert "… A cat" in trailing[1].text and trailing[1].text.endswith("…") and len(trailing[1].sentences) == 2
    [listed] = client.translate(["• Ein Hund\n• Eine Katze\n• Zwei Vögel"])
    assert [line[:2] for line in listed.text.split("\n")] == ["• "] * 3 and "dog" in listed.text.lower()
    named, number, small = client.translate(['Eine Frau auf einem Boot namens „El Corazon“ lässt Gewichte fallen.',
                                             'Ein Kind mit der Nummer "93" fährt Ski.', 'Ein „kleiner“ Hund spielt.'])
    assert named.text.count('"El Corazon"') == 1 and number.text.count('"93"') == 1, (named.text, number.text)
    assert '"small"' in small.text, small.text  # emphasis: translated, in quotes
    rare = client.translate(["Anna und Peter gehen in den Park.", "Thomas fährt nach Berlin."])
    assert "Peter" in rare[0].text and "Thomas" in rare[1].text and "Berlin" in rare[1].text, rare
    for word in ("Hund", "Ein Hund", "Katze"):  # fragments end instead of looping
        [t] = client.translate([word])
        assert 1 <= len(t.text.split()) <= 3, t.text


def test_brackets_come_back_around_the_translation_of_what_they_enclosed(client):
    cases = ["Ein Kind spielt (im Garten).", "Ein Mann (mit einem Hut) fährt Fahrrad.", "EIN MANN (MIT HUT) FÄHRT RAD"]
    bracketed = client.translate(cases)  # no attention asked for: the server asks for it itself
    plain = client.translate([c.replace("(", "").replace(")", "") for c in cases])
    for t, p, inside in zip(bracketed, plain, ("garden", "hat", "HAT")):
        assert t.text.replace("(", "").replace(")", "") == p.text  # the same words as without them
        assert t.text.count("(") == t.text.count(")") == 1
        assert inside in t.text[t.text.index("("):t.text.index(")")], t.text
        assert t.best.attention is None  # and the client gets no attention it did not ask for
    [bold] = client.translate(["Zwei Hunde spielen **im Schnee**."])
    assert bold.text.count("**") == 2 and "snow" in bold.text.split("**")[1], bold.text
    [t] = client.translate(["Ein Kind spielt (im Garten)."], return_attention=True)
    assert "(" not in "".join(t.source_tokens) and t.best.attention.shape[1] == len(t.source_tokens)
    # a number in brackets is an aside: the model, given it, dropped the verb ("A woman (30) on the beach.")
    ages = client.translate(["Eine Frau (30) läuft am Strand.", "Ein Mann (45) sitzt auf einer Bank."])
    plain = client.translate(["Eine Frau läuft am Strand.", "Ein Mann sitzt auf einer Bank."])
    for t, p, aside in zip(ages, plain, ("(30)", "(45)")):
        assert t.text.count(aside) == 1 and t.text.replace(" " + aside, "") == p.text, t.text


def test_guard_options_reach_the_search_and_are_validated(client):
    import grpc

    from translation.v1 import translator_pb2 as pb

    [t] = client.translate(["Zwei Hunde spielen im Schnee."], max_length_factor=0.5, max_output_tokens=50)
    assert len(t.best.tokens) <= int(0.5 * len(t.sentences[0].source_tokens) + 10)
    [t] = client.translate(["Zwei Hunde spielen im Schnee."], no_repeat_ngram_size=1, repetition_penalty=1.5,
                           beam_size=3, coverage_penalty=0.2)
    assert len(t.best.tokens) == len(set(t.best.tokens))
    for bad, field in [(dict(repetition_penalty=0.5), "options.repetition_penalty"),
                       (dict(coverage_penalty=-1.0), "options.coverage_penalty"),
                       (dict(max_length_factor=float("nan")), "options.max_length_factor"),
                       (dict(no_repeat_ngram_size=99), "options.no_repeat_ngram_size")]:
        with pytest.raises(grpc.RpcError) as err:
            client.translate(["Ein Hund."], **bad)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and field in err.value.details()
    with pytest.raises(TypeError, match="unknown option"):
        client.translate(["Ein Hund."], beam=3)
    assert pb.DecodingOptions(coverage_penalty=0.0).HasField("coverage_penalty")  # zero can be asked for


def test_no_word_ending_sticks_to_a_copied_item(client):
    [t] = client.translate(["EIN MANN NAMENS GRZEGORZ SCHREIBT AN info@example.de"])
    assert "info@example.de" in t.text and "GRZEGORZ" in t.text
    for item in ("info@example.de", "GRZEGORZ"):
        after = t.text.split(item, 1)[1][:1]
        assert not after.isalpha(), t.text
    spaced = client.translate(["Ein Kind mit der Nummer 93.", 'Ein Schild mit der Aufschrift "Stop".',
                               "Ein Mann namens Peter hält ein Schild mit „Stop“."])
    assert spaced[0].text.endswith("93.") and not any(re.search(r" [.,;:!?]", t.text) for t in spaced), spaced
    assert spaced[2].text.endswith('"Stop".'), spaced[2].text  # a dropped item goes before the full stop
