"""Sequence localization: a temporal filter over the map's places (``temporal: hmm``).

Single frames under season or light change are weak; a robot's frames come in order. The filter keeps a beam of
*hypotheses*, each a path through the map with a position (ENU metres), a velocity and an accumulated score, and
advances it frame by frame: an online, causal Viterbi (max-product) recursion of a hidden Markov model whose states
are (place, velocity). It works on any map (loops, several runs, a city), not only one ordered route: positions are
predicted in ENU and continuous (any speed, not whole map spacings per frame), and each is scored at its nearest
map place.

* **Motion.** Constant velocity, with a cost for one velocity step (a quarter of the map spacing per frame) and
  for a 90-degree corner, over the real time between frame stamps, so dropped frames only lengthen the step. With
  odometry the speed comes from the travelled distance and the heading turns with its yaw; without it the speed
  is free within ``max_speed`` and is learnt by the track (paths are born from pairs of candidates of consecutive
  frames). Standing still is free only while consecutive frames look alike.
* **Observation.** The query's similarity to the place a hypothesis stands on, in units of the query's own score
  spread over the map, minus a running mean of recent queries (SeqSLAM's contrast enhancement in closed form:
  because similarity is linear in the query descriptor, the running mean over past queries of every place's
  score is one dot product with a running mean query); a near-duplicate of the previous frame is discounted.
  Evidence is computed only at the places the beam touches.
* **Jumps and order.** Every frame, each retrieved candidate may start a path from the best previous score minus
  ``jump_penalty``: after a kidnap the new track overtakes within a bounded number of frames. A log-odds that the
  input is ordered (the beam's motion predictions against an order-free model) gates the output, so on unordered
  input the filter gives way to the single frame.
* **Output.** The posterior mean near the mode, refined by the frame's best retrieved match when it agrees with
  the track; confidence = posterior mass (softmax of the scores) within 2.5 map spacings of the mode; covariance
  = that mass times the local spread (floor: half the spacing) plus the rest times the spread of the other
  hypotheses and the map, as the single-frame estimate does. Until a path with a velocity, ``min_age`` frames old,
  leads the beam while the input looks ordered, the filter reports no track and the caller keeps the single-frame
  estimate.

Cost is independent of track length: a fixed beam (``hypotheses``), nine children each, one gather of their
places' descriptors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..config import check_options
from ..registry import Registry
from .estimate import MapMoments

__all__ = [
    "TEMPORAL_FILTERS",
    "TEMPORAL_DEFAULTS",
    "Beam",
    "HmmFilter",
    "Motion",
    "Observation",
    "OdomTrack",
    "PlaceGrid",
    "QueryMemory",
    "TemporalOutput",
    "evidence_at",
    "observe",
]

TEMPORAL_FILTERS: Registry = Registry("temporal filter")
#: Children of a moving path per frame: the same velocity; one step faster, slower, left, right; a 90-degree turn
#: either way, at the start of the interval or half-way through it.
CHILDREN = 9

TEMPORAL_DEFAULTS: dict[str, Any] = {
    "max_speed": 100.0,  # m/s: the prior on speed without odometry (frames 1 s apart: up to 100 m per frame)
    "forget": 0.95,  # per-frame decay of a path's score: about 20 frames of memory, so kidnaps are forgotten
    "hypotheses": 384,  # beam size
    "candidates": 10,  # retrieved places per frame that may start a path
    "change_penalty": 2.0,  # cost (evidence units) of changing velocity by one step (a quarter spacing per frame)
    "turn_penalty": 4.0,  # cost of a 90-degree turn at the same speed (a corner)
    "jump_penalty": 6.0,  # cost of leaving every path for a retrieved candidate (teleport)
    "off_map_evidence": -1.0,  # evidence of a hypothesis that stands where the map has no place
    "mean_decay": 0.9,  # running mean of past queries for the contrast normalisation
    "beta": 1.0,  # score -> log-posterior scale for confidence and covariance
    "odom_speed_tol": 0.1,  # with odometry: relative speed tolerance (plus one velocity step)
    "order_threshold": 1.0,  # log-odds that frames come in order above which the track replaces the single frame
    "still_spacings": 0.5,  # a path moving less than this many spacings per frame stands still ...
    "coherent_z": 3.0,  # ... which is free only while consecutive frames look alike (z of their similarity)
    "redundancy_power": 4.0,  # a frame's evidence is discounted by r^power, r its correlation with the last one
    "sample": 256,  # places sampled for the query's score spread
    "snap": 0.5,  # a hypothesis farther than this many map spacings from every place is off the map
    "min_age": 3,  # frames a path must have lived before it replaces the single-frame estimate
    "snap_within": 0.2,  # a path within this many spacings of a place takes its position (follows the map)
    "velocity_step": 0.25,  # velocity resolution: this many spacings per frame
}
#: Ranges of the options (``config.check_option`` rules); the others take any finite number.
TEMPORAL_RULES: dict[str, str] = {
    "max_speed": ">0", "forget": "(0,1]", "hypotheses": ">=1", "candidates": ">=1", "change_penalty": ">=0",
    "turn_penalty": ">=0", "jump_penalty": ">=0", "mean_decay": "[0,1]", "beta": ">0", "odom_speed_tol": ">=0",
    "still_spacings": ">=0", "redundancy_power": ">0", "sample": ">=1", "snap": ">0", "min_age": ">=0",
    "snap_within": ">=0", "velocity_step": ">0",
}  # fmt: skip


@dataclass
class Motion:
    """Odometry between the previous frame and this one: travelled distance (m) and yaw change (rad)."""

    distance: float
    dyaw: float = 0.0


class OdomTrack:
    """Recent odometry poses (x, y, yaw in the odometry frame, by stamp): the motion between two frame stamps,
    interpolated. The odometry frame's rotation to ENU is unknown, so only the travelled distance and the turn are
    used. Bounded: samples older than ``horizon`` seconds before the newest are dropped."""

    def __init__(self, horizon: float = 30.0) -> None:
        self.horizon = horizon
        self.t: list[float] = []
        self.pose: list[tuple[float, float, float]] = []

    def add(self, stamp: float, x: float, y: float, yaw: float) -> None:
        if self.t and stamp <= self.t[-1]:
            return  # out of order or repeated: the track is kept monotone
        self.t.append(float(stamp))
        self.pose.append((float(x), float(y), float(yaw)))
        cut = 0
        while cut < len(self.t) - 2 and self.t[cut] < stamp - self.horizon:
            cut += 1
        if cut:
            del self.t[:cut], self.pose[:cut]

    def at(self, stamp: float) -> tuple[float, float, float] | None:
        """The pose at ``stamp`` (linear between samples), or None outside the samples (no extrapolation)."""
        if len(self.t) < 2 or not self.t[0] <= stamp <= self.t[-1]:
            return None
        t = np.asarray(self.t)
        p = np.asarray(self.pose)
        yaw = np.unwrap(p[:, 2])
        return (
            float(np.interp(stamp, t, p[:, 0])),
            float(np.interp(stamp, t, p[:, 1])),
            float(np.interp(stamp, t, yaw)),
        )

    def motion(self, t0: float | None, t1: float) -> Motion | None:
        """Distance travelled and yaw change from ``t0`` to ``t1``; None when either pose is unknown."""
        if t0 is None:
            return None
        a, b = self.at(t0), self.at(t1)
        if a is None or b is None:
            return None
        return Motion(math.hypot(b[0] - a[0], b[1] - a[1]), math.remainder(b[2] - a[2], math.tau))


@dataclass
class TemporalOutput:
    index: int  # map place of the mode
    east: float
    north: float
    cov_xy: np.ndarray  # (2, 2) m^2, the mixture (mode with the confidence, rivals and map with the rest)
    confidence: float
    speed: float  # m/s of the leading path
    cov_inlier: np.ndarray | None = None  # (2, 2) m^2, the mode's spread alone


@dataclass
class Beam:
    """Hypotheses, one row each: a path's position (ENU m), velocity (m/s), score (relative: the best is 0),
    whether it has a velocity yet, its nearest map place (-1: off the map) and its age in frames."""

    pos: np.ndarray  # (H, 2)
    vel: np.ndarray  # (H, 2)
    score: np.ndarray  # (H,)
    moving: np.ndarray  # (H,) bool
    place: np.ndarray  # (H,) int64
    age: np.ndarray  # (H,) int64

    @classmethod
    def empty(cls) -> Beam:
        return cls(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0), np.zeros(0, bool), np.zeros(0, np.int64),
                   np.zeros(0, np.int64))  # fmt: skip

    @classmethod
    def of(cls, pos: np.ndarray, vel: np.ndarray, score: np.ndarray, moving: bool, age: int | np.ndarray) -> Beam:
        """New hypotheses before they are placed on the map."""
        n = len(pos)
        return cls(pos, vel, score, np.full(n, moving), np.full(n, -1, np.int64),
                   np.broadcast_to(age, n).astype(np.int64))  # fmt: skip

    def __len__(self) -> int:
        return len(self.score)

    @classmethod
    def concat(cls, beams: list[Beam]) -> Beam:
        return cls(*(np.concatenate([getattr(b, f) for b in beams]) for f in _BEAM_FIELDS))

    def take(self, rows: np.ndarray) -> Beam:
        return Beam(*(getattr(self, f)[rows] for f in _BEAM_FIELDS))


_BEAM_FIELDS = ("pos", "vel", "score", "moving", "place", "age")


@dataclass
class QueryMemory:
    """What the filter remembers of past queries (the condition, kept across ``reset``): the running mean of the
    normalised queries and of their mean-place score, the previous query and its contrast-enhanced form."""

    qmean: np.ndarray | None = None
    bmean: float = 0.0
    prev_q: np.ndarray | None = None
    prev_qe: np.ndarray | None = None


@dataclass
class Observation:
    """One frame's evidence model: the contrast-enhanced query ``qe`` and offset ``be`` (evidence at a place is
    ``desc[place] @ qe - be``, times ``weight``), and how much it looks like the previous frame (``coherence``)."""

    qe: np.ndarray
    be: float
    weight: float
    coherence: float


def observe(
    q: np.ndarray, sample: torch.Tensor, mean_desc: np.ndarray, memory: QueryMemory, conf: dict[str, Any]
) -> tuple[Observation, QueryMemory]:
    """A query's observation model and the updated memory (pure: ``memory`` is not changed)."""
    q = np.asarray(q, np.float32).reshape(-1)
    sigma = float(torch.mv(sample, torch.from_numpy(q)).std(correction=0)) + 1e-6
    qn, b = q / sigma, float(mean_desc @ q) / sigma
    qe, be = (qn - memory.qmean, b - memory.bmean) if memory.qmean is not None else (qn, b)
    # does this frame look like the previous one? (a robot standing still sees the same scene)
    coherence = float(q @ memory.prev_q - mean_desc @ q) / sigma if memory.prev_q is not None else 0.0
    # a near-duplicate of the previous frame adds little new evidence: discount by its redundancy
    weight = 1.0
    if memory.prev_qe is not None:
        r = float(qe @ memory.prev_qe) / (float(np.linalg.norm(qe) * np.linalg.norm(memory.prev_qe)) + 1e-12)
        weight = 1.0 - max(r, 0.0) ** float(conf["redundancy_power"])
    a = float(conf["mean_decay"])
    if memory.qmean is None:
        qmean, bmean = qn.copy(), b
    else:
        qmean, bmean = a * memory.qmean + (1.0 - a) * qn, a * memory.bmean + (1.0 - a) * b
    return Observation(qe, be, weight, coherence), QueryMemory(qmean, bmean, q, qe)


