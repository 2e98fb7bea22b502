"""User-facing errors. Anything raised as UserError is bad input: the CLI prints it and exits 2."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user. Carries every problem found, so one message can name them all."""

    def __init__(self, problems: str | list[str], *, header: str | None = None):
        if isinstance(problems, str):
            problems = [problems]
        self.problems = [p for p in problems if p]
        self.header = header
        super().__init__(self.message)

    @property
    def message(self) -> str:
        if len(self.problems) == 1 and not self.header:
            return self.problems[0]
        head = self.header or f"{len(self.problems)} problems"
        return head + ":\n" + "\n".join(f"  - {p}" for p in self.problems)


class Problems:
    """Collects problems; `raise_if_any()` raises one UserError naming all of them."""

    def __init__(self, header: str | None = None):
        self.items: list[str] = []
        self.header = header

    def add(self, msg: str) -> None:
        self.items.append(msg)

    def extend(self, msgs) -> None:
        self.items.extend(msgs)

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self) -> None:
        if self.items:
            raise UserError(list(self.items), header=self.header)


def suggest(name: str, choices) -> str:
    """' (did you mean: a, b?)' for close names, else ''."""
    import difflib

    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.5)
    return f" (did you mean: {', '.join(close)}?)" if close else ""


SI_SUFFIXES = {"K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12, "P": 1e15}  # as `efflab list` prints sizes


def parse_count(text: str | float | int, what: str = "value") -> float:
    """Parse '1e12', '15.6e12', '2_000', '3.8e25', '15.6T', '2M', '500k' into a float (SI suffixes
    K, M, B or G, T, P; case-insensitive). Raises UserError on junk."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        v = float(text)
    else:
        s = str(text).strip().replace("_", "").replace(",", "")
        scale = 1.0
        if s[-1:].upper() in SI_SUFFIXES and len(s) > 1:
            scale, s = SI_SUFFIXES[s[-1].upper()], s[:-1]
        try:
            v = float(s) * scale
        except ValueError:
            raise UserError(
                f"{what}: {text!r} is not a number (examples: 1e12, 15.6e12, 15.6T, 2M, 2000)"
            ) from None
    if v != v or v in (float("inf"), float("-inf")):
        raise UserError(f"{what}: {text!r} is not a finite number (examples: 1e12, 15.6e12, 15.6T, 2000)")
    return v


class RunFailed(Exception):
    """A run stopped for a reason that is neither a bug nor bad input (e.g. the loss diverged).
    The CLI prints the message (no traceback) and exits 1; the run directory says `status: failed`."""


class DamagedRun(UserError):
    """A run directory whose files contradict each other or cannot be read (torn, garbled, truncated).

    Bad input (exit 2): the message names the directory, the file and what is wrong with it."""
