"""Following a time-lapse's objects over time: track ids that stay with each cell, and its lineage
(tracking.link decides, tracking.run reads and writes)."""
from .link import Linker, Objects
from ..io.track_output import TRACKS, ctc_lineage, write_ctc
from .run import TrackResult, track_objects

__all__ = ["Linker", "Objects", "TRACKS", "TrackResult", "ctc_lineage", "track_objects", "write_ctc"]
