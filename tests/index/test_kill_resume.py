"""A killed indexer leaves a loadable index, and a re-run finishes without re-embedding anything."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

from xmodal.index import BuildConfig, Index
from xmodal.index.build import SLEEP_ENV


def _rows(db) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            return con.execute("SELECT COUNT(*) FROM files").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_kill_mid_run_then_resume(media, tiny_model_dir, tmp_path):
    out = tmp_path / "ix"
    first = Index.build([media], model=str(tiny_model_dir), out=out, config=BuildConfig(progress=False))
    before = {h.path for h in first.search("a blue triangle", k=50)}
    assert len(first) == 11  # 8 images + 3 videos (this model has no audio tower)
    first.close()
    images = sorted((media / "images").iterdir())
    for k in range(8):  # 8 new files, embedded one per committed chunk, slowly
        shutil.copy(images[k % len(images)], media / "images" / f"new_{k}.png")
    cmd = [sys.executable, "-m", "xmodal.cli.main", "index", str(media), "--out", str(out), "--no-progress",
           "--set", "chunk=1"]
    proc = subprocess.Popen(cmd, env={**os.environ, SLEEP_ENV: "0.4"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while _rows(out / "index.sqlite") < 13 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stdout.read().decode()

    partial = Index.load(out)  # the previous rows and every committed new one, searchable
    assert 13 <= len(partial) < 19
    assert before <= {h.path for h in partial.search("a blue triangle", k=50)}
    done_before = len(partial)
    partial.close()

    resumed = Index.build([media], model=str(tiny_model_dir), out=out, config=BuildConfig(progress=False))
    r = resumed.last_report
    assert len(resumed) == 19 and r.embedded == 19 - done_before and r.unchanged == done_before
    assert len(resumed.search("a blue triangle", k=50)) == 19
