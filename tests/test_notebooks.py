"""Chapter notebooks: paired with their py:percent twins, committed without outputs, and
installing lmcore from the one repository address written in _config.yml."""

import json
import re

import jupytext
import pytest
import yaml

from tests.conftest import ROOT

CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))
TWINS = sorted((ROOT / "chapters").glob("*.py"))


def repository_url() -> str:
    return yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]


def cells(nb) -> list[tuple[str, str, list]]:
    """(type, source, tags) of each cell, the parts that the two files must agree on."""
    return [(c.cell_type, c.source.strip(), sorted(c.metadata.get("tags", []))) for c in nb.cells]


def test_there_are_chapters_and_every_one_has_a_twin():
    assert CHAPTERS, "no chapter notebooks found in chapters/"
    assert [p.stem for p in CHAPTERS] == [p.stem for p in TWINS]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_notebook_and_twin_are_in_sync(path):
    notebook = jupytext.read(path)
    twin = jupytext.read(path.with_suffix(".py"))
    assert cells(notebook) == cells(twin), (
        f"{path.name} and its .py twin differ; edit the .py and run `make sync`"
    )


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_notebook_is_committed_without_outputs(path):
    raw = json.loads(path.read_text())
    for cell in raw["cells"]:
        if cell["cell_type"] == "code":
            assert not cell.get("outputs") and cell.get("execution_count") is None, (
                f"{path.name} holds outputs; strip them (`make sync` rebuilds it from the twin)"
            )


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_first_cell_installs_lmcore_from_the_configured_repository(path):
    first = next(c for c in jupytext.read(path).cells if c.cell_type == "code")
    assert f'REPOSITORY = "{repository_url()}"' in first.source
    assert 'f"lmcore @ git+{REPOSITORY}"' in first.source


def test_readme_colab_badges_point_at_the_committed_notebooks():
    readme = (ROOT / "README.md").read_text()
    owner_repo = repository_url().removeprefix("https://github.com/")
    for path in CHAPTERS:
        link = (
            f"https://colab.research.google.com/github/{owner_repo}/blob/main/chapters/{path.name}"
        )
        assert link in readme, f"README has no Colab badge for {path.name}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_is_in_the_table_of_contents(path):
    toc = (ROOT / "book" / "_toc.yml").read_text()
    assert f"chapters/{path.stem}" in toc


def test_saving_in_jupyterlab_updates_the_twin(tmp_path):
    """JupyterLab saves through jupytext's contents manager (its server extension), which
    writes each chapter's paired .py twin along with the notebook."""
    manager_module = pytest.importorskip("jupyter_server.services.contents.filemanager")
    from jupytext.sync_contentsmanager import build_sync_jupytext_contents_manager_class

    chapter = CHAPTERS[0]
    for path in (chapter, chapter.with_suffix(".py")):
        (tmp_path / path.name).write_text(path.read_text())
    manager_class = build_sync_jupytext_contents_manager_class(manager_module.FileContentsManager)
    manager = manager_class(root_dir=str(tmp_path))
    model = manager.get(chapter.name)
    model["content"].cells[0].source += "\n\nA note written in JupyterLab."
    manager.save(model, chapter.name)
    assert (
        "# A note written in JupyterLab."
        in (tmp_path / chapter.with_suffix(".py").name).read_text()
    )


# Bold text in the chapters that is emphasis or a label, not a term being defined.
NOT_TERMS = {
    "in this chapter you will", "whole plays", "keep", "read", "write", "measuring it",
    "relu with $n(0, 1)$", "relu with xavier", "tanh with $n(0, 0.01^2)$", "tanh with $n(0, 1)$",
    "the two numbers cannot be compared",
    "sum the incoming gradient over the axes that broadcasting stretched",
}  # fmt: skip


def glossary_terms() -> list[str]:
    text = (ROOT / "book" / "glossary.md").read_text()
    block = text.split("```{glossary}")[1].split("```")[0]
    return [line.strip().lower() for line in block.splitlines() if line and not line[0].isspace()]


def defines(term: str, entries: list[str]) -> bool:
    """A glossary entry names the term (also in the plural, or as the start of a longer name)."""
    singular = term[:-1] if term.endswith("s") else term
    return any(entry in (term, singular) or entry.startswith(term + " ") for entry in entries)


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_every_bold_term_is_in_the_glossary(path):
    entries = glossary_terms()
    assert all("Chinese:" in block for block in (ROOT / "book" / "glossary.md").read_text()
               .split("```{glossary}")[1].split("```")[0].strip().split("\n\n"))  # fmt: skip
    missing = []
    for cell in jupytext.read(path.with_suffix(".py")).cells:
        if cell.cell_type != "markdown":
            continue
        for bold in re.findall(r"\*\*([^*]+)\*\*", cell.source):
            term = " ".join(bold.split()).rstrip(".:").lower()
            is_term = term and not re.fullmatch(r"\d+", term) and term not in NOT_TERMS
            if is_term and not defines(term, entries):
                missing.append(bold)
    assert not missing, f"{path.stem}: bold terms missing from book/glossary.md: {missing}"


