"""The book builds clean, with warnings as errors, in the quick profile, and the site it makes
is self-contained: local MathJax, no script or stylesheet from another host, Colab buttons."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

JUPYTER_BOOK = Path(sys.executable).with_name("jupyter-book")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("book")  # a fresh output folder is a clean build
    cmd = [
        str(JUPYTER_BOOK), "build", str(ROOT), "--toc", str(ROOT / "book" / "_toc.yml"),
        "--path-output", str(out), "-W", "-n", "--keep-going",
    ]  # fmt: skip
    env = {**os.environ, "LMCORE_PROFILE": "quick"}
    run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 0, f"book build failed:\n{run.stdout[-6000:]}\n{run.stderr[-6000:]}"
    return out / "_build" / "html"


def pages(site: Path) -> list[Path]:
    return sorted(site.rglob("*.html"))


def test_every_toc_entry_has_a_page(site):
    toc = yaml.safe_load((ROOT / "book" / "_toc.yml").read_text())
    files = [toc["root"]] + [c["file"] for part in toc["parts"] for c in part["chapters"]]
    for name in files:
        assert (site / f"{name}.html").is_file(), f"no page for {name}"


def test_no_page_loads_a_script_or_stylesheet_from_another_host(site):
    remote = re.compile(r"<(?:script|link)[^>]+(?:src|href)=\"(?:https?:)?//[^\"]+\"[^>]*>")
    for page in pages(site):
        found = [
            tag
            for tag in remote.findall(page.read_text())
            if "stylesheet" in tag or "<script" in tag
        ]
        assert not found, f"{page.relative_to(site)} loads from another host: {found[:3]}"


CHAPTERS = sorted(p.stem for p in (ROOT / "chapters").glob("*.ipynb"))


def test_mathjax_is_vendored(site):
    assert (site / "_static" / "mathjax" / "tex-mml-chtml.js").is_file()
    fonts = site / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2"
    assert list(fonts.glob("*.woff"))


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_page_renders_math_with_the_vendored_mathjax(site, chapter):
    page = (site / "chapters" / f"{chapter}.html").read_text()
    assert re.search(r'<script[^>]+src="[^"]*_static/mathjax/tex-mml-chtml\.js', page)
    assert "math notranslate" in page  # the chapter has math for MathJax to render


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_page_has_a_colab_button_for_the_committed_notebook(site, chapter):
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    owner_repo = url.removeprefix("https://github.com/")
    colab = (
        f"https://colab.research.google.com/github/{owner_repo}/blob/main/chapters/{chapter}.ipynb"
    )
    assert colab in (site / "chapters" / f"{chapter}.html").read_text()


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_citations_resolve_to_the_bibliography(site, chapter):
    page = (site / "chapters" / f"{chapter}.html").read_text()
    assert "bibliography.html#" in page
    assert "Sennrich" in (site / "book" / "bibliography.html").read_text()


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_executed_chapter_shows_its_figures(site, chapter):
    page = site / "chapters" / f"{chapter}.html"
    images = re.findall(r'<img[^>]+src="([^"]+\.png)"', page.read_text())
    assert len(images) >= 2
    assert all((page.parent / src).resolve().is_file() for src in images)


def test_api_reference_documents_the_package(site):
    page = (site / "book" / "api.html").read_text()
    for name in ("lmcore.autograd.Tensor", "lmcore.nn.module.Module", "lmcore.optim.optimizers.AdamW",
                 "lmcore.models.gpt.GPT", "lmcore.tokenizers.base.Tokenizer", "lmcore.cuda.ops"):  # fmt: skip
        assert f'id="{name}' in page, f"the API reference lacks {name}"
