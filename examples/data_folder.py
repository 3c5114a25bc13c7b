"""Where the examples' external data sets are read from: `--data DIR` of each prepare.py (and of
cifar_cnn/run.py), by default ../shared/data beside the repository. docs/data.md says where each data set comes from
and under which terms; the examples never copy it into the repository."""
import sys
from pathlib import Path

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data"


def require(folder: Path, *names: str) -> Path:
    """``folder`` when it holds every one of ``names``; otherwise exit with one line that names what is missing."""
    missing = [name for name in names if not (folder / name).exists()]
    if missing:
        sys.exit(f"error: {folder} has no {', '.join(missing)}; give --data DIR, a folder that holds "
                 f"{' and '.join(names)} (docs/data.md says where each data set comes from).")
    return folder
