"""The generated docs stay what their generators make: docs/cli.md (tools/cli_reference.py, from the typer app),
benchmarks/RESULTS.md and the results blocks of README.md and docs/ (benchmarks/tables.py, from the results JSON);
and RESULTS.md's labels stay true to git (each section names the commits that wrote its files and the default
changes it predates)."""
import importlib.util
import json
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _module(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tables():
    return _module(ROOT / "benchmarks" / "tables.py")


@pytest.fixture(scope="module")
def cli_reference():
    return _module(ROOT / "tools" / "cli_reference.py")


def test_cli_reference_is_the_one_the_typer_app_generates(cli_reference):
    text = cli_reference.render()
    assert (ROOT / "docs" / "cli.md").read_text(encoding="utf-8") == text, (
        f"docs/cli.md is stale (ftcompile/cli.py changed): run {cli_reference.REGENERATE}")
    import typer

    from ftcompile.cli import app

    group = typer.main.get_command(app)
    for name, command in group.commands.items():
        section = text.split(f"\n## ftcompile {name}\n", 1)[1].split("\n## ", 1)[0]
        for param in command.params:  # every option in its command's section, under its own panel
            shown = f"`{param.opts[0]}`" if param.opts[0].startswith("-") else f"`{param.name.upper()}`"
            panel = param.rich_help_panel or "Arguments"
            assert f"### {panel}\n" in section, f"{name}: no {panel!r} panel in docs/cli.md"
            assert shown in section.split(f"### {panel}\n", 1)[1].split("\n### ", 1)[0], (name, shown, panel)
    assert "| 1 | gate failed |" in text and "`--version`" in text


def test_results_md_is_the_one_the_results_json_generate(tables):
    assert (ROOT / "benchmarks" / "RESULTS.md").read_text(encoding="utf-8") == tables.results_md(), (
        f"benchmarks/RESULTS.md is stale (a results file or a label in benchmarks/tables.py changed): run "
        f"{tables.REGENERATE}")


# marked blocks that other tests own: the error catalogue (tests/runtime/test_cli.py) and the report schemas'
# field tables, each closed by <!-- /fields --> (tests/test_docs_examples.py)
OTHER_BLOCKS = {("docs/troubleshooting.md", "bad-inputs"), ("docs/validation.md", "fields")}


def test_every_generated_block_in_the_docs_is_the_one_its_function_writes(tables):
    assert ("README.md", "results") in tables.DOC_BLOCKS
    for (name, marker), make in tables.DOC_BLOCKS.items():
        block = tables.block_of((ROOT / name).read_text(encoding="utf-8"), marker)
        assert block is not None, f"{name} has no <!-- {marker} --> ... <!-- /{marker} --> block"
        assert block == make().strip(), f"{name}'s {marker} block is stale: run {tables.REGENERATE}"
    # every marked block is generated and checked: one left behind when its DOC_BLOCKS entry goes would be typed text
    # that looks generated
    marked = {(str(path.relative_to(ROOT)), m) for path in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]
              for m in re.findall(r"<!-- /([^>]+?) -->", path.read_text(encoding="utf-8"))}
    assert not marked - set(tables.DOC_BLOCKS) - OTHER_BLOCKS, "marked blocks no generator writes"


def test_import_coverage_md_is_the_one_the_results_json_generate():
    bench = _module(ROOT / "benchmarks" / "bench_import_coverage.py")
    table = bench.render_table(json.loads((RESULTS / "import_coverage.json").read_text()))
    assert (ROOT / "docs" / "import_coverage.md").read_text(encoding="utf-8") == table, (
        "docs/import_coverage.md is stale: run python benchmarks/bench_import_coverage.py --table "
        "docs/import_coverage.md")


def test_every_results_file_is_in_a_section_and_every_plot_is_a_plot(tables):
    named = [f for s in tables.SECTIONS for f in s.files]
    on_disk = {str(p.relative_to(RESULTS)) for p in RESULTS.rglob("*") if p.suffix in (".json", ".png")}
    assert not on_disk - set(named), f"results files no section of benchmarks/tables.py shows: {on_disk - set(named)}"
    assert not set(named) - on_disk, f"sections name files that do not exist: {set(named) - on_disk}"
    # the PennFudan photographs may not be reposted (docs/data.md): only plots are committed and linked
    assert not [f for f in on_disk if re.search(r"_(boxes|masks)\.png$", f)]
    linked = set(re.findall(r"\]\(results/([^)]+)\)", tables.results_md()))
    assert linked == {f for f in named if f.endswith(".png")}


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout


def test_each_section_names_the_commits_that_wrote_its_files_and_the_defaults_they_predate(tables):
    try:
        shallow = _git("rev-parse", "--is-shallow-repository").strip() == "true"
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    if shallow:
        pytest.skip("a shallow clone: the commits the labels name are not all here")
    last: dict = {}  # file -> the newest commit that changed it (git log lists newest first)
    commit = None
    for line in _git("log", "--format=@%H", "--name-only", "--", "benchmarks/results").splitlines():
        if line.startswith("@"):
            commit = line[1:]
        elif line.startswith("benchmarks/results/"):
            last.setdefault(line.removeprefix("benchmarks/results/"), commit)
    after = {}  # change commit -> every commit that contains it
    for change in {c.commit for c in tables.CHANGES.values()}:
        full = _git("rev-parse", change).strip()
        after[change] = {full, *_git("rev-list", "--ancestry-path", f"{full}..HEAD").split()}
    for section in tables.SECTIONS:
        written = [c for c, _ in section.written]
        for name in section.files:
            wrote = last.get(name)
            assert wrote, f"{name} is not committed: commit it, then name the commit in {section.title!r}"
            assert any(wrote.startswith(c) for c in written), (
                f"{name} was last written by {wrote[:7]}, which section {section.title!r} of benchmarks/tables.py does "
                f"not name: say there what that run measured, on which data and under which defaults")
            for key in section.predates:
                assert wrote not in after[tables.CHANGES[key].commit], (
                    f"{section.title!r} says {name} predates {key} ({tables.CHANGES[key].commit}), but {wrote[:7]} "
                    f"came after it")
