"""The README and docs/ keep up with the code (fast: no cluster, no data).

The README is what a newcomer reads first and must keep the two setup
commands, the second being exactly what ``.ci/run`` runs; the reference
pages in ``docs/`` must name every CLI option, job-file key and module, and
every relative link (and ``#anchor``) between them must resolve.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline.cli import _parser
from pipeline.jobfile import KEYS

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, ROOT / "jobs" / "README.md", *sorted(DOCS.glob("*.md"))]

_FENCE = re.compile(r"^```.*?^```", re.M | re.S)
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$", re.M)


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _prose(path: Path) -> str:
    """The page without its fenced code blocks."""
    return _FENCE.sub("", _text(path))


def _bash_lines(path: Path) -> list[str]:
    blocks = re.findall(r"^```bash\n(.*?)^```", _text(path), re.M | re.S)
    return [line.strip() for block in blocks for line in block.splitlines()]


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"`|\*\*|\*", "", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for _, title in _HEADING.findall(_prose(path)):
        slug = _slug(title)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _train_options() -> set[str]:
    commands = next(action for action in _parser()._actions if hasattr(action, "choices") and action.choices)
    train = commands.choices["train"]
    return {option for action in train._actions for option in action.option_strings if option.startswith("--")}


def test_readme_test_command_is_what_ci_runs():
    ci = _text(ROOT / ".ci" / "run").splitlines()
    command = next(line.strip() for line in reversed(ci) if line.startswith("python3.11 -m venv"))
    assert command in _bash_lines(README), "the README's test command must be .ci/run's, verbatim"
    assert "-c docker/constraints.txt" in command


def test_readme_keeps_the_demo_command():
    demo = [line for line in _bash_lines(README) if line.endswith(".venv/bin/pipeline demo")]
    assert demo == [
        "python3.11 -m venv .venv && .venv/bin/pip install -q -c docker/constraints.txt -e . && .venv/bin/pipeline demo"
    ]


def test_readme_keeps_the_development_loop():
    text = _text(README)
    assert "\n## Development\n" in text
    development = text.split("\n## Development\n", 1)[1]
    assert '.venv/bin/python -m pytest -m "not cluster and not slow"' in development
    assert "docs/development.md" in development


@pytest.mark.parametrize("page", PAGES, ids=lambda path: str(path.relative_to(ROOT)))
def test_relative_links_resolve(page):
    broken = []
    for target in _LINK.findall(_prose(page)):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target}: no {resolved}")
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            broken.append(f"{target}: no heading #{anchor} in {resolved.name}")
    assert broken == []


def test_readme_links_every_docs_page():
    linked = {(README.parent / target.partition("#")[0]).resolve() for target in _LINK.findall(_prose(README))}
    missing = [page.name for page in sorted(DOCS.glob("*.md")) if page.resolve() not in linked]
    assert missing == []


def _code_words(text: str) -> set[str]:
    """Every word of every inline code span (`--reg λ --alpha α` gives --reg, λ, --alpha, α)."""
    return {word for span in re.findall(r"`([^`\n]+)`", text) for word in re.split(r"[\s|\\,=\[\]]+", span)}


def test_user_guide_lists_every_train_option_and_command():
    guide = _text(DOCS / "user-guide.md")
    words = _code_words(guide)
    missing = sorted(option for option in _train_options() - {"--help"} if option not in words)
    assert missing == [], "add these `pipeline train` options to docs/user-guide.md"
    commands = next(action for action in _parser()._actions if hasattr(action, "choices") and action.choices)
    missing = sorted(name for name in commands.choices if f"pipeline {name}" not in guide)
    assert missing == [], "add these commands to docs/user-guide.md"


def test_jobs_page_lists_every_key_and_its_option():
    table = [line for line in _text(DOCS / "jobs.md").splitlines() if line.startswith("| `")]
    for key, spec in KEYS.items():
        rows = [row for row in table if f"`{key}`" in row]
        assert rows, f"job key {key} is missing from docs/jobs.md"
        flag = spec.flag if spec.flag and spec.flag.startswith("--") else None
        assert flag is None or any(f"`{flag}`" in row for row in rows), f"{key}: option {flag} not in its row"


def test_architecture_names_every_module():
    page = _text(DOCS / "architecture.md")
    modules = sorted(path.name for path in (ROOT / "pipeline").glob("*.py") if not path.name.startswith("__"))
    missing = [name for name in modules if f"`pipeline/{name}`" not in page]
    assert missing == [], "add these modules to the table in docs/architecture.md"


def test_readme_headline_matches_the_performance_table():
    headline = re.search(r"\*\*([\d.]+) s, ([\d.]+x) dask-ml's time and ([\d.]+x) scikit-learn's\*\*", _text(README))
    assert headline, "the README states the end-to-end headline"
    seconds, dask_ml, sklearn = headline.groups()
    rows = [line for line in _text(DOCS / "performance.md").splitlines() if line.startswith("| ours, 2 workers")]
    row = next((row for row in rows if "8M x 32" in row), None)
    assert row is not None, "docs/performance.md keeps the end-to-end table"
    cells = [cell.strip().strip("*") for cell in row.strip("|").split("|")]
    # (the table's median over rounds: "0.21x (0.20–0.23x)" against dask-ml, then the ratio to scikit-learn)
    assert cells[2] == seconds and cells[5].split()[0] == dask_ml and cells[6] == sklearn
