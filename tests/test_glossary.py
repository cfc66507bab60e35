"""The glossary (book/glossary.md) and the library agree on how each term is spelled.

Every entry of the page's ``{glossary}`` block lists its accepted spellings: the term lines themselves
and the names after ``Code:`` in its definition. Wherever the library's docstrings (``hitchhiker/*.py``)
use a term -- matched case-insensitively, with any space, hyphen or underscore (or none) between its
words -- they must use one of those spellings (a capital first letter at the start of a sentence is
fine). So ``Cos mean``, ``bias-energy`` or ``Gumbel softmax`` in a docstring fail this test.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
GLOSSARY = ROOT / "book" / "glossary.md"
LIBRARY = sorted((ROOT / "hitchhiker").glob("*.py"))


def glossary_entries(text: str) -> list[dict]:
    """``[{"terms": [...], "code": [...], "definition": str}]`` from the page's ``{glossary}`` block."""
    block = re.search(r"```\{glossary\}\n(.*?)\n```", text, flags=re.S)
    if block is None:
        raise ValueError("no ```{glossary} block in the page")
    entries, current = [], None
    for line in block.group(1).splitlines():
        if not line.strip():
            continue
        if not line[0].isspace():                      # a term line
            if current is None or current["definition"]:
                current = {"terms": [], "code": [], "definition": ""}
                entries.append(current)
            current["terms"].append(line.strip())
        else:
            current["definition"] += " " + line.strip()
    for entry in entries:
        code = re.search(r"Code:(.*?)(?:\.\s|\.$|$)", entry["definition"])
        entry["code"] = re.findall(r"`([^`]+)`", code.group(1)) if code else []
    return entries


def _words(term: str) -> list[str]:
    """``"CosMean"`` -> ``["Cos", "Mean"]``, ``"EAT-cubic"`` -> ``["EAT", "cubic"]``,
    ``"W1"`` -> ``["W", "1"]``.
    """
    parts = []
    for chunk in re.split(r"[\s_\-]+", term):
        parts += re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z']+|\d+", chunk)
    return parts


def term_pattern(term: str) -> re.Pattern:
    """A term with any (or no) separator between its words, as a whole word, ignoring case."""
    separator = r"[\s_\-]*"
    return re.compile(r"(?<![\w\-.`])" + separator.join(map(re.escape, _words(term))) + r"(?![\w\-])",
                      flags=re.I)


def _fold(spelling: str) -> str:
    spelling = " ".join(spelling.split())
    return spelling[:1].lower() + spelling[1:]


#: What is not prose: literals (``x``), roles (:math:`W_1`, :func:`wasserstein1`), $TeX$, ``.. math::``
#: paragraphs and doctest lines.
NOT_PROSE = re.compile(r"``.*?``|:[\w:]+:`[^`]*`|\$[^$]*\$|\.\. math::.*?(?:\n\s*\n|\Z)"
                       r"|^\s*(?:>>>|\.\.\.) [^\n]*$", flags=re.S | re.M)


def misspellings(entries: list[dict], documents: dict[str, str]) -> list[str]:
    """Each place where a document's prose spells a glossary term in a way the glossary does not list
    (a multi-word term may be hyphenated before a noun: "score-function estimator")."""
    found = []
    documents = {name: NOT_PROSE.sub(" ", text) for name, text in documents.items()}
    for entry in entries:
        allowed = {_fold(s) for s in entry["terms"] + entry["code"]}
        allowed |= {_fold(s.replace(" ", "-")) for s in entry["terms"] if " " in s}
        for term in entry["terms"]:
            if "," in term or not _words(term):
                continue
            pattern = term_pattern(term)
            for name, text in documents.items():
                for match in pattern.finditer(text):
                    if _fold(match.group(0)) not in allowed:
                        found.append(f"{name}: {match.group(0)!r} (the glossary spells it "
                                     f"{' / '.join(entry['terms'] + entry['code'])})")
    return sorted(set(found))


def library_docstrings() -> dict[str, str]:
    """Every module, class and function docstring of the library, joined per file."""
    out = {}
    for path in LIBRARY:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        nodes = [tree] + [n for n in ast.walk(tree)
                          if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
        out[path.relative_to(ROOT).as_posix()] = "\n".join(filter(None, map(ast.get_docstring, nodes)))
    return out


@pytest.fixture(scope="module")
def entries():
    return glossary_entries(GLOSSARY.read_text(encoding="utf-8"))


def test_the_glossary_is_in_the_table_of_contents():
    from check_book import toc_files

    assert "book/glossary" in toc_files(yaml.safe_load((ROOT / "_toc.yml").read_text()))


def test_the_glossary_defines_the_terms_the_book_relies_on(entries):
    terms = {t for e in entries for t in e["terms"]}
    for term in ("EAT", "EAT-cubic", "GSM", "ST", "CosMean", "BiasEnergy", "NoiseEnergy", "relative bias",
                 "bias ratio", "variance ratio", "ELBO", "NELBO", "W1"):
        assert term in terms, term
    codes = {c for e in entries for c in e["code"]}
    assert {"relative_bias", "bias_ratio", "cos_mean", "eat-cubic", "val_nelbo", "test_elbo"} <= codes


def test_the_code_names_exist():
    """The registry names, metric names and results columns the glossary cites are the library's."""
    import hitchhiker
    from hitchhiker.diagnostics import METRICS
    from hitchhiker.metrics import GRADIENT_QUALITY_METRICS

    entries = glossary_entries(GLOSSARY.read_text(encoding="utf-8"))
    for entry in entries:
        for name in entry["code"]:
            if name.startswith("hitchhiker."):
                obj = hitchhiker
                for part in name.split(".")[1:]:
                    assert hasattr(obj, part.split("(")[0]), name
                    obj = getattr(obj, part.split("(")[0])
    assert {"cos_mean", "relative_bias", "relative_variance"} <= set(METRICS)
    assert {"CosMean", "CosSample", "BiasEnergy", "NoiseEnergy"} <= set(GRADIENT_QUALITY_METRICS)
    registry = {c for e in entries for c in e["code"] if c in hitchhiker.METHODS}
    assert registry >= {"eat-cubic", "eat-sigmoid", "gsm", "st-cubic", "st-sigmoid", "score", "exact"}


def test_the_checker_finds_a_misspelling(entries):
    documents = {"good": "CosMean and cos_mean, EAT-cubic, eat-cubic; Gumbel-softmax. BiasEnergy. "
                         "A score-function estimator, :math:`W_1`, ``cos-mean``.",
                 "bad": "the Cos mean, a bias-energy, a Gumbel softmax and EAT cubic"}
    found = misspellings(entries, documents)
    assert not [f for f in found if f.startswith("good")], found
    assert len([f for f in found if f.startswith("bad")]) == 4, found


def test_the_library_spells_every_glossary_term_as_the_glossary_does(entries):
    found = misspellings(entries, library_docstrings())
    assert not found, "\n".join(found)
