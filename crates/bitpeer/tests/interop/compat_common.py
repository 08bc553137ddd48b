"""Helpers shared by compat_qb.py and compat_tr.py: JSON lines out, checks, bounded waits."""
import filecmp
import json
import os
import time

DEADLINE = time.monotonic() + 150


def say(obj):
    print(json.dumps(obj), flush=True)


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def wait(what, f, timeout=120):
    """Poll f until it returns something true, at most timeout seconds (and the script's
    overall deadline)."""
    end = min(time.monotonic() + timeout, DEADLINE)
    last = None
    while time.monotonic() < end:
        last = f()
        if last:
            return last
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def same_content(path, original):
    """path (a file or folder) has the same files with the same bytes as original."""
    if os.path.isdir(original):
        cmp = filecmp.dircmp(path, original)
        return not (cmp.left_only or cmp.right_only or cmp.diff_files or cmp.funny_files
                    or cmp.subdirs and not all(same_content(os.path.join(path, d), os.path.join(original, d))
                                               for d in cmp.common_dirs))
    return filecmp.cmp(path, original, shallow=False)


def serve_file(path):
    """Serve path's folder over HTTP on 127.0.0.1 (a thread); returns path's URL."""
    import functools
    import http.server
    import threading
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=os.path.dirname(path))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{srv.server_address[1]}/{os.path.basename(path)}"
