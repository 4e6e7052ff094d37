"""`halo-seg` command line: segment, batch, resample, convert, card, export, measure, instances,
track, track-edit, track-score, track-import, carry, evaluate, review, session, demo, train, train-default,
train-interactive, train-quality, info.

A module per kind of work, each with its commands and their arguments: segment.py (segment, batch,
review), volumes.py (info, resample, convert), labels.py (export, measure, instances, evaluate),
tracking.py (track, track-edit, track-score, track-import, carry), training.py (train, card, train-default,
train-interactive, train-quality), interactive.py (demo, session); common.py holds the arguments several share."""
from __future__ import annotations

import argparse
import sys

from . import interactive, labels, segment, tracking, training, volumes
from .training import _read_pair, _user_volumes

__all__ = ["build_parser", "main", "_read_pair", "_user_volumes"]   # the tests call the last two


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="halo-seg", description=__doc__.split("\n\n")[0])   # not the layout
    sub = p.add_subparsers(dest="cmd", required=True)
    segment.add_segment(sub)
    segment.add_batch(sub)
    volumes.add_resample(sub)
    volumes.add_convert(sub)
    training.add_card(sub)
    labels.add_export(sub)
    labels.add_measure(sub)
    labels.add_instances(sub)
    tracking.add_track(sub)
    tracking.add_track_edit(sub)
    tracking.add_track_score(sub)
    tracking.add_track_import(sub)
    tracking.add_carry(sub)
    labels.add_evaluate(sub)
    segment.add_review(sub)
    interactive.add_session(sub)
    interactive.add_demo(sub)
    training.add_train(sub)
    training.add_train_default(sub)
    training.add_train_interactive(sub)
    training.add_train_quality(sub)
    volumes.add_info(sub)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from ..engine.partition import PartitionError
    from ..engine.runner import EngineError
    from ..engine.weights import WeightsError
    from ..io import VolumeError
    from ..train.unet_train import TrainingError
    from ..interactive.segmenter import InteractiveError
    from ..engine.resample import ResampleError
    try:
        return args.fn(args)
    except (VolumeError, PartitionError, EngineError, WeightsError, TrainingError, InteractiveError,
            ResampleError, FileNotFoundError) as exc:
        print(f"halo-seg {args.cmd}: error: {exc}", file=sys.stderr)
        return 2
