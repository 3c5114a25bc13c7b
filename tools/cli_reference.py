"""docs/cli.md, the command-line reference, generated from the typer app (ftcompile/cli.py) so that it says what
`--help` says.

Every command in the order the app declares them; its arguments and options grouped by their help panels in the
order the command first uses each panel (as `--help` shows them); each with its type, default (or "required"),
environment variable and help text; the exit codes from the app's own help. Nothing here is typed by hand but the
headings: change a help text in cli.py, then run `make docs` (tests/test_generated_docs.py fails while docs/cli.md
is stale).
Usage: python tools/cli_reference.py            print the reference
       python tools/cli_reference.py --write    write docs/cli.md
"""
import inspect
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "cli.md"
REGENERATE = "make docs (or: python tools/cli_reference.py --write)"


def _md(text: str) -> str:
    """Help text as one Markdown table cell: one line, pipes, asterisks and angle brackets escaped."""
    text = " ".join(text.split())
    return text.replace("|", r"\|").replace("*", r"\*").replace("<", "&lt;")


def _paragraphs(doc: str) -> str:
    """A docstring's paragraphs, each joined into one line."""
    return "\n\n".join(" ".join(p.split()) for p in inspect.cleandoc(doc).split("\n\n"))


def _is_argument(param) -> bool:
    return not param.opts[0].startswith("-")


TYPES = {"STRING": "text", "TEXT": "text", "INTEGER": "integer", "FLOAT": "number", "PATH": "path",
         "BOOLEAN": "flag"}


def _type(param, ctx) -> str:
    """The kind of value, from click's type name (the same whichever typer renders the help)."""
    if getattr(param, "is_flag", False):
        return "flag"
    name = getattr(param.type, "name", "text").upper()
    shown = TYPES.get(name, name.lower())
    return f"{shown} ..." if param.nargs == -1 else shown


def _default(param) -> str:
    if param.required:
        return "required"
    if getattr(param, "is_flag", False):
        return "off" if not param.default else "on"
    if param.default is None:
        return ""
    value = param.default
    return f"`{value:g}`" if isinstance(value, float) else f"`{value}`"


def _name(param) -> str:
    if _is_argument(param):
        return f"`{param.name.upper()}`" + (" ..." if param.nargs == -1 else "")
    return ", ".join(f"`{o}`" for o in [*param.opts, *param.secondary_opts])


def _usage(name: str, command) -> str:
    args = [p.name.upper() + ("..." if p.nargs == -1 else "") if p.required else f"[{p.name.upper()}]"
            for p in command.params if _is_argument(p)]
    return " ".join(["ftcompile", name, "[OPTIONS]", *args])


def _panels(command) -> dict:
    """{panel: [params]}: arguments first (typer's "Arguments"), then each panel in the order of first use."""
    panels: dict = {}
    for p in command.params:
        if getattr(p, "hidden", False):
            continue
        panel = p.rich_help_panel or ("Arguments" if _is_argument(p) else "Options")
        panels.setdefault(panel, []).append(p)
    return dict(sorted(panels.items(), key=lambda kv: kv[0] != "Arguments"))


def _param_table(params, ctx) -> list[str]:
    kind = "argument" if all(_is_argument(p) for p in params) else "option"
    lines = [f"| {kind} | type | default | description |", "| --- | --- | --- | --- |"]
    for p in params:
        help_text = p.help or ""
        if p.envvar:
            help_text += f" Environment variable: {p.envvar}."
        lines.append(f"| {_name(p)} | {_type(p, ctx)} | {_default(p)} | {_md(help_text)} |")
    return lines


def _exit_codes(app_help: str) -> list[str]:
    """The app help's "Exit codes: 0 pass, 1 gate failed, ..." as a table (the one place they are written)."""
    found = re.search(r"Exit codes:\s*(.+?)\.?\s*$", app_help, re.S)
    if not found:
        raise SystemExit("error: ftcompile/cli.py's app help has no 'Exit codes: ...' sentence to document; "
                         "add it back or teach tools/cli_reference.py where they are.")
    rows = [item.strip().split(" ", 1) for item in found.group(1).split(",")]
    return ["| exit code | meaning |", "| --- | --- |", *(f"| {code} | {meaning} |" for code, meaning in rows)]


def render() -> str:
    """The whole reference as Markdown."""
    import typer

    from ftcompile.cli import app

    group = typer.main.get_command(app)
    root = typer.Context(group, info_name="ftcompile")
    summary = group.help.split("\n\n")[0]
    lines = [f"<!-- generated from ftcompile/cli.py by tools/cli_reference.py; do not edit: {REGENERATE} -->",
             "# Command-line reference", "", _md(summary), "",
             "Every command takes `--help`. Options are grouped as `--help` groups them.", "",
             "## Exit codes", "", *_exit_codes(group.help), "",
             "## Options of `ftcompile` itself", "", *_param_table(group.params, root), "",
             "## Commands", "", "| command | what it does |", "| --- | --- |"]
    commands = list(group.commands.items())
    for name, command in commands:
        lines.append(f"| [`{name}`](#ftcompile-{name}) | {_md(_paragraphs(command.help).split(chr(10))[0])} |")
    for name, command in commands:
        ctx = typer.Context(command, info_name=name, parent=root)
        lines += ["", f"## ftcompile {name}", "", "```", _usage(name, command), "```", "",
                  _paragraphs(command.help)]
        for panel, params in _panels(command).items():
            lines += ["", f"### {panel}", "", *_param_table(params, ctx)]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    text = render()
    if "--write" in argv:
        OUT.write_text(text, encoding="utf-8")
        print(f"wrote {OUT.relative_to(ROOT)}")
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main(sys.argv[1:])
