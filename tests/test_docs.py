"""The README and docs/: every relative link leads to a file that exists (and to a heading there,
when it names one); the README stays a short front page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# [text](target) outside code spans; images too. Reference-style links are not used here.
# Pages another branch of issue 25 writes (h-config: the configuration reference); empty once merged.
NOT_YET: set = set()  # docs a link may name before they exist
LINK = re.compile(r"(?<!`)\[[^\]]*\]\(([^)\s]+)\)")


def links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code blocks are not links
    return LINK.findall(text)


def anchors(page: Path) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    found = set()
    for heading in re.findall(r"^#+ (.+)$", text, re.M):
        found.add(re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-"))
    return found


def broken(page: Path) -> list[str]:
    bad = []
    for target in links(page):
        if re.match(r"[a-z]+:", target):  # https:, mailto:: not ours to check
            continue
        path, _, fragment = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists() and dest not in NOT_YET:
            bad.append(f"{target}: no such file")
        elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            bad.append(f"{target}: no such heading in {dest.name}")
    return bad


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_leads_somewhere(page):
    assert links(page) or page.name != "README.md"
    assert broken(page) == []


def test_not_yet_lists_only_missing_pages():
    assert not [p for p in NOT_YET if p.exists()], "merged: empty NOT_YET"


def test_a_broken_link_is_found(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Top\n\n[a](other.md) [b](#top) [c](#nowhere) [d](https://example.com/x)\n"
                    "`[e](in-code.md)`\n```\n[f](in-block.md)\n```\n")
    assert broken(page) == ["other.md: no such file", "#nowhere: no such heading in page.md"]


def test_readme_is_a_front_page():
    """What it is, quick start, try it, tests, where to read on; the rest lives in docs/."""
    assert len((REPO / "README.md").read_text().splitlines()) < 150
