"""``python -m ftcompile``: the ``ftcompile`` command, for environments whose scripts folder is not on PATH."""
from ftcompile.cli import main

main()
