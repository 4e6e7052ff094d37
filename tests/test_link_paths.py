"""The paths drawn of objects followed by hand (tracking.paths) against the tracking of the same
objects with the same links (track_objects, which reads the labels): the same tracks, lineage and
centres."""
import numpy as np

from halo_seg.tracking.paths import link_paths
from halo_seg.tracking.phantom import cell_timelapse
from halo_seg.tracking.run import track_objects


def _followed(seed=1):
    """A dividing time-lapse's objects numbered anew at each time point (as committed objects are:
    an id is one object of one time point), each linked to the object it comes from, and their
    centres."""
    tl = cell_timelapse(shape=(20, 56, 56), cells=5, timepoints=6, radius=4.0, divisions=2, seed=seed)
    mother = {int(k): int(p) for k, _, _, p in tl.lineage.tolist()}
    ids = np.zeros(tl.ids.shape, np.uint16)
    links, centres = {}, {}
    for t in range(len(tl.ids)):
        for k in np.unique(tl.ids[t])[1:].tolist():
            new = 100 * (t + 1) + k
            where = tl.ids[t] == k
            ids[t][where] = new
            centres[new] = (t, *np.argwhere(where).mean(0))
            if t and (tl.ids[t - 1] == k).any():
                links[new] = 100 * t + k
            elif t and mother.get(k) and (tl.ids[t - 1] == mother[k]).any():
                links[new] = 100 * t + mother[k]
    return tl, ids, links, centres


def _groups(points, graph):
    """Each track as the set of its (t, rounded centre), and each daughter's mother as such a set."""
    key = {}
    for k, t, z, y, x in points.tolist():
        key.setdefault(int(k), set()).add((int(t), round(z, 3), round(y, 3), round(x, 3)))
    tracks = {k: frozenset(v) for k, v in key.items()}
    return set(tracks.values()), {tracks[d]: tracks[m[0]] for d, m in graph.items()}


def test_the_paths_of_linked_objects_are_the_tracks_the_tracking_makes_of_them(tmp_path):
    tl, ids, links, centres = _followed()
    paths = link_paths(centres, links)
    res = track_objects(ids, tmp_path / "ref.zarr", objects_given=True, links=links)
    from halo_seg.io.track_output import track_points
    points, graph = track_points(tmp_path / "ref.zarr")
    assert res.given_links == len(links) and res.divisions >= 1
    assert paths.divisions == res.divisions and paths.tracks == res.tracks
    assert not paths.merges and paths.unused == 0
    assert _groups(paths.points, paths.graph) == _groups(points, graph)
    # by time point, then track: napari's Tracks take them so, as the track output holds them
    assert np.all(np.diff(paths.points[:, 1]) >= 0)


def test_links_followed_backward_give_the_same_paths_and_odd_links_are_told():
    _, _, links, centres = _followed()
    forward = link_paths(centres, links)
    # followed backward from the last time point: each earlier object carried from the later one
    backward = {}
    for child, parent in links.items():
        if sum(1 for p in links.values() if p == parent) == 1:   # a division cannot be followed backward as one
            backward[parent] = child
        else:
            backward[child] = parent
    assert _groups(link_paths(centres, backward).points, {})[0] == _groups(forward.points, {})[0]

    first, later = sorted(centres)[0], max(centres)
    gone = link_paths(centres, {**links, 99999: first})   # an object erased since
    assert gone.unused == 1 and _groups(gone.points, {})[0] == _groups(forward.points, {})[0]
    far = link_paths(centres, {later: first})   # not at the time point next to it
    assert far.unused == 1 and len(far.points) == 0

    a, b = [k for k in centres if centres[k][0] == 0][:2]
    c = next(k for k in centres if centres[k][0] == 1)
    merged = link_paths(centres, {c: a, b: c})   # c carried from a, and b (before it) carried from c
    assert merged.merges == [(c, max(a, b))] and merged.tracks == 1 and len(merged.points) == 2


def test_no_links_no_paths():
    paths = link_paths({1: (0, 1.0, 2.0, 3.0)}, {})
    assert paths.points.shape == (0, 5) and paths.tracks == 0 and paths.graph == {}
