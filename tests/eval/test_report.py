import json

import numpy as np
from PIL import Image

from xmodal.eval.plots import plot_confusion, plot_history, plot_per_class
from xmodal.eval.report import markdown_table, text_table, write_report


def _is_png(path):
    with Image.open(path) as im:
        return im.format == "PNG" and im.size[0] > 100 and im.size[1] > 100


def test_plots_write_readable_pngs(tmp_path):
    cm = np.array([[3, 1, 0], [0, 0, 0], [0, 2, 2]])
    names = ["a", "b", "c"]
    assert _is_png(plot_confusion(cm, names, tmp_path / "cm.png", "t", highlight=["c"]))
    epochs = [{"epoch": i, "loss": 2.0 / i, "val_top1": 0.3 * i} for i in (1, 2, 3)]
    assert _is_png(plot_history(epochs, tmp_path / "h.png"))
    assert _is_png(plot_per_class({"a": 0.5, "b": None, "c": 1.0}, tmp_path / "p.png", highlight=["c"]))


def test_tables_format_rows():
    rows = [{"name": "x", "top1": 0.123456, "params": 1234567}, {"name": "y", "top1": float("nan")}]
    md = markdown_table(rows).splitlines()
    assert md[0] == "| name | top1 | params |" and md[2] == "| x | 0.1235 | 1,234,567 |"
    assert md[3] == "| y | – |  |"
    text = text_table(rows).splitlines()
    assert text[0].split() == ["name", "top1", "params"] and len(text) == 4
    assert markdown_table([]) == "(no rows)\n"


def test_write_report_round_trips_results_and_links_plots(tmp_path):
    plot = plot_per_class({"a": 1.0}, tmp_path / "plot.png")
    files = write_report(tmp_path, {"x": np.float32(0.5), "arr": np.arange(3)}, "Title",
                         [("Section", "body")], [("A plot", plot)])
    assert json.loads(files["results"].read_text()) == {"x": 0.5, "arr": [0, 1, 2]}
    text = files["report"].read_text()
    assert text.startswith("# Title") and "## Section" in text and "![A plot](plot.png)" in text
