"""Starting rank processes without running the caller's script again in each of them.

Under the spawn start method a child first re-runs the parent's main script, so that what the
script defines can be unpickled there. The ranks run this package's functions only. A script
without the ``if __name__ == "__main__":`` guard therefore started the whole run again in every
rank, which Python refuses in a child: the rank died before reading its arguments, and the parent,
writing them (a numpy input travels with them), waited on the pipe forever. While ranks start, the
main module is hidden from them, unless what they are sent refers to something the script defines.
"""
from __future__ import annotations

import contextlib
import pickle
import sys


class _Sink:
    def write(self, b) -> int:
        return len(b)


class _MainFinder(pickle.Pickler):
    found = False

    def persistent_id(self, obj):
        try:
            if getattr(obj, "__module__", None) == "__main__":
                self.found = True
        except Exception:   # an attribute lookup an odd object refuses: not ours to judge
            pass
        return None


def refers_to_main(*objects) -> bool:
    """Whether pickling ``objects`` refers to a class, function or instance the __main__ module defines
    (array buffers are passed over, not copied)."""
    finder = _MainFinder(_Sink(), protocol=5, buffer_callback=lambda buf: None)
    try:
        finder.dump(objects)
    except Exception:   # unpicklable: starting the rank will say so
        return False
    return finder.found


@contextlib.contextmanager
def main_hidden(*payload):
    """While it is open, a spawned child does not run the main script first, unless ``payload`` (what
    the children are sent) needs it."""
    main = sys.modules.get("__main__")
    if main is None or refers_to_main(*payload):
        yield
        return
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__spec__ = None
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)
