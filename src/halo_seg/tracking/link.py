"""Which object of one time point is which of the next: tracks and their lineage from overlaps.

Cells in a time-lapse move by less than their size between frames, so an object's successor is the
object that overlaps it most. Each step is a one-to-one assignment maximising the total overlap
(intersection over union, IoU) among pairs above ``min_iou``, solved with scipy's Hungarian
algorithm on each connected group of overlapping objects (groups are small, so a frame of many
thousand cells never builds one large matrix). What the assignment leaves, in this order:

- an object may continue a track that ended up to ``max_gap`` time points before (a cell the
  segmentation missed for a frame, or one that touched a neighbour and was one object with it),
  by overlap with that track's last object; this comes before divisions, or two cells parting
  again would read as a mother and her daughter;
- an object that lies at least ``division_overlap`` (a share of its voxels) in a mother already
  continued by another is her daughter (daughters are each half the mother and start where she
  was, so each overlaps her with an IoU of about 0.25 at most, too little to tell from a
  neighbour; their share inside her is about 0.6): the mother's track ends and every daughter
  starts a track whose parent is hers (the Cell Tracking Challenge convention, so lineages read
  as its ``L B E P`` lines);
- with ``max_distance``, objects left on both sides are paired by centroid distance (physical
  units), for cells that move further than they overlap; ``link="distance"`` pairs by distance
  alone, as point trackers do (better for cells moving further than their radius between time
  points, benchmarks/README.md); with ``predict``, the distance is from where the track's last
  step takes it, as much of that step as cells keep from one step to the next (fitted to the
  tracks linked so far: cells crawling on keep most of it, a random walk none; a mother's last
  step is to her daughters' centroid, and they go on from it); ``link="auto"`` chooses between
  the two at each time point from the cells' motion since the time point before (motion()): by
  distance, within twice the cells' median step unless ``max_distance`` is given, where that
  step is over FAST_STEP of their median radius (where overlap linking starts to lose tracks and
  divisions on the procedural time-lapses, benchmarks/README.md), else by overlap (cells that
  speed up or slow down are linked as they move at each step; ``choices`` says when it changed);
- then, with ``distance_divisions``, an object still left may be the second daughter of a track
  continued at this time point, though too far to overlap her: both are each at most
  DAUGHTER_MAX of the mother's volume and together DAUGHTERS_SUM of it (a cell that merely moved
  on keeps its size), near where she was predicted and within SISTER_RADII of her radii apart;
- anything else starts a new track.

``given`` links come before all of this: {object id: id of the object it was carried from} (the
interactive widget's Next time point, either way in time), between ids as the labels hold them (the
objects given), each a link whatever the overlap says; a mother with two or more given successors
divided into them. A link between objects that are not at consecutive time points (one erased
since) is not used; ``given_used`` counts those that were.

This module only decides: the frames are read, compared and written by tracking.run.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


DAUGHTER_MAX = 0.8          # of the mother's volume, each daughter at most (divisions by distance)
DAUGHTERS_SUM = (0.5, 1.5)  # of the mother's volume, both daughters together
SISTER_RADII = 3.0          # of the mother's radius, how far apart sisters may be
FAST_STEP = 0.5             # of the cells' radius per time point: beyond it link="auto" links by distance
MOTION_REACH = 3.0          # of the cells' radius: how far motion() looks for where a cell went


@dataclass
class Objects:
    """One time point's objects: sorted ids, their sizes in voxels, centroids (voxel z, y, x) and
    class (0 where classes are not kept apart)."""
    t: int
    ids: np.ndarray
    voxels: np.ndarray
    centroids: np.ndarray
    classes: np.ndarray

    def index(self, ids) -> np.ndarray:
        return np.searchsorted(self.ids, ids)


def match(rows: np.ndarray, cols: np.ndarray, weight: np.ndarray) -> list[tuple[int, int]]:
    """The one-to-one pairs (row, col) among the candidate edges that maximise the total weight
    (all weights > 0), solved group by group of rows and columns joined by edges."""
    from scipy.optimize import linear_sum_assignment
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    if not len(rows):
        return []
    r_ids, r = np.unique(rows, return_inverse=True)
    c_ids, c = np.unique(cols, return_inverse=True)
    nr = len(r_ids)
    graph = coo_matrix((np.ones(len(r)), (r, nr + c)), shape=(nr + len(c_ids),) * 2)
    _, comp = connected_components(graph, directed=False)
    group = comp[r]
    order = np.argsort(group, kind="stable")
    bounds = np.flatnonzero(np.diff(group[order])) + 1
    pairs = []
    for edges in np.split(order, bounds):
        if len(edges) == 1:
            e = edges[0]
            pairs.append((int(r_ids[r[e]]), int(c_ids[c[e]])))
            continue
        ur, lr = np.unique(r[edges], return_inverse=True)
        uc, lc = np.unique(c[edges], return_inverse=True)
        m = np.zeros((len(ur), len(uc)))
        m[lr, lc] = weight[edges]
        for i, j in zip(*linear_sum_assignment(m, maximize=True)):
            if m[i, j] > 0:   # a pair the group had no edge for is no link
                pairs.append((int(r_ids[ur[i]]), int(c_ids[uc[j]])))
    return pairs


def iou(overlaps: np.ndarray, a: Objects, b: Objects) -> np.ndarray:
    """IoU of each overlapping pair (rows of ``overlaps``: id in a, id in b, voxels in common)."""
    inter = overlaps[:, 2].astype(float)
    return inter / (a.voxels[a.index(overlaps[:, 0])] + b.voxels[b.index(overlaps[:, 1])] - inter)


def within(a: np.ndarray, b: np.ndarray, reach: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair of points of ``a`` and ``b`` ((n, 3) each) within ``reach`` of each other: their
    indices (rows in ``a``, cols in ``b``) and distances."""
    from scipy.spatial import cKDTree
    near = cKDTree(a).query_ball_tree(cKDTree(b), reach)
    rows = np.array([i for i, js in enumerate(near) for _ in js], np.int64)
    cols = np.array([j for js in near for j in js], np.int64)
    return rows, cols, np.linalg.norm(a[rows] - b[cols], axis=1).reshape(-1)


