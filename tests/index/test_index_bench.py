"""``bench/index_bench.py --section ivfpq`` runs tiny (``--n``) and adds its own section to the report,
keeping what the report already holds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_ivfpq_bench_runs_tiny_and_adds_its_section(tmp_path):
    md, out = tmp_path / "index_bench.md", tmp_path / "pq.json"
    md.write_text("# Index bench (issue #5)\n\nthe ivf section\n")
    cmd = [sys.executable, str(REPO / "bench" / "index_bench.py"), "--section", "ivfpq", "--data", "spectral",
           "--n", "4000", "--dim", "32", "--clusters", "20", "--nlist", "0", "--train", "4000", "--queries", "50",
           "--timed", "5", "--nprobe", "1,4", "--rerank", "40", "--threads", "1", "--md", str(md), "--json", str(out)]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    for _ in range(2):  # the second run replaces its section instead of adding another
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
    text = md.read_text()
    assert text.startswith("# Index bench (issue #5)\n\nthe ivf section\n")
    assert text.count("## IVF-PQ, spectral data (issue #13)") == 1 and "--n 4000" in text and "targets:" in text
    result = json.loads(out.read_text())
    assert result["params"]["kind"] == "ivfpq" and result["params"]["pq_m"] == 4
    sizes = result["bytes_per_vector"]
    assert sizes["flat"] == 128 and sizes["ram_codes_ids"] == 4 + 8 and sizes["disk_faiss_file"] > 12
    auto = next(r for r in result["rows"] if r["auto"])
    assert 0 <= auto["recall@10_codes"] <= auto["recall@10_reranked"] <= 1