def evidence_at(places: np.ndarray, desc: np.ndarray, obs: Observation, off_map: float) -> np.ndarray:
    """Evidence of hypotheses standing on map ``places`` (-1: off the map); reads only those rows of ``desc``."""
    out = np.full(len(places), off_map)
    on = places >= 0
    if on.any():
        u, inv = np.unique(places[on], return_inverse=True)
        rows = torch.from_numpy(np.asarray(desc[u], np.float32))
        out[on] = (torch.mv(rows, torch.from_numpy(obs.qe)).numpy() - obs.be)[inv]
    return out * obs.weight


class PlaceGrid:
    """Nearest map place of any ENU point, vectorised: a hash of the cells (half a spacing wide) that lie within
    ``radius`` of some place, each holding its nearest place; points farther from every place get -1."""

    def __init__(self, xy: np.ndarray, spacing: float, radius: float) -> None:
        self.cell = spacing / 2.0
        r = int(math.ceil(radius / self.cell))
        offs = np.stack(np.meshgrid(np.arange(-r, r + 1), np.arange(-r, r + 1), indexing="ij"), -1).reshape(-1, 2)
        base = np.floor(xy / self.cell).astype(np.int64)
        keys, places, dist = [], [], []
        for lo in range(0, len(xy), 20000):  # bounded memory on large maps
            c = base[lo : lo + 20000, None, :] + offs[None]  # (n, cells, 2)
            centre = (c + 0.5) * self.cell
            d = np.linalg.norm(centre - xy[lo : lo + 20000, None, :], axis=-1)
            ok = d <= radius
            keys.append(self._key(c[ok]))
            places.append(np.broadcast_to(np.arange(lo, lo + len(c))[:, None], ok.shape)[ok])
            dist.append(d[ok])
        k, p, d = np.concatenate(keys), np.concatenate(places), np.concatenate(dist)
        order = np.lexsort((d, k))
        k, p = k[order], p[order]
        first = np.ones(len(k), bool)
        first[1:] = k[1:] != k[:-1]
        self.keys, self.places = k[first], p[first].astype(np.int64)

    @staticmethod
    def _key(c: np.ndarray) -> np.ndarray:
        return (c[..., 0] + (1 << 30)) * (1 << 31) + (c[..., 1] + (1 << 30))

    def lookup(self, pts: np.ndarray) -> np.ndarray:
        k = self._key(np.floor(pts / self.cell).astype(np.int64))
        i = np.clip(np.searchsorted(self.keys, k), 0, len(self.keys) - 1)
        return np.where(self.keys[i] == k, self.places[i], -1)


