"""The training loop every ``vpr train`` method shares: checkpoints, exact resume, log, loss curve.

A method supplies the modules to save, an optimizer/scheduler and a ``step(it)``
that returns the loss and stats of iteration ``it``; the loop does the rest.
Checkpoint set: ``CKPT`` (the main module's plain state_dict, the layout the
loaders read), ``CKPT.<name>`` for each further module (e.g. ``CKPT.backbone``),
``CKPT.optim`` (optimizer, scheduler, iteration) and ``CKPT.json`` (config, data,
code version). Each file is replaced atomically and the JSON is written last, so a
kill at any moment leaves a loadable set; resume checks the files agree.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from ..errors import VprError
from ..io.files import atomic_write

StepFn = Callable[[int], tuple[torch.Tensor, dict[str, float]]]


def _save_state(module: torch.nn.Module, path: Path) -> None:
    torch.save(module.state_dict(), path)


def code_version() -> str:
    try:
        return (
            subprocess.run(
                ["git", "describe", "--always", "--dirty"],
                capture_output=True,
                text=True,
                cwd=Path(__file__).parent,
                timeout=5,
            ).stdout.strip()
            or "unknown"
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def side_path(out: Path, suffix: str) -> Path:
    return out.with_name(f"{out.name}.{suffix}")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_checkpoint(
    out: Path, modules: dict[str, nn.Module], opt, sched, iteration: int, record: dict[str, Any]
) -> None:
    """Each file atomically, then the JSON naming them all with their hashes: it is written last, so a kill at any
    moment leaves either the previous consistent set or files that the JSON's hashes do not vouch for."""
    files = {"optim": side_path(out, "optim")}
    atomic_write(
        files["optim"],
        lambda t: torch.save(
            {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "iteration": iteration}, t
        ),
    )
    for name, mod in modules.items():
        files[name] = out if name == "main" else side_path(out, name)
        atomic_write(files[name], functools.partial(_save_state, mod))
    hashes = {name: {"file": f.name, "sha256": file_sha256(f)} for name, f in files.items()}
    meta = {**record, "iteration": iteration, "files": hashes}
    atomic_write(side_path(out, "json"), lambda t: t.write_text(json.dumps(meta, indent=2)))


def load_for_resume(
    out: Path, modules: dict[str, nn.Module], opt, sched, conf: dict[str, Any], must_match: tuple[str, ...]
) -> int:
    """Restore an intact checkpoint set; a missing, damaged or mismatched set is one line, never a traceback."""
    meta_path, optim_path = side_path(out, "json"), side_path(out, "optim")
    needed = [out, meta_path, optim_path] + [side_path(out, n) for n in modules if n != "main"]
    missing = [p.name for p in needed if not p.exists()]
    if missing:
        raise VprError(f"{out}: nothing to resume (missing {', '.join(missing)}); run without --resume")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as e:
        raise VprError(
            f"{meta_path}: damaged ({e}); resume from an intact set or start over without --resume"
        ) from None
    for entry in (meta.get("files") or {}).values():
        f = out.with_name(entry["file"])
        if not f.exists() or file_sha256(f) != entry["sha256"]:
            raise VprError(
                f"{out}: checkpoint set does not match its {meta_path.name} ({f.name} is missing or changed: a kill "
                "during a save?); resume from an intact set or start over without --resume"
            )
    try:
        st = torch.load(optim_path, map_location="cpu", weights_only=True)
        states = {
            n: torch.load(out if n == "main" else side_path(out, n), map_location="cpu", weights_only=True)
            for n in modules
        }
    except Exception as e:  # torch raises several types for truncated or foreign files
        raise VprError(
            f"{out}: checkpoint damaged ({type(e).__name__}: {str(e).splitlines()[0][:120]}); "
            "start over without --resume"
        ) from None
    if st["iteration"] != meta["iteration"]:
        raise VprError(
            f"{out}: checkpoint files disagree (iteration {st['iteration']} vs {meta['iteration']}); "
            "resume from an intact set"
        )
    for k in must_match:
        if meta["config"].get(k) != conf.get(k):
            raise VprError(
                f"{out}: --resume with {k}={conf.get(k)} but the checkpoint was trained with {meta['config'].get(k)}"
            )
    try:
        for name, mod in modules.items():
            mod.load_state_dict(states[name], strict=True)
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
    except (RuntimeError, KeyError, ValueError) as e:
        raise VprError(
            f"{out}: checkpoint does not fit this model ({str(e).splitlines()[0][:120]}); start over"
        ) from None
    return int(st["iteration"])


def run(
    desc: str,
    out: Path,
    conf: dict[str, Any],
    modules: dict[str, nn.Module],
    opt,
    sched,
    step: StepFn,
    record: dict[str, Any],
    start: int = 0,
    log: str | Path | None = None,
    ylabel: str = "loss",
) -> Path:
    """Iterations ``start .. conf['iterations']``; saves every ``conf['save_every']`` and at the end."""
    total = int(conf["iterations"])
    logf = Path(log).open("a" if start else "w") if log else None
    seen = False
    bar = tqdm(range(start, total), initial=start, total=total, desc=desc, unit="it")
    try:
        for it in bar:
            loss, stats = step(it)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            lv = float(loss.detach())
            if not math.isfinite(lv):
                raise VprError(f"loss became {lv} at iteration {it}; lower --lr or check the images")
            seen = True
            bar.set_postfix(loss=f"{lv:.3g}", **{k: f"{v:.3g}" for k, v in list(stats.items())[:2]})
            if logf and ((it + 1) % int(conf["log_every"]) == 0 or it == start):
                logf.write(
                    json.dumps(
                        {"iteration": it + 1, "loss": lv, "lr": sched.get_last_lr()[0], **stats, "time": time.time()}
                    )
                    + "\n"
                )
                logf.flush()
            if (it + 1) % int(conf["save_every"]) == 0 or it + 1 == total:
                save_checkpoint(out, modules, opt, sched, it + 1, record)
    finally:
        if logf:
            logf.close()
    if log and seen:
        plot_loss(Path(log), out.with_suffix(".loss.png"), ylabel)
    return out


def plot_loss(log: Path, png: Path, ylabel: str = "loss") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([r["iteration"] for r in rows], [r["loss"] for r in rows])
    ax.set_xlabel("iteration")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(png, lambda t: fig.savefig(t, dpi=110, format="png"))
    plt.close(fig)
