"""Numbers and dates as the target language writes them (CLDR data, through Babel).

German writes a thousand "1.000" and two and a half "2,5"; English reads "1.000" as one and "2,5"
as twenty-five. Copied as typed (protected items, `nmt.protect`), such numbers changed their meaning
in the translation: "Über 1.000 Menschen" came back as "1.000 people", "4,99 Euro" as "4,99 Euro".
A protected number with separators is read the source language's way and written the target's
("1.000" -> "1,000", "12,50 €" -> "€12.50"). Only what parses strictly in the source language
changes: "3.5", "2.0" and "12.05.2024" are not German numbers and stay as typed, and numbers without
separators (years, house and telephone numbers, "10–12", "14:30") are never touched.

Dates in words ("3. Mai", "12. Mai 2024") and numbers with a unit, currency or scale word in words
("1,5 Meter", "4,99 Euro", "2 Millionen") are one protected item each, written the target's way
("May 3", "May 12, 2024", "1.5 meters", "€4.99", "2 million"): the model, which saw few of them,
dropped the month ("am 12. Mai 2024" gave "on the 12 2024") or the unit ("über einen 1,5 Meter
hohen Zaun" gave "over a 1.5 with tall fence"). A per cent sign takes the target's spacing ("50 %"
-> "50%"); other symbols ("5 km", "20 °C") are international and stay as typed.
"""

from __future__ import annotations

import datetime
import re
from decimal import Decimal

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_skeleton, get_date_format, get_month_names
from babel.numbers import (NumberFormatError, format_compact_decimal, format_decimal, get_currency_name,
                           get_currency_symbol, get_decimal_symbol, get_group_symbol, parse_decimal)
from babel.units import UnknownUnitError, format_unit

CURRENCY_SIGNS = "$€£¥₹₽₩₺₴₿¢"
_RUN = re.compile(r"\d[\d.,]*\d|\d")  # one number inside an item ("12,50 €", "1,5–2,5 km")
_SIGN_AFTER = re.compile(rf"(?P<number>[+-]?\d[\d.,]*)\s?(?P<sign>[{CURRENCY_SIGNS}])")
_SIGN_BEFORE = re.compile(rf"(?P<sign>[{CURRENCY_SIGNS}])\s?(?P<number>[+-]?\d[\d.,]*)")
_FIELD = re.compile(r"'([^']*)'|([A-Za-z])\2*|(.)", re.DOTALL)  # a CLDR date pattern's parts
# everyday units whose names (CLDR "long" forms, singular and plural) follow a number in words
UNITS = ("length-kilometer", "length-meter", "length-centimeter", "length-millimeter", "length-mile",
         "mass-kilogram", "mass-gram", "volume-liter", "volume-milliliter", "duration-hour",
         "duration-minute", "duration-second", "duration-day", "duration-week", "duration-month",
         "duration-year", "temperature-celsius", "speed-kilometer-per-hour", "concentr-percent")
CURRENCIES = ("EUR", "USD", "GBP", "CHF")
_NUMBER = r"[+-]?\d(?:[\d.,]*\d)?(?:,[-–](?!\d))?"
# telephone numbers, times, ratios and fractions ("030/123.456", "14:30", "2:1", "3/4"), and
# numbers with a leading zero (identifiers): not quantities, never rewritten
_NOT_A_QUANTITY = re.compile(r"[/:]|(?<![\d.,])0\d")
_WHOLE_PRICE = re.compile(r"(?<=\d),[-–]")
_PERCENT = re.compile(r"(?P<number>[+-]?\d[\d.,]*)\s?%")


def _locale(language: str) -> Locale | None:
    try:
        return Locale.parse(language) if language else None
    except (UnknownLocaleError, ValueError):
        return None


