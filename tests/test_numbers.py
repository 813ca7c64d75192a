"""Numbers and dates come back as the target language writes them (nmt/numbers.py): a German "1.000"
is a thousand, which English writes "1,000"; copied as typed it read as one."""

from nmt.numbers import Localizer
from nmt.protect import protect

GERMAN = Localizer("de", "en")
RANGE = "Es kostet 3.000-4.000 Euro."


def test_german_numbers_are_written_the_english_way():
    cases = {"1.000": "1,000", "2,5": "2.5", "1.234,56": "1,234.56", "-3,5": "-3.5", "1.234.567": "1,234,567",
             "0,5": "0.5", "2,50 Euro": "€2.50", "1,5–2,5 km": "1.5–2.5 km", "(1,5)": "(1.5)",
             "12,50 €": "€12.50", "12,50€": "€12.50", "€12,50": "€12.50", "5,- €": "€5",
             "12,- Euro": "€12", "50 %": "50%", "2,5 %": "2.5%"}
    assert {k: GERMAN.render(k) for k in cases} == cases


def test_what_is_not_a_german_number_stays_as_typed():
    # English decimals, versions and numeric dates do not parse as German numbers; numbers without
    # separators (years, telephone numbers, ranges, times) need nothing
    for item in ("3.5", "2.0", "12.05.2024", "2024", "0176-1234567", "+49 30 1234567", "10–12", "14:30",
                 "$13", "10km", "#3", "030/123.456", "1,5/2,5", "007,5"):
        assert GERMAN.render(item) == item
    # a range is one item: its second number is not a measure of its own
    assert list(protect(RANGE, localized=GERMAN.spans(RANGE)).items.values()) == ["3.000-4.000 Euro"]
    assert GERMAN.render("3.000-4.000 Euro") == "3,000-4,000 Euro"


def test_dates_in_words_are_one_item_written_the_english_way():
    assert GERMAN.render("3. Mai") == "May 3" and GERMAN.render("12. Mai 2024") == "May 12, 2024"
    assert GERMAN.render("1. Jan. 2020") == "January 1, 2020" and GERMAN.render("29. Februar") == "February 29"
    assert GERMAN.render("31. Februar") == "31. Februar"  # no such date: as typed
    text = "Ein Mann läuft am 3. Mai 2024 und am 4. Juni 5,5 Kilometer."
    found = protect(text, localized=GERMAN.spans(text))
    assert list(found.items.values()) == ["3. Mai 2024", "4. Juni", "5,5 Kilometer"]
    assert list(protect("Ein Mann läuft am 3. Mai.").items.values()) == ["3"]  # without dates: the number
    assert GERMAN.tidy("A man runs on the May 3 marathon.", ["3. Mai"]) == "A man runs on May 3 marathon."
    tidied = GERMAN.tidy("At the May 3, a dog waits at June 5.", ["3. Mai", "5. Juni"])
    assert tidied == "On May 3, a dog waits on June 5."
    assert GERMAN.tidy("The 3 dogs.", ["3"]) == "The 3 dogs."  # a number keeps its article


def test_units_and_currencies_in_words_come_with_their_number():
    cases = {"1,5 Meter": "1.5 meters", "1 Meter": "1 meter", "2 Stunden": "2 hours", "(3 Minuten)": "(3 minutes)",
             "20 Grad Celsius": "20 degrees Celsius", "4,99 Euro": "€4.99", "1.000 Euro": "€1,000",
             "10 Jahre": "10 years", "1 Woche": "1 week", "50 Prozent": "50 percent",
             "2 Millionen": "2 million", "1,5 Millionen Euro": "€1.5 million", "3 Milliarden": "3 billion"}
    assert {k: GERMAN.render(k) for k in cases} == cases
    assert GERMAN.render("3.5 Meter") == "3.5 Meter"  # not a German number: as typed
    assert GERMAN.render("42,195 Kilometern") == "42.195 Kilometern"  # a form CLDR lacks: the number alone


def test_other_directions_and_unknown_languages():
    english = Localizer("en", "de")
    assert english.render("50%") == "50\u00a0%"
    assert english.render("1,000.5") == "1.000,5" and english.render("$13.50") == "13,50 $"
    assert english.render("May 12, 2024") == "12. Mai 2024" and english.render("4.99 euros") == "4,99\u00a0€"
    assert english.render("1.5 million euros") == "1,5 Millionen\u00a0€"
    assert Localizer("fr", "en").render("3 mai 2024") == "May 3, 2024"
    assert Localizer("xx", "en").render("2,5") == "2,5" and Localizer("de", "").render("2,5") == "2,5"
    assert Localizer("de", "de").render("1.000") == "1.000"
