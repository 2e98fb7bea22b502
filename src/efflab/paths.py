"""Where efflab's shipped files are: the configs that come with the package."""

from __future__ import annotations

from pathlib import Path


def configs_root() -> Path:
    return Path(__file__).resolve().parent / "configs"


def resolve_config_path(path: str | None) -> str | None:
    """A config path as given, or relative to the shipped configs (so `configs/moe/tiny.yaml` works
    from any directory after a plain `pip install .`)."""
    if path is None or Path(path).exists():
        return path
    p = Path(path)
    parts = p.parts[1:] if p.parts and p.parts[0] == "configs" else p.parts
    shipped = configs_root().joinpath(*parts)
    return str(shipped) if shipped.exists() else path
