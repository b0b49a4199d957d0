"""Prompt sets for profiling and benchmarks: read, validate, and the bundled DiffusionDB subset."""

from __future__ import annotations

import csv
import hashlib
import json
from importlib import resources
from pathlib import Path

from argus.contract import MAX_PROMPT_CHARS  # the request API's limit; a longer line is almost surely not a prompt

DEFAULT_MAX_PROMPTS = 20_000  # profiling runs every level per prompt: more is a mistake unless asked for


class PromptSetError(ValueError):
    """A prompt set cannot be used; the message names the file (and line) and the problem."""


def bundled_prompts_path() -> Path:
    """The 300 DiffusionDB prompts shipped with Argus (CC0-1.0, see data/prompts/README.md)."""
    return Path(str(resources.files("argus") / "data" / "prompts" / "diffusiondb_300.txt"))


def load_prompts(path: str | Path, max_prompts: int = DEFAULT_MAX_PROMPTS, limit: int | None = None) -> list[str]:
    """Prompts from .txt (one per line), .tsv (a `Prompt` column) or .jsonl (a `prompt` field).

    Blank lines in .txt are skipped; an empty set, a prompt over MAX_PROMPT_CHARS or more than
    `max_prompts` prompts (after `limit`) is a PromptSetError naming the file.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PromptSetError(f"{p}: prompt file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise PromptSetError(f"{p}: cannot read prompts ({e})") from None
    rows: list[tuple[int, str]] = []
    if p.suffix == ".tsv":
        reader = csv.DictReader(text.splitlines(), delimiter="\t")
        if "Prompt" not in (reader.fieldnames or []):
            raise PromptSetError(f"{p}: TSV needs a 'Prompt' column")
        rows = [(n, r["Prompt"] or "") for n, r in enumerate(reader, 2)]
    elif p.suffix == ".jsonl":
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise PromptSetError(f"{p}:{n}: not JSON ({e.msg})") from None
            if not isinstance(rec, dict) or not isinstance(rec.get("prompt"), str):
                raise PromptSetError(f"{p}:{n}: needs a string 'prompt' field")
            rows.append((n, rec["prompt"]))
    else:
        rows = [(n, line) for n, line in enumerate(text.splitlines(), 1)]
    prompts = []
    for n, s in rows:
        s = s.strip()
        if not s:
            continue
        if len(s) > MAX_PROMPT_CHARS:
            raise PromptSetError(f"{p}:{n}: prompt of {len(s)} characters (max {MAX_PROMPT_CHARS})")
        prompts.append(s)
    if limit is not None:
        prompts = prompts[:limit]
    if not prompts:
        raise PromptSetError(f"{p}: no prompts in the file")
    if len(prompts) > max_prompts:
        raise PromptSetError(f"{p}: {len(prompts)} prompts exceed the limit of {max_prompts} "
                             "(use --limit to take the first ones, or --max-prompts to raise the limit)")
    return prompts


def prompts_sha256(prompts: list[str]) -> str:
    """Identity of a prompt list (order matters): resuming a profile requires the same list."""
    h = hashlib.sha256()
    for s in prompts:
        h.update(s.encode("utf-8") + b"\n")
    return h.hexdigest()
