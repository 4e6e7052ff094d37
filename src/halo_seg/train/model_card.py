"""A model card beside every trained 3D U-Net (`<weights>.md`): what the network is, what it was
trained on and how, which weights were kept and what they scored, written from the weights' own
metadata (and the `.history.json` beside them), so that it can be written again from the file alone
(`halo-seg card WEIGHTS`). The shipped models' cards follow the same outline, by hand."""
from __future__ import annotations

import json
import time
from pathlib import Path

from ..engine.weights import load_unet

CURVE_ROWS = 12   # validations listed in the card; the history file has them all


def _fmt_dice(d) -> str:
    return "n/a" if d is None else f"{d:.3f}"


def _normalisation(spec: dict) -> str:
    kind = spec.get("kind", "zscore")
    if kind == "percentile":
        lo, hi = spec.get("percentiles", (0.5, 99.5))
        return f"clipped to its {lo:g}th..{hi:g}th percentiles and scaled to -1..1 (per volume)"
    if kind == "window":
        lo, hi = spec["window"]
        return f"the window {lo:g}..{hi:g} (a CT window in HU), scaled to -1..1"
    return "z-scored over the whole volume"


def _input(meta: dict, config: dict) -> str:
    """The input channels, in order, and how each is normalised."""
    n = int(config.get("in_channels", 1))
    spec = meta.get("normalization") or {}
    if n == 1:
        return f"one channel, {_normalisation(spec)}"
    names = meta.get("channels") or [f"channel {k}" for k in range(n)]
    specs = spec if isinstance(spec, list) else [spec] * n
    return f"{n} channels, stacked in this order: " + "; ".join(
        f"{k} {name}, {_normalisation(sp)}" for k, (name, sp) in enumerate(zip(names, specs)))


def _data(tr: dict) -> str:
    data = tr.get("data") or (tr.get("config") or {}).get("data")
    if isinstance(data, str):
        return data
    if isinstance(data, dict):
        pairs = [f"`{i}` + `{lab}`" for i, lab in zip(data.get("images", []), data.get("labels", []))]
        held = [f"`{i}`" for i in data.get("validation", [])]
        # a dataset folder: its name, layout and channel first, the pairs it gave after
        which = (f"channel {data['channel']}" if "channel" in data else f"channels {data.get('channels')}")
        source = (f"the {data['layout']} dataset `{data['dataset']}`, {data['cases']} labelled cases, {which}: "
                  if data.get("dataset") else "")
        return source + ("; ".join(pairs) or "not recorded") + (f"; validated on {', '.join(held)}" if held else "")
    return "not recorded (trained from Python without naming its data)"


def _start(tr: dict) -> str:
    init = tr.get("init")
    if not init:
        return "random weights" if tr.get("config") else "not recorded"
    head = ("every layer, its classifier too" if init.get("head") == "kept" else
            f"every layer but its classifier ({init.get('n_classes')} classes there), which started afresh")
    return f"fine-tuned from `{init['weights']}` (SHA-256 {init['sha256']}...): {head}"


