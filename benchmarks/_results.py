"""What every validation benchmark does last: save its results as JSON with the date, and say where."""
from __future__ import annotations

import json
import time
from pathlib import Path


def save_results(out: str | Path, regions, results: list) -> int:
    Path(out).write_text(json.dumps({"regions": regions, "results": results,
                                     "date": time.strftime("%Y-%m-%d %H:%M")}, indent=1))
    print(f"saved {out}")
    return 0
