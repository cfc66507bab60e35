"""CITATION.cff, references.bib and the README cite the same published paper, and the software's version."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def bib_entry(key: str) -> dict:
    """The fields of one entry of book/references.bib (flat ``name = {value}`` fields only)."""
    text = (ROOT / "book" / "references.bib").read_text(encoding="utf-8")
    body = re.search(r"@\w+\{" + re.escape(key) + r",(.*?)\n\}", text, flags=re.S)
    assert body, f"{key} is not in references.bib"
    return {name.lower(): " ".join(value.split())
            for name, value in re.findall(r"(\w+)\s*=\s*\{(.*?)\},?\s*$", body.group(1), flags=re.M | re.S)}


def test_citation_cff_cites_the_published_paper_and_this_version():
    import hitchhiker

    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software"
    assert str(cff["version"]) == hitchhiker.__version__
    paper, bib = cff["preferred-citation"], bib_entry("ibrahim2026hitchhiker")
    assert paper["type"] == "conference-paper" and paper["year"] == int(bib["year"]) == 2026
    assert paper["title"] == bib["title"]
    assert "43rd International Conference on Machine Learning" in paper["collection-title"]
    assert "43rd International Conference on Machine Learning" in bib["booktitle"]
    bib_authors = [a.strip() for a in bib["author"].split(" and ")]
    assert [f"{a['family-names']}, {a['given-names']}" for a in paper["authors"]] == bib_authors


def test_the_readme_cites_the_same_entry():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## How to cite"):]
    assert "@inproceedings{ibrahim2026hitchhiker," in section and "arXiv preprint" not in section
    assert "43rd International Conference on Machine Learning" in section and "CITATION.cff" in section