def card_text(weights) -> str:
    """The card of a 3D U-Net saved by halo-seg's trainers."""
    net, meta = load_unet(weights)
    path = Path(meta["path"])
    tr = meta.get("training") or {}
    cfg = tr.get("config") or {}
    c = net.config
    n_params = sum(p.numel() for p in net.parameters())
    classes = meta.get("classes") or ["background"] + [f"class {k}" for k in range(1, c["out_channels"])]
    spacing = tr.get("spacing")
    unit = f" {tr['unit']}" if tr.get("unit") else ""
    voxel = (f"{' x '.join(f'{s:g}' for s in spacing)}{unit} (z, y, x); `segment` runs other scans resampled to it"
             if spacing else "not recorded (its volumes recorded none): `segment` runs any scan as it is")
    how = [f"{cfg['iterations']} iterations" if "iterations" in cfg else None,
           f"batch {cfg['batch']}" if "batch" in cfg else None,
           f"patches {'x'.join(map(str, cfg['patch']))}" if "patch" in cfg else None,
           f"AdamW + one-cycle lr {cfg['lr']:g}" if "lr" in cfg else None,
           f"{cfg.get('precision', 'fp32')}",
           f"on {cfg['device']}" if cfg.get("device") else None,
           (f"partitioned over a {'x'.join(map(str, tr['grid']))} grid" + (f", {tr['replicas']} replicas"
                                                                         if tr.get("replicas", 1) > 1 else ""))
           if tr.get("partitioned") else None,
           "soft Dice + U-Net border-weighted cross-entropy",
           "flips and gamma" if tr.get("partitioned") and not cfg.get("augment")
           else "flips, elastic/scale, gamma/contrast/noise"]
    held = {"held-out volumes": f"{tr.get('validation_volumes')} held-out volume(s), whole"
                                + (f" ({tr['held_out']})" if tr.get("held_out") else ""),
            "held-out volume regions": f"{tr.get('validation_volumes')} held-out volume(s), where labelled only"
                                       + (f" ({tr['held_out']})" if tr.get("held_out") else ""),
            "held-out regions": "held-out regions of the training volumes, never in a training loss"
                                + (f" ({tr['held_out']})" if tr.get("held_out") else ""),
            "training volumes": "the training volumes themselves (no held-out volume was given: the scores "
                                "below say how well it fits them, not how it does on new data)"
            }.get(tr.get("validated_on"), "not recorded")
    dice = tr.get("best_val_dice") or []
    rows = [f"# Model card: `{path.name}`", "", "| | |", "| --- | --- |",
            f"| network | `halo_seg.engine.unet.UNet3D(in_channels={c['in_channels']}, out_channels={c['out_channels']}, "
            f"base={c['base']}, depth={c['depth']})`, {n_params / 1e6:.2f} M parameters, "
            f"{path.stat().st_size / 2 ** 20:.1f} MB |",
            f"| classes | {', '.join(f'{k} {name}' for k, name in enumerate(classes))} |",
            f"| input | {_input(meta, c)} (the engine does this) |",
            f"| voxel size | {voxel} |",
            f"| data | {_data(tr)} |",
            f"| started from | {_start(tr)} |",
            "| command | " + (f"`{command}`" if (command := tr.get("command") or cfg.get("command")) else "not recorded")
            + " |",
            f"| training | {', '.join(h for h in how if h)} |",
            f"| validation | {held} |",
            f"| selected | iteration {tr.get('iteration', '?')} of {cfg.get('iterations', '?')}, best mean validation Dice |",
            "", "## Metrics (validation, at the selected iteration)", "", "| class | Dice |", "| --- | --- |"]
    rows += [f"| {name} | {_fmt_dice(d)} |" for name, d in zip(classes[1:], dice)]
    hist = Path(str(path) + ".history.json")
    if hist.exists():
        entries = json.loads(hist.read_text())
        step = max(1, -(-len(entries) // CURVE_ROWS))
        shown = entries[::step] + ([entries[-1]] if (len(entries) - 1) % step else [])
        rows += ["", f"## Training curve (`{hist.name}` holds every validation)", "",
                 "| iteration | loss | " + " | ".join(classes[1:]) + " | seconds |",
                 "| --- | --- | " + " | ".join("---" for _ in classes[1:]) + " | --- |"]
        for e in shown:
            rows.append(f"| {e['iteration']} | {e['loss']:.4f} | "
                        + " | ".join(_fmt_dice(d) for d in e.get("val_dice", [])) + f" | {e.get('seconds', '')} |")
    rows += ["", "## Limits", "",
             "Written by halo-seg from the weights' metadata on " + time.strftime("%Y-%m-%d") + ". It knows the data "
             "only by the files named above: add who and what they show (subjects, scanners, stains), and where "
             "the model has not been measured. The Dice above is on the validation data named above, which also "
             "chose the iteration kept, so it is slightly optimistic.", ""]
    return "\n".join(rows)


def card_path(weights) -> Path:
    return Path(weights).with_suffix(".md")


def write_card(weights, out=None) -> Path:
    """Write the card of ``weights`` to ``out`` (default: the weights' path with `.md`)."""
    out = Path(out) if out else card_path(weights)
    out.write_text(card_text(weights))
    return out
