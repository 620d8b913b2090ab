"""Print the markdown tables of one summarize record: per rule the top box with its interval and
paired difference against ``sign``, the per-object scores of its all-boxes output, and the oracles
of the same maps."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from benchmarks.research.per_image.errors import fail


def fmt_ci(v: float, c: list[float]) -> str:
    return f"{v:.1f} [{c[0]:.1f}, {c[1]:.1f}]"


def rule_cells(name: str, x: dict[str, Any]) -> list[str]:
    """One row: ``sign`` shows the product's ``--boxes all``, the others their adaptive all boxes."""
    k = "today" if name == "sign" else "adaptive"
    cells = [name + ("" if k == "adaptive" else f" ({k})")]
    for s in ("photos", "multi"):
        y = x.get(s)
        if y is None:
            cells += ["-", "-"]
            continue
        d = y.get("top_minus_sign", [0, 0, 0])
        cells += [fmt_ci(y["top"], y["top_ci95"]), f"{d[0]:+.1f} [{d[1]:+.1f}, {d[2]:+.1f}]"]
    y = x.get("multi")
    if y:
        z = y[k]
        r, p = z["recall50_ci95"], z["precision50_ci95"]
        cells.append(
            f"{z['ap50']:.1f} / {z['recall50']:.1f} [{r[0]:.1f}, {r[1]:.1f}] / "
            f"{z['precision50']:.1f} [{p[0]:.1f}, {p[1]:.1f}]; {z['boxes_per_image']:.2f}/img, "
            f"tied {z['images_with_tied_scores']}"
        )
    else:
        cells.append("-")
    y = x.get("lobby")
    if y:
        z = y[k]
        cells += [
            fmt_ci(y["top"], y["top_ci95"]),
            f"{z['ap50']:.1f} / {z['recall50']:.1f} / {z['precision50']:.1f}",
        ]
    else:
        cells += ["-", "-"]
    return cells


def tables(r: dict[str, Any], names: list[str]) -> list[str]:
    tag = r["tag"]
    lines = [
        f"\n{tag}: top box GT-known (95 % CI) and paired difference vs sign [CI]; per-object of the "
        "all-boxes output\n",
        "| rule | raccoon CV top | d vs sign | canvases top | d vs sign | canvases AP50 / R / P (all boxes) "
        "| lobby test top | lobby AP50 / R / P |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        "| " + " | ".join(rule_cells(n, r["candidates"][n])) + " |" for n in names if n in r["candidates"]
    ]
    lines += [
        "\nOracles of the same maps (dataset oracle (t) [CI] / per-image oracle [CI] / labelled t chosen "
        "on the fitting folds):\n",
        "| map | set | dataset oracle (t) | per-image oracle | labelled t, CV |",
        "|---|---|---|---|---|",
    ]
    for kind, o in r["oracles"].items():
        for s, v in o.items():
            if s == "lobby_train" and kind == "wstar":
                continue
            dc, pc = v["dataset_oracle_ci95"], v["per_image_oracle_ci95"]
            lines.append(
                f"| {kind} | {s} | {v['dataset_oracle']:.1f} ({v['dataset_oracle_t']}) [{dc[0]}, {dc[1]}] "
                f"| {v['per_image_oracle']:.1f} [{pc[0]}, {pc[1]}] | {v.get('labelled_t_cv', '-')} |"
            )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("record", type=Path, help="a summarize record (rules_<tag>.json)")
    ap.add_argument("rules", help="comma-separated rule names, in the table's order")
    args = ap.parse_args()
    try:
        r = json.loads(args.record.read_text())
    except (OSError, ValueError) as e:
        fail(f"cannot read {args.record}: {e}")
    print("\n".join(tables(r, args.rules.split(","))))


if __name__ == "__main__":
    main()