def nearest_pairs(a: np.ndarray, b: np.ndarray, reach: float, a_classes, b_classes) -> list[tuple[int, int, float]]:
    """The one-to-one pairs (index in ``a``, index in ``b``, distance) of points of one class within
    ``reach`` that pair as many as can be and, among those, keep the total distance least."""
    rows, cols, d = within(a, b, reach)
    same = a_classes[rows] == b_classes[cols]
    rows, cols, d = rows[same], cols[same], d[same]
    by = {(int(i), int(j)): float(x) for i, j, x in zip(rows, cols, d)}
    # closer is better; every pair within reach is worth more than none
    return [(i, j, by[i, j]) for i, j in match(rows, cols, 1.0 + reach - d)]


def ball_radius(volume, thickness: float | None = None):
    """The radius of a sphere of ``volume`` or, with ``thickness`` (a time point of one plane), of a
    disc of ``volume`` / ``thickness``."""
    volume = np.asarray(volume, float)
    return np.sqrt(volume / (np.pi * thickness)) if thickness else np.cbrt(3 * volume / (4 * np.pi))


@dataclass
class Linker:
    """Tracks built one time point at a time: ``step`` gives each object of the new time point its
    track id. ``lineage``: track -> [first time point, last time point, parent track or 0]."""
    spacing: tuple = (1.0, 1.0, 1.0)
    min_iou: float = 0.1
    division_overlap: float = 0.2
    max_distance: float | None = None
    max_gap: int = 1
    link: str = "overlap"     # or "distance": a point tracker's pairing by centroids alone; "auto": motion()
    predict: bool = True      # pair by distance from where each track's steps so far predict it
    distance_divisions: bool = True   # with max_distance: divisions told by the daughters' sizes and places too
    given: dict = field(default_factory=dict)   # object id -> id of the object it was carried from
    lineage: dict = field(default_factory=dict)
    divisions: int = 0
    given_used: int = 0
    planar: bool = False      # a time point is one plane (a 2D movie): sizes are areas, radii a disc's
    choices: list = field(default_factory=list)   # link "auto": what it chose, one entry per run of time points
    _last: tuple = (None, None)   # the time point stepped last, and its objects' tracks in the order of their ids
    _ended: dict = field(default_factory=dict)      # track -> (t, id, step) of its last object, if it ended
    _steps: int = 0
    _velocity: dict = field(default_factory=dict)   # track -> its last step (voxels per time point), with predict
    _persist: list = field(default_factory=lambda: [0.0, 0.0])   # sums of (step . step before), |step before|^2

    def check(self) -> None:
        from ..io.volume import VolumeError
        if not 0 < self.min_iou <= 1:
            raise VolumeError(f"min_iou must be in (0, 1], got {self.min_iou}")
        if not 0 < self.division_overlap <= 1:
            raise VolumeError(f"division_overlap (a share of the daughter) must be in (0, 1], got "
                              f"{self.division_overlap}")
        if self.max_distance is not None and not self.max_distance > 0:
            raise VolumeError(f"max_distance must be > 0 (in the volume's units), got {self.max_distance}")
        if self.link not in ("overlap", "distance", "auto"):
            raise VolumeError(f"link must be 'overlap', 'distance' or 'auto', got {self.link!r}")
        if self.link == "distance" and self.max_distance is None:
            raise VolumeError("linking by distance needs max_distance: how far a cell may move between time points")
        if int(self.max_gap) != self.max_gap or self.max_gap < 0:
            raise VolumeError(f"max_gap must be a whole number >= 0, got {self.max_gap}")

    def persistence(self) -> float:
        """How much of its last step a cell's next step repeats, fitted to the tracks linked so far
        (least squares, step = a * step before, a in [0, 1]): about 1 for cells crawling on in one
        direction, 0 for a random walk, where predicting would only add the last step's noise."""
        num, den = self._persist
        return float(np.clip(num / den, 0.0, 1.0)) if den > 0 else 0.0

    def gap_candidates(self) -> dict[int, np.ndarray]:
        """{time point: ids} of the last objects of tracks that ended (not by dividing) within
        max_gap time points before the last one stepped: those a new object may continue."""
        out: dict[int, list] = {}
        for t, i, s in self._ended.values():
            if self._steps - 1 - s <= self.max_gap and s < self._steps - 1:
                out.setdefault(t, []).append(i)
        return {t: np.array(sorted(v)) for t, v in out.items()}

    def _new(self, t: int, parent: int = 0) -> int:
        k = len(self.lineage) + 1
        self.lineage[k] = [t, t, parent]
        return k

    def step(self, prev: Objects | None, cur: Objects, overlaps: np.ndarray | None = None,
             gaps: dict | None = None) -> np.ndarray:
        """Track ids of ``cur``'s objects (in the order of ``cur.ids``). ``overlaps``: rows (id in
        prev, id in cur, voxels in common) of objects of one class; ``gaps``: {time point: (its
        Objects, overlaps with cur)} for gap_candidates."""
        t, n = cur.t, len(cur.ids)
        if prev is not None and prev.t != self._last[0]:
            raise ValueError(f"prev must be the time point stepped last ({self._last[0]}), got {prev.t}")
        link, reach = self._choose(prev, cur) if self.link == "auto" and prev is not None else self.in_use()
        before = self._last[1]            # index in prev -> its track
        links: dict[int, int] = {}        # index in cur -> track it continues
        parents: dict[int, int] = {}      # index in cur -> track it is a daughter of
        succ: dict[int, int] = {}         # index in prev -> index in cur it continues as
        daughters: dict[int, list] = {}   # index in prev -> indices in cur of her daughters
        ov = overlaps if overlaps is not None and link != "distance" else np.zeros((0, 3), np.int64)
        forced = self._given_pairs(prev, cur)   # index in prev -> indices in cur, as the user linked them
        forced_cur = {j for js in forced.values() for j in js}
        if forced and len(ov):   # the rest is linked as it would be without them
            keep = ~np.isin(prev.index(ov[:, 0]), list(forced)) & ~np.isin(cur.index(ov[:, 1]), list(forced_cur))
            ov = ov[keep]
        if prev is not None and len(prev.ids) and n and len(ov):
            w = iou(ov, prev, cur)
            good = w >= self.min_iou
            succ = dict(match(prev.index(ov[good, 0]), cur.index(ov[good, 1]), w[good]))
        succ.update({i: js[0] for i, js in forced.items() if len(js) == 1})
        # before daughters: an object continuing a track that ended within max_gap (two cells that
        # touched, one object for a while, and part again are not a mother and her daughter)
        links.update(self._close_gaps(cur, gaps or {}, set(succ.values()) | forced_cur))
        if len(ov) and succ:
            taken = set(succ.values()) | set(links) | forced_cur
            share = ov[:, 2] / cur.voxels[cur.index(ov[:, 1])]   # of the new object, inside the old
            best: dict[int, tuple[float, int]] = {}
            for i, j, v in zip(prev.index(ov[:, 0]), cur.index(ov[:, 1]), share):
                if j not in taken and v > best.get(j, (0.0, -1))[0]:
                    best[j] = (v, i)
            for j, (v, i) in best.items():
                if v >= self.division_overlap and i in succ:
                    daughters.setdefault(i, []).append(j)
            for i in list(daughters):
                daughters[i] = self._divide(i, daughters[i], succ, parents)
        for i, js in forced.items():
            if len(js) > 1:   # a mother the user followed into two (Commit as two)
                succ[i] = js[0]
                daughters[i] = self._divide(i, js[1:], succ, parents)
        self.given_used += len(forced_cur)
        if prev is not None and len(prev.ids) and n and reach is not None:
            self._pair_by_distance(prev, cur, succ, set(daughters), set(parents) | set(links), reach)
            if self.distance_divisions:
                for i, j in self._divide_by_distance(prev, cur, succ, set(daughters), set(parents) | set(links),
                                                     reach):
                    daughters[i] = self._divide(i, [j], succ, parents)
        if self.predict and prev is not None:
            gap = max(1, t - prev.t)
            # a mother's last step is to her daughters' centroid (by volume: where she would be), which
            # they go on from
            for i, js in [(i, [j]) for i, j in succ.items()] + list(daughters.items()):
                k = int(before[i])
                w = cur.voxels[js].astype(float)
                step = ((cur.centroids[js] * w[:, None]).sum(0) / w.sum() - prev.centroids[i]) / gap
                if k in self._velocity:   # how much of a step the next one keeps, over every track so far
                    self._persist[0] += float(step @ self._velocity[k])
                    self._persist[1] += float(self._velocity[k] @ self._velocity[k])
                self._velocity[k] = step
        for i, j in succ.items():
            links[j] = int(before[i])
        ended = [i for i in range(len(prev.ids)) if i not in succ and i not in daughters] if prev is not None else []
        tracks = np.zeros(n, np.int64)
        for j in range(n):
            if j in links:
                tracks[j] = links[j]
                self.lineage[links[j]][1] = t
                self._ended.pop(links[j], None)
            else:
                tracks[j] = self._new(t, parents.get(j, 0))
                if self.predict and parents.get(j):   # a daughter moves on as her mother did
                    self._velocity[int(tracks[j])] = self._velocity.get(parents[j], np.zeros(3))
        if prev is not None:
            for i in ended:   # not continued: a gap may yet be closed
                k = int(before[i])
                self._ended[k] = (prev.t, int(prev.ids[i]), self._steps - 1)
        self._last = (t, tracks)
        self._ended = {k: e for k, e in self._ended.items() if self._steps - e[2] <= self.max_gap}
        # only tracks that may yet go on need a velocity (the state `track --resume` keeps grows with them)
        live = set(tracks.tolist()) | set(self._ended)
        self._velocity = {k: v for k, v in self._velocity.items() if k in live}
        self._steps += 1
        return tracks

    def radii(self, objs: Objects) -> np.ndarray:
        """Each object's radius in the spacing's unit: a sphere's of its volume, a disc's of its area
        where a time point is one plane."""
        sp = np.asarray(self.spacing, float)
        return ball_radius(objs.voxels * float(np.prod(sp)), sp[0] if self.planar else None)

    def in_use(self) -> tuple[str, float | None]:
        """(link, max distance) the last time point was linked with: for link "auto", its last choice
        (by overlap before any)."""
        if self.link != "auto":
            return self.link, self.max_distance
        if not self.choices:
            return "overlap", self.max_distance
        return self.choices[-1]["link"], self.choices[-1]["max_distance"]

    def _choose(self, prev: Objects, cur: Objects) -> tuple[str, float | None]:
        """link "auto": overlap or distance for linking ``cur`` to ``prev``, from the cells' motion
        between them (where motion() cannot tell, too few cells paired: as the time point before).
        A run of time points linked alike is one entry of ``choices``: its first and last time
        point, the link, and the least and most of the cells' median step, of their median radius, of
        the one over the other and of the max distance (two steps, unless max_distance is given)."""
        got = motion(prev, cur, self.radii(prev), self.spacing)
        if got is None:
            return self.in_use()
        step, radius = got
        fast = step > FAST_STEP * radius
        link = "distance" if fast else "overlap"
        reach = (self.max_distance if self.max_distance is not None else float(f"{2 * step:.2g}")) if fast \
            else self.max_distance
        run = self.choices[-1] if self.choices else None
        if run is None or run["link"] != link:
            self.choices.append({"link": link, "first": cur.t, "last": cur.t, "step": [step, step],
                                 "radius": [radius, radius], "of_radius": [step / radius] * 2, "max_distance": reach,
                                 "reach": None if reach is None else [reach, reach]})
        else:
            run["last"] = cur.t
            for k, v in (("step", step), ("radius", radius), ("of_radius", step / radius), ("reach", reach)):
                if v is not None:
                    run[k] = [min(run[k][0], v), max(run[k][1], v)]
            run["max_distance"] = reach
        return link, reach

    def _given_pairs(self, prev: Objects | None, cur: Objects) -> dict[int, list]:
        """The given links between ``prev`` and ``cur``: index in prev -> indices in cur (sorted);
        an object of cur given two objects of prev to come from is refused, naming them."""
        if not self.given or prev is None or not len(prev.ids) or not len(cur.ids):
            return {}
        from ..io.volume import VolumeError

        def at(objs: Objects, k) -> int | None:
            i = int(objs.index(k)) if k is not None else len(objs.ids)
            return i if i < len(objs.ids) and objs.ids[i] == k else None
        pairs = set()
        for j, c in enumerate(cur.ids.tolist()):   # carried forward: cur's object from one of prev
            i = at(prev, self.given.get(c))
            if i is not None:
                pairs.add((i, j))
        for i, p in enumerate(prev.ids.tolist()):  # carried backward: prev's object from one of cur
            j = at(cur, self.given.get(p))
            if j is not None:
                pairs.add((i, j))
        froms: dict[int, list] = {}
        for i, j in sorted(pairs):
            froms.setdefault(j, []).append(i)
        for j, iss in froms.items():
            if len(iss) > 1:
                raise VolumeError(
                    f"object {int(cur.ids[j])} at time point {cur.t} is linked to objects "
                    f"{' and '.join(str(int(prev.ids[i])) for i in iss)} at time point {prev.t}: a cell has one "
                    "object before it (two cells do not merge into one in a lineage); erase one, or commit it again")
        out: dict[int, list] = {}
        for i, j in sorted(pairs):
            out.setdefault(i, []).append(j)
        return out

    def _divide(self, i: int, js: list, succ: dict, parents: dict) -> list:
        """prev's object ``i`` divided: her successor and ``js`` in cur are her daughters (returned)."""
        mother = int(self._last[1][i])
        family = [succ.pop(i)] + list(js)
        for j in family:
            parents[j] = mother
        self.divisions += 1
        return family

    def _predicted(self, prev: Objects, cur: Objects, idx: np.ndarray) -> np.ndarray:
        """Centroids (voxels) of prev's objects ``idx`` where cur's time point should find them."""
        at = prev.centroids[idx]
        if self.predict:   # where each track's last step, as much of it as steps keep, takes it
            keep = self.persistence()
            at = at + keep * (cur.t - prev.t) * np.array([self._velocity.get(int(self._last[1][i]), np.zeros(3))
                                                          for i in idx]).reshape(-1, 3)
        return at

    def _divide_by_distance(self, prev: Objects, cur: Objects, succ: dict, mothers: set,
                            taken: set, reach: float) -> list[tuple[int, int]]:
        """(index in prev, index in cur): objects no pairing took that are the second daughter of a
        track continued at this time point, for cells that move too far for a daughter to lie in
        where her mother was. Told by size and place: the track's successor and the object are each
        at most DAUGHTER_MAX of the mother's volume and together DAUGHTERS_SUM of it (a cell that
        merely continued keeps its size), the object lies within ``reach`` of where the mother
        was predicted and within SISTER_RADII of her radii from her sister; among several
        candidates, the pair whose midpoint is nearest the prediction."""
        moms = np.array([i for i in succ if i not in mothers], np.int64)
        used = set(succ.values()) | taken
        left = np.array([j for j in range(len(cur.ids)) if j not in used], np.int64)
        if not len(moms) or not len(left):
            return []
        sp = np.asarray(self.spacing, float)
        pred = self._predicted(prev, cur, moms) * sp
        at = cur.centroids * sp
        rows, cols, _ = within(pred, at[left], reach)
        if not len(rows):
            return []
        mom, sis, dau = moms[rows], np.array([succ[int(i)] for i in moms[rows]], np.int64), left[cols]
        vm = prev.voxels[mom].astype(float)
        vs, vd = cur.voxels[sis].astype(float), cur.voxels[dau].astype(float)
        radius = ball_radius(vm * float(np.prod(sp)))
        ok = ((prev.classes[mom] == cur.classes[dau]) & (vs <= DAUGHTER_MAX * vm) & (vd <= DAUGHTER_MAX * vm)
              & (vs + vd >= DAUGHTERS_SUM[0] * vm) & (vs + vd <= DAUGHTERS_SUM[1] * vm)
              & (np.linalg.norm(at[dau] - at[sis], axis=1) <= SISTER_RADII * radius))
        if not ok.any():
            return []
        off = np.linalg.norm((at[dau] + at[sis]) / 2 - pred[rows], axis=1)
        return [(int(moms[a]), int(left[b])) for a, b in match(rows[ok], cols[ok], 1.0 / (1.0 + off[ok]))]

    def _pair_by_distance(self, prev: Objects, cur: Objects, succ: dict, mothers: set, taken: set,
                          reach: float) -> None:
        """Objects that no overlap paired (nor made mother, nor ``taken`` in cur: daughters and
        gaps closed), paired by the nearest centroid within ``reach``; adds them to ``succ``."""
        left_p = np.array([i for i in range(len(prev.ids)) if i not in succ and i not in mothers], np.int64)
        used = set(succ.values()) | taken
        left_c = np.array([j for j in range(len(cur.ids)) if j not in used], np.int64)
        if not len(left_p) or not len(left_c):
            return
        sp = np.asarray(self.spacing, float)
        pa, ca = self._predicted(prev, cur, left_p) * sp, cur.centroids[left_c] * sp
        for a, b, _ in nearest_pairs(pa, ca, reach, prev.classes[left_p], cur.classes[left_c]):
            succ[int(left_p[a])] = int(left_c[b])

    def _close_gaps(self, cur: Objects, gaps: dict, used: set) -> dict[int, int]:
        """Unpaired objects of ``cur`` continuing tracks that ended within max_gap, by overlap."""
        out: dict[int, int] = {}
        track_at = {(e[0], e[1]): k for k, e in self._ended.items()}
        for t_old in sorted(gaps, reverse=True):   # the most recent first
            old, ov = gaps[t_old]
            if ov is None or not len(ov):
                continue
            w = iou(ov, old, cur)
            keys = [track_at.get((t_old, int(i))) for i in ov[:, 0]]
            ok = np.array([k is not None for k in keys]) & (w >= self.min_iou)
            cj = cur.index(ov[:, 1])
            ok &= np.array([j not in used and j not in out for j in cj])
            if not ok.any():
                continue
            for i, j in match(old.index(ov[ok, 0]), cj[ok], w[ok]):
                out[j] = track_at[(t_old, int(old.ids[i]))]
        return out


