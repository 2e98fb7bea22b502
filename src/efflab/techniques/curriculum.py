"""curriculum technique (method card to come with its recipe)."""

from __future__ import annotations

from efflab.config import Section


class CurriculumConfig(Section):
    """The `curriculum` config section."""