def citations_in(text: str) -> set[str]:
    """The keys of every {cite}`...` (and {cite:p}/{cite:t}) role in a text."""
    found = re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", text)
    return {key.strip() for group in found for key in group.split(",")}


def test_every_bibliography_entry_is_cited_and_every_citation_has_an_entry():
    entries = set(re.findall(r"^@\w+\{([^,\s]+),", (ROOT / "book" / "references.bib").read_text(),
                             re.MULTILINE))  # fmt: skip
    pages = [*TWINS, *(ROOT / "book").glob("*.md")]
    cited = set().union(*(citations_in(p.read_text()) for p in pages))
    assert not entries - cited, f"book/references.bib entries no page cites: {entries - cited}"
    assert not cited - entries, f"citations with no entry in book/references.bib: {cited - entries}"


# -- numbers in the prose --------------------------------------------------------------
# A number the prose states about a run (a decimal, or a count with a unit such as %, ×,
# nats, bits, seconds) must be checked: asserted in a code cell near it (the same literal,
# or a literal range around it), or said to be this run's / printed / asserted in its own
# sentence. Numbers that are definitions or arithmetic, not results, are listed here.
DATA_FACTS = ["4.1 million", "346,000"]  # the training and validation plays, asserted in ch. 1
NOT_RESULTS = {
    "01_text_and_tokens": ["1.1 million of tiny-shakespeare"],
    "04_recurrent_networks": [
        "3.1 million predicted characters",  # 1,500 steps of 32 × 64
        "512 windows, 6.1 million",  # 12,000 steps of 512
    ],
    "02_ngram_language_models": [
        "about 5 %, of the probability",  # arithmetic: 4/78
        "the other 95 %",
        "last 10 % of the training text",  # how the held-out part is chosen
        "first 90 %",
    ],
}
UNIT = (  # "×" between two numbers is a shape, not a factor
    r"(?:%|×(?!\s?\d)|x\b(?!\s?\d)|times\b|nats?\b|bits?\b|(?<=\s)m?s\b|seconds?\b|tokens/s|GB/s"
    r"|TFLOP/s|MiB|GiB)"
)
PROSE_NUMBER = re.compile(r"(?<![\w.$\\{])(\d[\d,]*\.\d+|\d[\d,]*(?=\s?" + UNIT + "))")
SCALES = {"million": 1e6, "thousand": 1e3, "billion": 1e9, "%": 1e-2}
CHECKED_WORDS = ("assert", "this run", "printed", "prints", "cell below", "above")


def literals(code: str) -> list[list[float]]:
    """The numeric literals of each assert line of some code."""
    lines = [line for line in code.splitlines() if "assert" in line]
    found = [re.findall(r"(?<![\w.])(\d[\d_]*(?:\.\d+)?(?:e-?\d+)?)", line) for line in lines]
    return [[float(x.replace("_", "")) for x in row] for row in found]


def is_checked(value: float, after: str, asserts: list[list[float]]) -> bool:
    """The value (scaled by the word after it) is a literal of an assert, or lies between
    two literals of one."""
    scale = next((f for word, f in SCALES.items() if after.lstrip().startswith(word)), 1.0)
    candidates = {value, value * scale}
    for row in asserts:
        if any(abs(c - x) <= 1e-9 * max(1.0, abs(x)) for c in candidates for x in row):
            return True
        if any(a < c < b for c in candidates for a in row for b in row):
            return True
    return False


def unchecked_numbers(path) -> list[str]:
    cells = jupytext.read(path).cells
    allowed = NOT_RESULTS.get(path.stem, []) + DATA_FACTS
    missing = []
    for i, cell in enumerate(cells):
        if cell.cell_type != "markdown":
            continue
        text = re.sub(
            r"\$\$.*?\$\$|\$[^$]*\$|`[^`]*`|^\|.*\|$", " ", cell.source, flags=re.S | re.M
        )
        near = "\n".join(c.source for c in cells[max(0, i - 3) : i + 4] if c.cell_type == "code")
        asserts = literals(near)
        for sentence in re.split(r"(?<=[.;!?])\s+", " ".join(text.split())):
            if any(word in sentence.lower() for word in CHECKED_WORDS):
                continue
            for match in PROSE_NUMBER.finditer(sentence):
                context = sentence[max(0, match.start() - 40) : match.end() + 40]
                if any(phrase in context for phrase in allowed):
                    continue
                literal = match.group(1).replace(",", "")
                if literal in near:  # a setting the code next to it uses
                    continue
                if not is_checked(float(literal), sentence[match.end() :], asserts):
                    missing.append(f"{match.group(0)!r} in: {sentence[:120]}")
    return missing


@pytest.mark.parametrize("path", TWINS, ids=lambda p: p.stem)
def test_every_number_in_the_prose_is_asserted_or_said_to_be_this_runs(path):
    missing = unchecked_numbers(path)
    assert not missing, f"{path.stem}: numbers neither asserted nor worded as this run's:\n" + (
        "\n".join(missing)
    )