def motion_runs(frames, spacing=(1.0, 1.0, 1.0), planar: bool = False) -> list[dict]:
    """The Linker's ``choices`` that link "auto" makes of consecutive time points' Objects
    (``frames``, in order), without linking them: how fast the cells moved, whatever a linking made
    of them."""
    linker = Linker(spacing=tuple(float(s) for s in spacing), link="auto", planar=planar)
    prev = None
    for cur in frames:
        if prev is not None:
            linker._choose(prev, cur)
        prev = cur
    return linker.choices


def motion(prev: Objects, cur: Objects, radii: np.ndarray, spacing=(1.0, 1.0, 1.0),
           least: int = 3) -> tuple[float, float] | None:
    """(median step, median radius) of the cells from ``prev`` to ``cur`` in the spacing's unit, or
    None where fewer than ``least`` cells can be paired. The step is read off a one-to-one pairing
    of centroids (of one class) within MOTION_REACH radii that keeps the total distance least: it
    asks no overlap, so cells that moved past their size are measured as well as slow ones (where
    cells lie further apart than they move, as a tracking needs, the pairing is the true one)."""
    if len(prev.ids) < least or len(cur.ids) < least:
        return None
    radius = float(np.median(radii))
    if not radius > 0:
        return None
    sp = np.asarray(spacing, float)
    pairs = nearest_pairs(prev.centroids * sp, cur.centroids * sp, MOTION_REACH * radius, prev.classes, cur.classes)
    if len(pairs) < least:
        return None
    return float(np.median([d for _, _, d in pairs])), radius
