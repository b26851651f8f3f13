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


def test_math_is_served_by_the_vendored_mathjax(site):
    chapter = (site / "chapters" / "01_text_and_tokens.html").read_text()
    assert re.search(r'<script[^>]+src="[^"]*_static/mathjax/tex-mml-chtml\.js', chapter)
    assert (site / "_static" / "mathjax" / "tex-mml-chtml.js").is_file()
    assert list(
        (site / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").glob("*.woff")
    )
    assert r"\(" in chapter or "math notranslate" in chapter  # the chapter has math to render


def test_chapter_pages_have_a_colab_button_for_the_committed_notebook(site):
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    owner_repo = url.removeprefix("https://github.com/")
    colab = f"https://colab.research.google.com/github/{owner_repo}/blob/main/chapters/01_text_and_tokens.ipynb"
    assert colab in (site / "chapters" / "01_text_and_tokens.html").read_text()


def test_citations_resolve_to_the_bibliography(site):
    chapter = (site / "chapters" / "01_text_and_tokens.html").read_text()
    assert "bibliography.html#id" in chapter or "bibliography.html#" in chapter
    assert "Sennrich" in (site / "book" / "bibliography.html").read_text()


def test_executed_chapter_shows_its_figures(site):
    chapter = site / "chapters" / "01_text_and_tokens.html"
    images = re.findall(r'<img[^>]+src="([^"]+\.png)"', chapter.read_text())
    assert len(images) >= 3
    assert all((chapter.parent / src).resolve().is_file() for src in images)
