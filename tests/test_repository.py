"""The repository itself: what a fresh clone gets must build."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_no_symbolic_links_are_tracked():
    # A tracked symlink (a worktree's `.venv` pointing at another checkout) breaks `make venv` on a fresh clone.
    listing = subprocess.run(
        ["git", "ls-files", "-s"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    links = [line.split("\t", 1)[1] for line in listing if line.startswith("120000 ")]
    assert links == []