class Localizer:
    """Writes the source language's numbers, dates and measures the target language's way; where
    either language is unknown to CLDR, leaves everything as typed."""

    def __init__(self, source: str, target: str) -> None:
        self.source, self.target = _locale(source), _locale(target)
        self.dates: re.Pattern | None = None  # dates in words in the source language
        self.measures: re.Pattern | None = None  # a number with a unit or currency in words
        self.items: re.Pattern | None = None  # either: what `nmt.protect` makes one item each
        self._months: dict[str, int] = {}
        self._units: dict[str, str] = {}  # source name (lower case) -> CLDR unit or currency code
        self._scales: dict[str, Decimal] = {}  # "millionen" -> 1000000
        if self.source is None or self.target is None:
            return
        self._symbols = get_decimal_symbol(self.source), get_group_symbol(self.source)
        self._sign_first = self.target.currency_formats["standard"].pattern.lstrip("#,0.;-").startswith("¤")
        self._percent = re.sub(r"^[#,0.]+", "", self.target.percent_formats[None].pattern.split(";")[0])  # "%", " %"
        self.dates = self._date_pattern()
        self.measures = self._measure_pattern()
        found = [p.pattern for p in (self.dates, self.measures) if p is not None]
        self.items = re.compile("|".join(f"(?:{p})" for p in found), re.IGNORECASE) if found else None

    def spans(self, text: str, asides: set[int] = frozenset()) -> list[tuple[int, int]]:
        """Where `text` has dates and measures in words, each one protected item; not a measure
        whose number starts at one of `asides` (a number that stood alone in brackets there:
        "Ein geschäftiger (34) Tag", its brackets taken out, is not "34 days")."""
        if self.items is None:
            return []
        return [m.span() for m in self.items.finditer(text) if not (m["number"] and m.start("number") in asides)]

    def render(self, item: str) -> str:
        """A protected item as the target language writes it: a date in words, or a number (with
        its sign, currency sign or unit, in brackets or not); anything else as it is."""
        if self.source is None or self.target is None:
            return item
        opening, core, closing = (item[0], item[1:-1], item[-1]) if item[:1] + item[-1:] == "()" else ("", item, "")
        if self.dates is not None and (m := self.dates.fullmatch(core)):
            core = self._date(m) or core
        elif self.measures is not None and (m := self.measures.fullmatch(core)):
            core = self._measure(m) or core
        elif core[:1].isdigit() or core[:1] in f"+-{CURRENCY_SIGNS}":
            core = self._number(core)
        return opening + core + closing

    def tidy(self, text: str, items) -> str:
        """The translation around the dates among `items` (as typed), once `render` wrote them:
        English writes "on May 3", and the model, which read a date's placeholder as a number's,
        wrote "on the May 3" and "at June 5"."""
        if self.target is None or self.target.language != "en" or self.dates is None:
            return text

        def on(m: re.Match, date: str) -> str:
            said = m["on"]  # the preposition the model wrote: "on" in its case
            if not said:
                return date
            return ("ON" if said.isupper() else "On" if said[0].isupper() else "on") + " " + date

        for item in items:
            if self.dates.fullmatch(item):
                date = self.render(item)
                pattern = rf"(?<!\w)(?:(?P<on>at|in|on) )?(?:the )?{re.escape(date)}"
                text = re.sub(pattern, lambda m, date=date: on(m, date), text, flags=re.IGNORECASE)
        return text

    def _number(self, item: str) -> str:
        if _NOT_A_QUANTITY.search(item):
            return item
        whole = _WHOLE_PRICE.sub("", item)  # "5,- €": five euros, which English writes "€5"
        converted = _RUN.sub(lambda m: self._run(m.group()), whole)
        if percent := _PERCENT.fullmatch(converted):  # "50 %" -> "50%", as the target spaces it
            return percent["number"] + self._percent
        if converted == item:
            return item
        after, before = _SIGN_AFTER.fullmatch(converted), _SIGN_BEFORE.fullmatch(converted)
        if after and self._sign_first:  # "12,50 €" -> "€12.50"
            number = after["number"]
            sign = number[0] if number[0] in "+-" else ""
            return sign + after["sign"] + number[len(sign):]
        if before and not self._sign_first:  # "$12.50" -> "12,50 $"
            return before["number"] + " " + before["sign"]
        return converted

    def _run(self, run: str) -> str:
        decimal, group = self._symbols
        if decimal not in run and group not in run:
            return run
        parsed = self._parse(run)
        return run if parsed is None else format_decimal(parsed[0], format=parsed[1], locale=self.target)

    def _parse(self, number: str) -> tuple[Decimal, str] | None:
        """(value, a number pattern with the grouping and decimals as typed), or None when `number`
        is not one of the source language ("3.5" in German)."""
        decimal, group = self._symbols
        try:
            value = parse_decimal(number, locale=self.source, strict=True)
        except (NumberFormatError, ValueError):
            return None
        decimals = len(number.rsplit(decimal, 1)[1]) if decimal in number else 0
        return value, ("#,##0" if group in number else "0") + ("." + "0" * decimals if decimals else "")

    def _measure_pattern(self) -> re.Pattern | None:
        """A number followed by the name of a unit or currency in the source language, in the forms
        CLDR gives for counts of every plural category ("1 Stunde", "2 Stunden"), or by a scale word
        of CLDR's long compact numbers ("2 Millionen"), a currency's name possibly after it."""
        for count in (1, 2, 5, 1.5):
            number = format_decimal(count, locale=self.source)
            for unit in UNITS:
                try:
                    form = format_unit(count, unit, length="long", locale=self.source)
                except UnknownUnitError:
                    continue
                if form.startswith(number) and form[len(number):].strip():
                    self._units[form[len(number):].strip().lower()] = unit
            for code in CURRENCIES:
                self._units[get_currency_name(code, count=count, locale=self.source).lower()] = code
        for patterns in self.source.compact_decimal_formats.get("long", {}).values():
            for magnitude, pattern in patterns.items():
                m = re.fullmatch(r"(0+)\s+([^\W\d_]+)", str(pattern.pattern))
                if m:
                    self._scales[m[2].lower()] = Decimal(magnitude) / 10 ** (len(m[1]) - 1)
        if not self._units:
            return None
        def alternatives(words) -> str:  # longest first: "Millionen" before "Million"
            return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)) or "(?!)"

        names, scales = alternatives(self._units), alternatives(self._scales)
        money = alternatives(n for n, u in self._units.items() if u in CURRENCIES)
        # not the end of a range or a fraction ("3.000-4.000 Euro" is one number item, as typed)
        return re.compile(rf"(?<![\w.,/:–-])(?P<number>{_NUMBER})\s"
                          rf"(?:(?P<scale>{scales})(?:\s(?P<money>{money}))?|(?P<unit>{names}))(?!\w)", re.IGNORECASE)

    def _measure(self, m: re.Match) -> str | None:
        parsed = self._parse(_WHOLE_PRICE.sub("", m["number"]))
        if parsed is None:
            return None
        value, pattern = parsed
        if m["scale"]:  # "1,5 Millionen" -> "1.5 million", "2 Millionen Euro" -> "€2 million"
            decimals = len(pattern.partition(".")[2])
            text = format_compact_decimal(value * self._scales[m["scale"].lower()], format_type="long",
                                          locale=self.target, fraction_digits=decimals)
            return self._money(text, self._units[m["money"].lower()]) if m["money"] else text
        unit = self._units[m["unit"].lower()]
        if unit in CURRENCIES:
            return self._money(format_decimal(value, format=pattern, locale=self.target), unit)
        return format_unit(value, unit, length="long", format=pattern, locale=self.target)

    def _money(self, amount: str, code: str) -> str:
        """An amount already written the target's way, with the currency's symbol where the target
        puts it ("€4.99", "4,99 €")."""
        symbol = get_currency_symbol(code, locale=self.target)
        return symbol + amount if self._sign_first else amount + "\u00a0" + symbol

    def _date_pattern(self) -> re.Pattern | None:
        """The source language's long date ("d. MMMM y" in German) as a regex, the year optional;
        None where that pattern has other fields or does not end with the year."""
        months = {}
        for width in ("wide", "abbreviated"):
            for number, name in get_month_names(width, locale=self.source).items():
                months[name.lower()] = number
                months[name.lower().rstrip(".")] = number
        self._months = months
        names = "|".join(re.escape(n) for n in sorted(months, key=len, reverse=True) if len(n) >= 3)
        parts: list[str] = []
        year_at = None
        for m in _FIELD.finditer(get_date_format("long", locale=self.source).pattern):
            literal, field = m.group(1), m.group(2)
            if field is None:
                text = literal if literal is not None else m.group(3)
                parts.append(r"\s+" if text.isspace() else re.escape(text))
            elif field == "d":
                parts.append(r"(?P<day>\d{1,2})")
            elif field in ("M", "L") and len(m.group()) >= 3:
                parts.append(rf"(?P<month>{names})")
            elif field == "y":
                year_at = len(parts)
                parts.append(r"(?P<year>\d{4})")
            else:
                return None
        if year_at is None or year_at != len(parts) - 1:
            return None
        start = max(i for i, p in enumerate(parts[:year_at]) if p.startswith("(?P<")) + 1
        body = "".join(parts[:start]) + "(?:" + "".join(parts[start:]) + ")?"
        return re.compile(rf"(?<![\w.]){body}(?![\w])", re.IGNORECASE)

    def _date(self, m: re.Match) -> str | None:
        month = self._months.get(m["month"].lower()) or self._months.get(m["month"].lower().rstrip("."))
        year = m["year"]
        try:
            when = datetime.date(int(year) if year else 2000, month or 0, int(m["day"]))  # 2000: 29 February exists
        except ValueError:
            return None
        if year:
            return format_date(when, "long", locale=self.target)
        return format_skeleton("MMMMd", when, locale=self.target)
