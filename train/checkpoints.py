"""What a run leaves on disk so that it can be kept, compared and resumed: the kept
checkpoint of a member, the resume state written every epoch, and the settings that tell
whether a later run is the same one."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch

__all__ = ["recorded_settings", "comparable", "save_checkpoint", "save_resume", "load_resume"]

#: Settings that name files: compared as the files they resolve to (a work folder reached
#: through a link, or named relative to another folder, is the same run).
PATH_SETTINGS = ("csv", "init", "pretrained_backbone", "recognizer", "teacher", "start")


def recorded_settings(cfg, ignore=()) -> dict:
    """A config dataclass as JSON holds it (paths as strings), less the ``ignore`` fields: what a
    run records so that a later run can tell whether it is the same one."""
    keep = {k: v for k, v in asdict(cfg).items() if k not in ignore}
    return json.loads(json.dumps(keep, default=str))


def _merged(defaults: dict, settings: dict) -> dict:
    """``settings`` over ``defaults``, group by group (a setting added to a group since a
    record was made counts as its default)."""
    out = dict(defaults)
    for k, v in settings.items():
        out[k] = _merged(defaults[k], v) if isinstance(v, dict) and isinstance(defaults.get(k), dict) else v
    return out


def comparable(settings: dict, defaults: dict | None = None) -> dict:
    """Settings as two runs compare them: where the run is written (``out``, the folder that
    holds the record) does not count, file settings count as the files they resolve to, and a
    setting added since the record was made counts as its default (``defaults``)."""
    settings = _merged(defaults or {}, settings)
    return {k: (str(Path(v).resolve()) if k in PATH_SETTINGS and v not in (None, "None") else v)
            for k, v in settings.items() if k != "out"}


def save_checkpoint(net, path: Path, input_size: int, **meta) -> None:
    """A member's weights as the gate and ``facegate.models.load_member`` read them."""
    torch.save({"arch": net.arch, "input_size": input_size, "state_dict": net.state_dict(), **meta}, path)


def save_resume(path: Path, state: dict) -> None:
    """Written whole, then moved: a kill mid-write leaves the previous state."""
    partial = path.with_suffix(".partial")
    torch.save(state, partial)
    partial.replace(path)


def load_resume(path: Path, fingerprint: dict, same, log) -> dict | None:
    """The state an interrupted run left at ``path`` (None: none), refused when ``same``
    says another run's settings (``fingerprint``) left it."""
    if not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not same(state.get("fingerprint") or {}):
        raise ValueError(f"{path}: a run with other settings left this; remove it, or resume with the same "
                         f"settings (its settings: {json.dumps(state.get('fingerprint'))}; "
                         f"these: {json.dumps(fingerprint)})")
    log(f"resuming after stage {state['stage']} epoch {state['epoch']} ({path})")
    return state
