"""The README says what the code does: every server flag is documented with its environment
variable, and every measured table is the one its result file gives."""

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
