"""Every README snippet marked ``<!-- test: run -->`` runs as written, in a fresh directory."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
SNIPPETS = re.findall(r"<!-- test: run -->\n```python\n(.*?)```", README, re.S)


def test_the_readme_has_runnable_snippets_for_each_operating_section():
    for heading in (
        "Checkpoints and restore",
        "Savepoints and stop",
        "Exactly-once sinks",
        "Metrics and the dashboard",
        "Streaming SQL",
    ):
        section = README.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
        assert "<!-- test: run -->" in section, heading
    assert len(SNIPPETS) >= 4


@pytest.mark.parametrize("code", SNIPPETS, ids=[f"snippet-{i}" for i in range(len(SNIPPETS))])
def test_snippet_runs(code, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr


def test_the_cli_section_names_a_job_that_exists():
    from streamcore.cli import main

    assert "examples/wordcount_job.py" in README
    assert main(["explain", str(ROOT / "examples" / "wordcount_job.py")]) == 0