def map_spacing(xy: np.ndarray, sample: int = 4096) -> float:
    """Median distance from a place to its nearest other place (the map's sampling step), at least 0.1 m."""
    import faiss

    pts = np.ascontiguousarray(xy, dtype=np.float32)
    if len(pts) < 2:
        return 1.0
    idx = faiss.IndexFlatL2(2)
    idx.add(pts)
    sel = np.random.default_rng(0).choice(len(pts), min(sample, len(pts)), replace=False)
    d, _ = idx.search(pts[sel], min(8, len(pts)))
    d = np.sqrt(np.maximum(d, 0.0))
    nn = np.where(d > 1e-3, d, np.inf).min(axis=1)  # first neighbour at a different position
    nn = nn[np.isfinite(nn)]
    return float(max(np.median(nn), 0.1)) if len(nn) else 1.0


def child_penalties(conf: dict[str, Any]) -> np.ndarray:
    """Cost of each of a moving path's CHILDREN: keep going; a velocity step (4); a corner (4)."""
    return np.array([0.0] + [conf["change_penalty"]] * 4 + [conf["turn_penalty"]] * 4)


@TEMPORAL_FILTERS.register("hmm")
class HmmFilter:
    """Online Viterbi over (place, velocity) with a fixed beam; see the module docstring."""

    def __init__(self, xy: np.ndarray, descriptors: np.ndarray, conf: dict[str, Any] | None = None) -> None:
        self.conf = check_options("temporal filter 'hmm'", TEMPORAL_DEFAULTS, conf, TEMPORAL_RULES)
        self.xy = np.asarray(xy, dtype=np.float64)
        self.desc = descriptors  # (N, D), may be memory-mapped; only touched rows are read
        self.spacing = map_spacing(self.xy)
        self.step_m = self.spacing * float(self.conf["velocity_step"])  # velocity resolution per frame
        self.grid = PlaceGrid(self.xy, self.spacing, radius=float(self.conf["snap"]) * self.spacing)
        self.moments = MapMoments.of(self.xy)
        n = len(self.xy)
        rng = np.random.default_rng(0)
        pick = np.sort(rng.choice(n, min(n, int(self.conf["sample"])), replace=False))
        # products run in torch, on the pipeline's own thread pool: numpy's BLAS threads would fight torch's
        self.sample = torch.from_numpy(np.array(descriptors[pick], dtype=np.float32))
        self.mean_desc = np.zeros(descriptors.shape[1], np.float64)
        for lo in range(0, n, 16384):  # summed in float64 without a float64 copy of the rows (a large map is paged)
            self.mean_desc += np.asarray(descriptors[lo : lo + 16384]).sum(0, dtype=np.float64)
        self.mean_desc = (self.mean_desc / max(n, 1)).astype(np.float32)

        self.memory = QueryMemory()
        self.reset()

    def reset(self) -> None:
        """Forget every path (``~/relocalize``, a new run); the query memory is kept: it describes the condition."""
        self.beam = Beam.empty()
        self.stamp: float | None = None
        self.order_logodds = 0.0  # log-odds that the frames come in order (start: undecided)

    # -- one frame -----------------------------------------------------------------------------------------------
    def step(
        self, query: np.ndarray, ids: np.ndarray, stamp: float, motion: Motion | None = None
    ) -> TemporalOutput | None:
        """Advance by one frame: ``query`` its global descriptor, ``ids`` its retrieved places (best first),
        ``stamp`` seconds, ``motion`` odometry since the previous frame. None: no path yet (use the single frame)."""
        c = self.conf
        obs, self.memory = observe(query, self.sample, self.mean_desc, self.memory, c)
        ids = np.asarray(ids, np.int64)[: int(c["candidates"])]
        ids = ids[ids >= 0]
        dt = 1.0 if self.stamp is None else stamp - self.stamp
        if not dt > 0:  # repeated or reordered stamps: treat as simultaneous
            dt = 1e-3
        self.stamp = stamp
        old = self.beam
        parts = [self._teleports(ids), self._births(ids, dt, motion)]
        n_before_moving = sum(len(p) for p in parts)
        parts.append(self._moves(dt, motion))
        beam = Beam.concat(parts)
        if not len(beam):
            return None
        beam.place = self.grid.lookup(beam.pos)
        ev = evidence_at(beam.place, self.desc, obs, float(c["off_map_evidence"]))
        beam.score = beam.score + ev
        if obs.coherence < float(c["coherent_z"]):  # the scene changed: a path that stands still pays for it
            still = beam.moving & (np.linalg.norm(beam.vel, axis=1) * dt < float(c["still_spacings"]) * self.spacing)
            beam.score[still] -= float(c["change_penalty"])
        self._regime(old, ev, len(ids), n_before_moving, int(old.moving.sum()))
        self.beam = self._prune(beam, dt)
        return self._output(ids)

    def _teleports(self, ids: np.ndarray) -> Beam:
        """Any retrieved candidate, from the best path less the jump penalty."""
        best_prev = float(self.beam.score.max()) if len(self.beam) else 0.0
        score = np.full(len(ids), float(self.conf["forget"]) * best_prev - float(self.conf["jump_penalty"]))
        return Beam.of(self.xy[ids], np.zeros((len(ids), 2)), score, False, 0)

    def _births(self, ids: np.ndarray, dt: float, motion: Motion | None) -> Beam:
        """A path that arrived without velocity at the last frame pairs with this frame's candidates."""
        b, c = self.beam, self.conf
        fresh = ~b.moving
        if not (fresh.any() and len(ids)):
            return Beam.empty()
        d = self.xy[ids][None, :, :] - b.pos[fresh][:, None, :]  # (F, K, 2)
        dist = np.linalg.norm(d, axis=-1)
        ok = dist <= float(c["max_speed"]) * dt
        if motion is not None:
            ok &= np.abs(dist - motion.distance) <= c["odom_speed_tol"] * motion.distance + self.step_m
        fi, kj = np.nonzero(ok)
        return Beam.of(self.xy[ids[kj]], d[fi, kj] / dt, float(c["forget"]) * b.score[fresh][fi], True, 1)

    def _moves(self, dt: float, motion: Motion | None) -> Beam:
        """Moving paths: constant velocity, or one step faster/slower/left/right or a corner, at a cost."""
        b, c = self.beam, self.conf
        mov = b.moving
        if not mov.any():
            return Beam.empty()
        dv = self.step_m / dt
        v = b.vel[mov]
        if motion is not None:
            cy, sy = math.cos(motion.dyaw), math.sin(motion.dyaw)
            v = np.stack([cy * v[:, 0] - sy * v[:, 1], sy * v[:, 0] + cy * v[:, 1]], 1)
            norm = np.linalg.norm(v, axis=1, keepdims=True)
            v = np.where(norm > 1e-9, v / np.maximum(norm, 1e-9) * (motion.distance / dt), v)
        speed = np.hypot(v[:, 0], v[:, 1])[:, None]
        along = np.where(speed > 1e-9, v / np.maximum(speed, 1e-9), np.array([[1.0, 0.0]]))
        across = np.stack([-along[:, 1], along[:, 0]], 1)
        turned = np.stack([-v[:, 1], v[:, 0]], 1)  # the same speed, 90 degrees left (a corner of the map)
        p = b.pos[mov]
        # children (CHILDREN, M, 2): keep going; one velocity step; a corner at the start or half-way through
        vc = np.stack([v, v + dv * along, v - dv * along, v + dv * across, v - dv * across, turned, -turned])
        vc = np.concatenate([vc, vc[5:]])  # the two turns again, taken half-way
        pc = p[None] + vc * dt
        pc[7:] = p[None] + (v[None] + vc[7:]) * (dt / 2)
        if motion is None:  # no faster than the prior allows
            fast = np.hypot(vc[..., 0], vc[..., 1]) > float(c["max_speed"])
            pc = np.where(fast[..., None], (p + v * dt)[None], pc)
            vc = np.where(fast[..., None], v[None], vc)
        score = (float(c["forget"]) * b.score[mov][None] - child_penalties(c)[:, None]).reshape(-1)
        return Beam.of(pc.reshape(-1, 2), vc.reshape(-1, 2), score, True, np.tile(b.age[mov] + 1, CHILDREN))

    def _prune(self, beam: Beam, dt: float) -> Beam:
        """One hypothesis per (place cell, velocity step, moving): the best; then the best ``hypotheses`` of them,
        sorted, scores relative to the best; paths close to a place take its position (they follow the map)."""
        c = self.conf
        qv = np.clip(np.round(beam.vel / (self.step_m / dt)), -500, 500).astype(np.int64) + 512
        # a quarter-spacing cell: paths keep their sub-spacing position, so any speed is represented
        qp = np.floor(beam.pos / self.step_m).astype(np.int64)
        cell = (qp[:, 0] % 1_048_573) * 1_048_573 + (qp[:, 1] % 1_048_573)  # < 2^40; a rare collision only merges
        key = ((cell << 20) + qv[:, 0] * 1024 + qv[:, 1]) * 2 + beam.moving
        order = np.lexsort((-beam.score, key))  # by key, the best first within each
        first = np.ones(len(order), bool)
        first[1:] = key[order[1:]] != key[order[:-1]]
        keep = order[first]
        h = int(c["hypotheses"])
        if len(keep) > h:
            keep = keep[np.argpartition(-beam.score[keep], h - 1)[:h]]
        keep = keep[np.argsort(-beam.score[keep], kind="stable")]
        out = beam.take(keep)
        out.score = out.score - out.score[0]  # relative: the best path scores 0
        if c["snap_within"] > 0:
            on = out.place >= 0
            on[on] = np.linalg.norm(out.pos[on] - self.xy[out.place[on]], axis=1) <= c["snap_within"] * self.spacing
            out.pos[on] = self.xy[out.place[on]]
        return out

    def _regime(self, old: Beam, ev: np.ndarray, n_cand: int, m0: int, n_mov: int) -> None:
        """Are the frames in order? Compare how well the beam's motion predictions explain this frame with how well
        an order-free model does (the frame at any place: retrieved candidates, the rest at the null evidence, which
        is about N(0, 1) so E[exp(e)] = e^0.5), and accumulate the log-ratio with the paths' forgetting."""
        n = len(self.xy)
        if not len(old) or n_cand == 0:
            return
        ecand = ev[:n_cand]
        p_free = (np.exp(ecand).sum() + max(n - n_cand, 0) * math.exp(0.5)) / max(n, n_cand)
        w = np.exp(old.score - old.score.max())
        w /= w.sum()
        wm = w[old.moving]
        p_ord = float(w[~old.moving].sum()) * p_free
        if n_mov:
            t = np.exp(-child_penalties(self.conf))
            t /= t.sum()
            e = ev[m0 : m0 + CHILDREN * n_mov].reshape(CHILDREN, n_mov)
            p_ord += float((wm * (t[:, None] * np.exp(np.minimum(e, 30.0))).sum(0)).sum())
        lr = math.log(max(p_ord, 1e-300)) - math.log(p_free)
        self.order_logodds = float(np.clip(float(self.conf["forget"]) * self.order_logodds + lr, -20.0, 40.0))

    def _output(self, ids: np.ndarray) -> TemporalOutput | None:
        b = self.beam
        i0 = 0  # the beam is sorted: the mode first
        if not b.moving[i0] or b.place[i0] < 0 or b.age[i0] < int(self.conf["min_age"]):
            return None
        if self.order_logodds <= float(
            self.conf["order_threshold"]
        ):  # the input does not look ordered: the single frame knows as much
            return None
        w = np.exp(float(self.conf["beta"]) * b.score)
        w /= w.sum()
        p0 = b.pos[i0]
        d = b.pos - p0
        near = np.linalg.norm(d, axis=1) <= 2.5 * self.spacing
        conf = float(np.clip(w[near].sum(), 0.0, 1.0))
        wn = w[near] / max(w[near].sum(), 1e-12)
        # the estimate: the posterior mean of the mode's neighbourhood (paths a place or two apart along the same
        # track score alike), refined by this frame's best retrieved match when that agrees with the track
        p0 = p0 + (wn[:, None] * d[near]).sum(0)
        agree = np.linalg.norm(self.xy[ids] - p0, axis=1) <= 2.5 * self.spacing
        if agree.any():
            p0 = self.xy[ids[np.argmax(agree)]].copy()
        d = b.pos - p0
        local = (wn[:, None, None] * d[near][:, :, None] * d[near][:, None, :]).sum(0)
        local += (self.spacing / 2.0) ** 2 * np.eye(2)
        far = ~near
        if far.any():
            wf = w[far] / max(w[far].sum(), 1e-12)
            rivals = (wf[:, None, None] * d[far][:, :, None] * d[far][:, None, :]).sum(0)
        else:
            rivals = local
        wrong = 0.5 * rivals + 0.5 * self.moments.about(p0)
        cov = conf * local + (1.0 - conf) * wrong
        cov = 0.5 * (cov + cov.T) + 1e-9 * np.eye(2)
        place = int(self.grid.lookup(p0[None])[0])
        return TemporalOutput(
            place if place >= 0 else int(b.place[i0]),
            float(p0[0]),
            float(p0[1]),
            cov,
            conf,
            float(np.linalg.norm(b.vel[i0])),
            0.5 * (local + local.T),
        )
