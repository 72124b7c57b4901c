"""The report of ``xmodal compare``: one table row per strategy, frontier plots, report.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import torch


def breakdown_keys(results: Sequence[dict[str, Any]], head: str) -> list[str]:
    """Numeric ``<head>_<...>`` keys of any result (a task's breakdown, e.g. ``accuracy_held_out_true``),
    sorted; seed summaries (``_std``, ``_runs``) left out."""
    keys = {k for r in results for k, v in r.items() if k.startswith(f"{head}_") and isinstance(v, (int, float))
            and not isinstance(v, bool) and not k.endswith(("_std", "_runs"))}
    return sorted(keys)


def table_rows(results: list[dict[str, Any]], reference: str, report: Sequence[str] = ("top1", "top5")
               ) -> list[dict[str, Any]]:
    """One summary row per strategy (the Markdown / terminal table): the task's ``report`` metrics
    (the first one with its standard deviation over seeds, when there are several), then efficiency;
    "% of full" is relative to the trainable parameters of the ``reference`` run's label; a task's
    breakdown figures (``breakdown_keys``) close the row."""
    full = next((r["trainable_params"] for r in results if r["label"] == reference), None)
    head = report[0]
    extra = [k for k in breakdown_keys(results, head) if k not in report]
    rows = []
    for r in results:
        rows.append({
            "strategy": r["label"], "backbone": "frozen" if r["frozen_backbone"] else "tuned",
            head: round(float(r.get(head, float("nan"))), 4),
            **({f"{head} std": round(r[f"{head}_std"], 4), "seeds": len(r["seeds"])} if f"{head}_std" in r else {}),
            **{k: round(float(r.get(k, float("nan"))), 4) for k in report[1:]},
            "trainable": r["trainable_params"],
            "% of full": round(100 * r["trainable_params"] / full, 2) if full else float("nan"),
            "total": r["total_params"], "train s": round(r["train_seconds"], 1),
            "s/epoch": round(r["seconds_per_epoch"], 3), "epochs": r["epochs"],
            "peak MB": round(r["peak_memory_mb"], 1), "clips/s": round(r.get("throughput_clips_per_s", float("nan")), 1),
            "MFLOPs/clip": round(r["flops_per_clip"] / 1e6, 2),
            **{k: round(float(r.get(k, float("nan"))), 4) for k in extra},
        })
    return rows


def plot_frontier(rows: list[dict[str, Any]], x: str, path: Path, xlabel: str, metric: str = "top1") -> Path:
    """``metric`` against ``x`` (log scale), one labelled point per strategy, the Pareto frontier as a line."""
    from xmodal.eval.plots import pyplot

    plt = pyplot()
    pts = sorted((max(float(r[x]), 1e-3 if x != "trainable" else 1.0), float(r[metric]), r["strategy"]) for r in rows)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for xv, yv, name in pts:
        ax.scatter(xv, yv, color="tab:blue" if "frozen" in str(next(r["backbone"] for r in rows if r["strategy"] == name)) else "tab:orange")
        ax.annotate(name, (xv, yv), fontsize=7, xytext=(3, 3), textcoords="offset points")
    frontier, best = [], -1.0
    for xv, yv, _ in pts:
        if yv > best:
            frontier.append((xv, yv))
            best = yv
    ax.plot(*zip(*frontier), "--", color="grey", label=f"frontier (best {metric} so far)")
    ax.set_xscale("log")
    top = max((y for _, y, _ in pts if y == y), default=1.0)
    ax.set_ylim(-0.02, 1.02 if top <= 1 else top * 1.05)  # rates in [0, 1]; CIDEr-D and the like above
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"test {metric}")
    ax.set_title("blue: frozen backbone, orange: backbone tuned")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_compare_report(cfg: Any, task: Any, results: list[dict[str, Any]], base: str, splits: dict[str, int],
                         wall: float, say: Callable[[str], None],
                         extra: Sequence[tuple[str, str, list[dict[str, Any]]]] = ()) -> dict[str, Any]:
    """Write results.json, report.md and the two frontier plots to ``cfg.out/report/<task>``; print the table.
    ``extra``: more sections (title, text, table rows), printed and kept in results.json by title."""
    from xmodal.config import to_dict
    from xmodal.eval.report import markdown_table, text_table, write_report

    head = task.report[0]
    rows = table_rows(results, cfg.reference, task.report)
    out = Path(cfg.out) / "report" / cfg.transfer.task  # one report per task: several tasks can share an --out
    out.mkdir(parents=True, exist_ok=True)
    plots = [(f"{head} vs trainable parameters", plot_frontier(rows, "trainable", out / "accuracy_vs_params.png",
                                                               "trainable parameters (log)", head)),
             (f"{head} vs training time", plot_frontier(rows, "train s", out / "accuracy_vs_time.png",
                                                        "training wall time, s (log)", head))]
    summary = {"task": cfg.transfer.task, "table": rows, "runs": results, "base": base, "wall_seconds": wall,
               "config": to_dict(cfg), "splits": splits, **{title: table for title, _, table in extra}}
    memory_note = ("Peak memory is the growth of GPU memory during the run" if torch.cuda.is_available() else
                   "Peak memory is the growth of the process's resident memory during the run (CPU); strategies "
                   "run one after another in one process, so a run that fits in memory freed by an earlier one "
                   "shows ~0 — `xmodal transfer` measures one strategy in a fresh process")
    seeds = (f" Every strategy ran with {cfg.seeds} seeds ({cfg.transfer.seed}, +1, ...): the metrics and train time "
             f"are means, `{head} std` the standard deviation." if cfg.seeds > 1 else "")
    sections = [("Setup", f"Task: `{cfg.transfer.task}` ({task.paper}). Base model: `{base}`. Rows: {splits}. "
                          f"Wall time {wall:.0f}s.{seeds} {memory_note}."),
                ("Results (test split)", markdown_table(rows)),
                *[(title, f"{text}\n\n{markdown_table(table)}") for title, text, table in extra],
                ("Strategies", "\n".join(f"- **{r['label']}**: {r['paper']}" for r in results))]
    files = write_report(out, summary, f"xmodal compare: transfer strategies on the {cfg.transfer.task} task",
                         sections, plots)
    seeded = [f"{head} std"] if cfg.seeds > 1 else []
    say("\n" + text_table(rows, ["strategy", "backbone", head, *seeded, *task.report[1:], "trainable", "% of full",
                                 "train s", "s/epoch", "clips/s", "MFLOPs/clip"]))
    broken_down = [k for k in breakdown_keys(results, head) if k not in task.report]
    if broken_down:
        say("\n" + text_table(rows, ["strategy", head, *broken_down]))
    for title, _, table in extra:
        say(f"\n{title}\n" + text_table(table, list(table[0]) if table else []))
    say(f"\nwall time {wall:.0f}s; report: {files['report']}")
    return summary


def multi_section(results: list[dict[str, Any]], singles: dict[str, dict[str, dict[str, Any]]], tasks: Sequence[str]
                  ) -> tuple[str, str, list[dict[str, Any]]]:
    """A multi-task compare's section: per strategy and task, the headline metric of the multi-task run
    beside the run on that task alone; then per strategy the parameters (the strategy's own: one shared
    set vs one set per task; the heads) and the training time of the one run vs the k runs."""
    from xmodal.tasks.base import TASKS

    rows = []
    for r in results:
        alone = singles[r["label"]]
        for t in tasks:
            key = TASKS.get(t).report[0]
            one, multi = float(alone[t].get(key, float("nan"))), float(r.get(f"{t}_{key}", float("nan")))
            rows.append({"strategy": r["label"], "task": t, "metric": key, "alone": round(one, 4), "multi-task": round(multi, 4),
                         "points": round(100 * (multi - one), 1), "strategy params": alone[t].get("strategy_params", 0),
                         "head params": alone[t].get("head_params", 0), "train s": round(alone[t]["train_seconds"], 1)})
        k = len(tasks)
        rows.append({"strategy": r["label"], "task": f"all {k} (multi-task run)", "metric": "score",
                     "alone": round(sum(float(alone[t].get(TASKS.get(t).report[0], float("nan"))) for t in tasks) / k, 4),
                     "multi-task": round(float(r.get("score", float("nan"))), 4), "points": float("nan"),
                     "strategy params": f"{r['strategy_params']} vs {sum(alone[t]['strategy_params'] for t in tasks)}",
                     "head params": f"{r['head_params']} vs {sum(alone[t]['head_params'] for t in tasks)}",
                     "train s": f"{r['train_seconds']:.1f} vs {sum(alone[t]['train_seconds'] for t in tasks):.1f}"})
    text = (f"Each strategy trained once on {', '.join(tasks)} (one shared set of its weights, a head per task) "
            "beside the same strategy on each task alone. `points`: multi-task minus alone, in points. The summary "
            "row per strategy gives the multi-task run's figures vs the sum over the single-task runs.")
    return "Multi-task vs single-task", text, rows
