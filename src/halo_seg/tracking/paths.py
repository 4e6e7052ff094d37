"""The paths of objects followed by hand: each object's centre at its time point and the object it
was carried from (the interactive widget's Next and Previous time point keep it as the objects'
"carried from"), as napari's Tracks data and lineage graph, drawn as the objects are committed. The
links are read as `track --ids` reads them (tracking.link.Linker's given links): either way in
time, between adjacent time points only; an object with two successors divides (each daughter a
new track whose parent is the mother's). Unlike `track`, nothing is linked by overlap: an object
no one followed is no path."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Paths:
    points: np.ndarray                 # (N, 5): track, t, z, y, x, by time point then track
    graph: dict = field(default_factory=dict)   # {daughter track: [mother track]}
    tracks: int = 0
    divisions: int = 0
    merges: list = field(default_factory=list)  # (object, the object before it whose link was not drawn)
    unused: int = 0                    # links to an object gone, or not at the time point next to it


def link_paths(centres: dict, links: dict) -> Paths:
    """``centres``: object id -> (t, z, y, x) of its centre; ``links``: object id -> the id it was
    carried from. An object with two objects before it (a merge, which `track` refuses) keeps the
    link to the one of the lower id; the other is reported in ``merges``."""
    before: dict[int, int] = {}
    after: dict[int, list] = {}
    merges, unused = [], 0
    pairs = []
    for child, parent in sorted((int(c), int(p)) for c, p in links.items()):
        if child not in centres or parent not in centres:
            unused += 1
            continue
        tc, tp = int(centres[child][0]), int(centres[parent][0])
        if tp == tc - 1:
            pairs.append((parent, child))
        elif tp == tc + 1:   # followed backward: the later object was carried to the earlier one
            pairs.append((child, parent))
        else:
            unused += 1
    for early, late in sorted(set(pairs)):
        if late in before:
            merges.append((late, early))
            continue
        before[late] = early
        after.setdefault(early, []).append(late)
    nodes = sorted(set(before) | set(after), key=lambda k: (int(centres[k][0]), k))
    track_of: dict[int, int] = {}
    graph: dict[int, list] = {}
    rows, tracks = [], 0
    for node in nodes:
        mother = before.get(node)
        if mother is not None and len(after[mother]) == 1:
            track_of[node] = track_of[mother]
        else:
            tracks += 1
            track_of[node] = tracks
            if mother is not None:
                graph[track_of[node]] = [track_of[mother]]
        rows.append([track_of[node], *(float(v) for v in centres[node])])
    points = np.array(rows, float).reshape(-1, 5)
    if len(points):
        points = points[np.lexsort((points[:, 0], points[:, 1]))]
    divisions = sum(1 for k in after if len(after[k]) > 1)
    return Paths(points, graph, tracks, divisions, merges, unused)
