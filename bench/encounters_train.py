"""Train Pass 0.5's page-pair boundary model on the development families.

Each readable page after the first of a packet is one example: its features
(``shared.encounters.boundaries.features``) against the pages of its true document so far (or,
where a document starts, of the document before), labelled by whether it starts a document.
A logistic regression (scikit-learn, here only: the runtime reads the weights in plain Python)
is fitted with each family weighing the same, whatever its number of pages, and written to
``shared/encounters/boundary_model.json``.

    .venv/bin/python bench/encounters_train.py [--families ...] [--packets 24] [--seed 7]

The seed differs from ``encounters_eval.py``'s (11): the shipped model is not fitted on the
packets the bench reports.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.encounter_families.common import CachedOcr, Packet  # noqa: E402
from shared.encounters import boundaries, grouping  # noqa: E402
from shared.encounters.boundaries import BoundaryModel  # noqa: E402
from shared.encounters.dates import page_orders  # noqa: E402
from shared.encounters.text import is_blank  # noqa: E402

C = 0.3  # the regression's inverse regularisation: a small model that would rather not overfit one family
MODEL = ROOT / "shared" / "encounters" / "boundary_model.json"


def examples(packet: Packet, date_order: str = "auto") -> tuple[list[list[float]], list[int]]:
    """The packet's page pairs as (features, starts a document), read as the heuristic reads."""
    readable = [(p, t) for p, t in zip(packet.pages, packet.truth, strict=True)
                if not is_blank(p.text) and not grouping.is_cover(p)]
    orders = page_orders([p.text for p, _ in readable], date_order)
    pages = [(grouping.read_page(p, order), t) for (p, t), order in zip(readable, orders, strict=True)]
    xs, ys = [], []
    group: grouping.Group | None = None
    before: grouping.Group | None = None
    for (page, truth), previous in zip(pages, [None, *[t for _, t in pages]]):
        if group is not None:
            xs.append(boundaries.features(group, page, before))
            ys.append(int(truth != previous))
        if group is None or truth != previous:
            before, group = group, grouping.Group([page])
        else:
            group.pages.append(page)
    return xs, ys


def train(packets: dict[str, list[Packet]], c: float = C) -> BoundaryModel:
    """A model fitted on every family in ``packets``, each family weighing the same."""
    from sklearn.linear_model import LogisticRegression

    xs: list[list[float]] = []
    ys: list[int] = []
    weights: list[float] = []
    for family, ps in packets.items():
        fx, fy = [], []
        for packet in ps:
            x, y = examples(packet)
            fx += x
            fy += y
        if not fx:
            continue
        xs += fx
        ys += fy
        weights += [1000.0 / len(fx)] * len(fx)
    fit = LogisticRegression(C=c, max_iter=5000).fit(xs, ys, sample_weight=weights)
    weights_out = {name: round(float(w), 4) for name, w in zip(boundaries.FEATURES, fit.coef_[0], strict=True)}
    meta = {"families": sorted(packets), "examples": len(ys), "starts": int(sum(ys)), "C": c}
    return BoundaryModel(weights_out, round(float(fit.intercept_[0]), 4), meta)


def main(argv: Sequence[str] | None = None) -> int:
    from bench.encounters_eval import FAMILIES, load_packets

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    parser.add_argument("--packets", type=int, default=24)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=MODEL)
    args = parser.parse_args(argv)
    packets = load_packets(args.families, args.packets, args.seed, CachedOcr())
    model = train(packets)
    model.meta["seed"] = args.seed
    model.meta["packets_per_family"] = args.packets
    args.out.write_text(model.to_json() + "\n")
    ranked = sorted(zip(boundaries.FEATURES, model.weights, strict=True), key=lambda kv: -abs(kv[1]))
    print(f"trained on {model.meta['examples']} page pairs ({model.meta['starts']} starts) of "
          f"{', '.join(model.meta['families'])}; bias {model.bias}")
    print("  " + ", ".join(f"{name} {w:+.2f}" for name, w in ranked))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
