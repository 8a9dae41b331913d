"""Where the shipped defaults (rules.yaml, templates/, samples/) are.

They live at the top of the repository (the user's design card); a wheel
carries a copy in mahnwerk/_shipped (pyproject.toml, force-include).
"""

from __future__ import annotations

from pathlib import Path

SHIPPED = ("rules.yaml", "templates", "samples")


def shipped_root() -> Path:
    here = Path(__file__).resolve().parent
    for root in (here / "_shipped", here.parents[1]):
        if (root / "rules.yaml").is_file() and (root / "templates").is_dir():
            return root
    raise FileNotFoundError(
        f"the shipped rules.yaml and templates are missing from {here / '_shipped'}: "
        "reinstall mahnwerk"
    )
