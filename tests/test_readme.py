"""The README says what the code does: every server flag is documented with its environment
variable, and every measured table is the one its result file gives."""

import re
import subprocess
import sys
from pathlib import Path

from service.config import FLAGS, env_name

ROOT = Path(__file__).resolve().parents[1]


def test_every_server_flag_is_in_the_readme():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [flag for flag, *_ in FLAGS if f"| `--{flag}` | `{env_name(flag)}` |" not in readme]
    assert not missing, f"flags missing from the README's Serve table: {missing}"


def test_readme_tables_match_the_result_files():
    run = subprocess.run([sys.executable, "bench/readme_tables.py", "--check"], cwd=ROOT,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_no_measured_figure_is_typed_into_the_readme_prose():
    """Times, speed ratios and rates belong in the generated blocks, each behind its result file;
    prose that repeats them goes stale at the next run (configuration values such as `5 s` are fine)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    prose = re.sub(r"<!-- table:(\w+) -->.*?<!-- /table:\1 -->", "", text, flags=re.S)
    prose = re.sub(r"```.*?```", "", prose, flags=re.S)
    measured = re.compile(r"\b\d[\d,]*(?:\.\d+)?\s?(?:us|ms|µs)\b|\b\d+\.\d+x\b"
                          r"|\b\d[\d,]*(?:\.\d+)?\s(?:sentences|requests|row-steps|tokens)/s\b|\d\s?GFLOP/s")
    typed = [f"line {text[:text.find(line)].count(chr(10)) + 1}: {m.group()!r} in {line.strip()[:80]!r}"
             for line in prose.splitlines() for m in measured.finditer(line)]
    assert not typed, "figures typed into the README's prose (generate them in bench/readme_tables.py):\n" + "\n".join(typed)
