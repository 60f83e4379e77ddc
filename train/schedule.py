"""Learning-rate schedules as a pure function of the step (so LambdaLR's saved state is enough to
resume), plus the method stages of multi-stage recipes (JSTG)."""
from __future__ import annotations

import math

from engine.errors import ConfigError


def resolve_stages(sched: dict, steps_per_epoch: float) -> list[dict]:
    """Stages with absolute `start` steps; each stage gives `epochs` or `steps`."""
    out, start = [], 0
    for i, st in enumerate(sched.get("stages") or []):
        if "steps" in st:
            n = int(st["steps"])
        elif "epochs" in st:
            n = int(round(float(st["epochs"]) * steps_per_epoch))
        else:
            raise ConfigError(None, f"schedule stage {i} needs `steps` or `epochs`")
        out.append({**st, "start": start, "steps": n})
        start += n
    return out


def total_stage_steps(stages: list[dict]) -> int:
    return sum(s["steps"] for s in stages)


def stage_at(stages: list[dict], step: int) -> "dict | None":
    """The stage that step `step` (0-based: the update about to happen) belongs to."""
    current = None
    for s in stages:
        if step >= s["start"]:
            current = s
    return current


def lr_factor(sched: dict, base_lr: float, steps_per_epoch: float, max_steps: int):
    """f(step) -> multiplier of the base lr for the update number `step` (0-based)."""
    name = sched.get("name", "constant")
    warm = int(sched.get("warmup_steps", 0) or 0)

    def warmup(step: int) -> float:
        return min(1.0, (step + 1) / warm) if warm > 0 else 1.0

    if name == "constant":
        return lambda step: warmup(step)
    if name == "multistep":
        # CRW converts epoch milestones to iterations and steps the scheduler every iteration.
        ms = [int(round(m * steps_per_epoch)) for m in sched.get("milestones_epochs") or []]
        ms += [int(m) for m in sched.get("milestones") or []]
        gamma = float(sched.get("gamma", 0.1))
        return lambda step: warmup(step) * gamma ** sum(step >= m for m in ms)
    if name == "cosine":
        floor = float(sched.get("min_factor", 0.0))
        return lambda step: warmup(step) * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(step, max_steps) / max(1, max_steps))))
    if name == "stages":
        stages = resolve_stages(sched, steps_per_epoch)
        if not stages:
            raise ConfigError(None, "schedule `stages` lists no stage")

        def f(step: int) -> float:
            st = stage_at(stages, step)
            return warmup(step) * float(st.get("lr", base_lr)) / base_lr
        return f
    raise ConfigError(None, f"unknown schedule {name!r} (known: constant, multistep, cosine, stages)")
