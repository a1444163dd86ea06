"""Pass 0.5 evaluation by family of documents, the headline left-one-family-out.

Families (``bench/encounter_families/``, a module each; a family whose data or tools are absent
is skipped and says so):

- ``generated``: our own generator (``bench/_clinical.py``: C-CDA and ACI-Bench texts printed
  in our layouts), one family among the others, no longer the judge;
- ``cda``: HL7's C-CDA examples rendered by HL7's CDA stylesheet and printed by Chromium, as a
  patient portal's download is, 2-8 documents of one patient a file;
- ``synthea``: per-encounter documents cut from Synthea's patients, rendered the same way;
- ``realpdf``: the real-format PDFs (a vendor's records, a LabCorp report, a Word-made
  discharge summary, an advance directive), packed and re-identified to one patient a file;
- ``scanned``: the others printed, degraded as a scan or fax and read with Tesseract, and
  image-only multi-patient files of two-page reports that repeat their banner.

Every page is read as the pipeline reads it (``common.read_pdf``: the text layer, or the
pipeline's Tesseract adapter with its results cached under build/). ``scoring.py`` scores.

The headline is leave-one-family-out (LOFO): for each family in turn, the boundary model is
trained (``bench/encounters_train.py``) on the other families' packets and the heuristic with
that model is scored on the family left out. The rules in ``shared/encounters`` are the same in
every row: each was written on development families, and the note of the issue that added it
says which. Beside it: the heuristic as shipped (its model trained on every family), the
heuristic before (``--before``, a commit's whole tree in a child process), OpenAI when
OPENAI_API_KEY is set, the old generated bench (``oldgen.py``) and the clinical validation part
of ``_clinical`` as they were scored before, and Pass 0.5's time per page.

    .venv/bin/python bench/encounters_eval.py [--families ...] [--packets 12 | --full] [--seed 11]
        [--before 78b52c4] [--no-lofo] [--explain] [--out bench/results]

Writes ``encounters_families.json`` and ``.png`` under ``--out``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import pickle
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.encounter_families import oldgen, scoring  # noqa: E402
from bench.encounter_families.before import BEFORE, before_provider  # noqa: E402
from bench.encounter_families.common import BUILD, CachedOcr, Packet  # noqa: E402
from shared.encounters import HeuristicEncounters  # noqa: E402
from shared.encounters.boundaries import MODES  # noqa: E402
from shared.errors import PipelineError  # noqa: E402
from shared.models import Discovery, Manifest  # noqa: E402
from shared.ports import EncounterProvider  # noqa: E402
from shared.settings import Settings  # noqa: E402

FAMILIES = ("generated", "cda", "synthea", "realpdf", "scanned")
COLUMNS = [
    ("boundary_f1", "bound F1"), ("boundary_precision", "bound P"), ("boundary_recall", "bound R"),
    ("purity", "purity"), ("type_accuracy", "type acc"), ("date_accuracy", "date acc"),
    ("dates_invented", "invented"), ("identity_accuracy", "ident"), ("conflict_recall", "confl R"),
    ("conflict_false_alarms", "confl FA"), ("ms_per_page", "ms/page"),
]


def family_module(name: str):
    return importlib.import_module(f"bench.encounter_families.{name}")


def _code_hash(name: str) -> str:
    """What a family's packets are made with: its module, the shared ones, and what it prints
    with (the scanned family prints every other family's packets)."""
    here = ROOT / "bench" / "encounter_families"
    files = [here / "common.py", here / "printer.py", here / f"{name}.py"]
    if name == "generated":
        files.append(ROOT / "bench" / "_clinical.py")
    if name == "scanned":
        files = sorted(here.glob("*.py")) + [ROOT / "bench" / "_clinical.py", ROOT / "bench" / "degraded_pages.py"]
    return hashlib.sha256(b"".join(f.read_bytes() for f in files if f.exists())).hexdigest()[:12]


def load_packets(families: Sequence[str], count: int, seed: int, ocr: CachedOcr | None) -> dict[str, list[Packet]]:
    """Each family's packets, kept under build/ by (family, count, seed, the modules' code)."""
    out: dict[str, list[Packet]] = {}
    for name in families:
        module = family_module(name)
        if not module.available():
            print(f"{name}: its data or tools are absent here, skipped", flush=True)
            continue
        cached = BUILD / "packets" / f"{name}-{count}-{seed}-{_code_hash(name)}.pkl"
        if cached.exists():
            out[name] = pickle.loads(cached.read_bytes())
            continue
        started = time.perf_counter()
        out[name] = module.packets(count, seed, ocr)
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_bytes(pickle.dumps(out[name]))
        print(f"{name}: {len(out[name])} packets built in {time.perf_counter() - started:.0f} s", flush=True)
    return out


def score_family(provider: EncounterProvider, packets: Sequence[Packet], explain: bool = False) -> dict:
    total = scoring.Scores()
    seconds = 0.0
    pages = 0
    for packet in packets:
        started = time.perf_counter()
        try:
            discovery = provider.discover(packet.pages)
        except PipelineError:
            discovery = Discovery(encounters=[], provider="failed")
        seconds += time.perf_counter() - started
        pages += len(packet.pages)
        manifest = Manifest.build(uuid.uuid4(), len(packet.pages), discovery, packet.pages)
        total.add(scoring.score(packet, discovery, manifest))
        if explain:
            for line in scoring.invented(packet, discovery):
                print(f"  invented: {line}")
    return {**total.metrics(), "ms_per_page": round(1000 * seconds / max(1, pages), 2)}


def lofo(packets: dict[str, list[Packet]], date_order: str) -> dict[str, dict[str, dict]]:
    """Each family scored by the heuristic whose boundary model never saw it, per way of cutting
    (``boundaries.MODES``: rules and model together, as shipped; the model alone; the rules
    alone, as the heuristic cut before the model)."""
    from bench import encounters_train

    out: dict[str, dict[str, dict]] = {mode: {} for mode in MODES}
    for left in packets:
        others = {name: ps for name, ps in packets.items() if name != left}
        if not others:
            continue
        model = encounters_train.train(others)
        for mode in MODES:
            provider = HeuristicEncounters(date_order=date_order, model=model, mode=mode)
            out[mode][left] = score_family(provider, packets[left])
    return out


def makers(settings: Settings, before: str | None) -> dict[str, Callable[[], EncounterProvider]]:
    found: dict[str, Callable[[], EncounterProvider]] = {}
    old = before_provider(before, settings.date_order)
    if old:
        found[old[0]] = old[1]
    found["heuristic"] = lambda: HeuristicEncounters(date_order=settings.date_order)
    if settings.openai_api_key is not None and settings.openai_api_key.get_secret_value():
        from shared.encounters.openai import OpenAiEncounters

        found["openai"] = lambda: OpenAiEncounters.from_settings(settings)
    return found


def clinical_validation(make: dict[str, Callable[[], EncounterProvider]], seed: int = 6) -> dict:
    """The clinical validation part of ``_clinical`` as issue 14 scored it (24 packets, seed 6)."""
    from bench import _clinical

    if not _clinical.available():
        return {}
    ocr = CachedOcr()
    packets = [_clinical.build(p, ocr) for p in _clinical.plan(_clinical.sources(), "val", 24, seed)]
    return {name: score_family(m(), packets) for name, m in make.items()}


def table(rows: dict[str, dict]) -> str:
    head = f"{'':<28}" + "".join(f"{label:>10}" for _, label in COLUMNS)
    lines = [head, "-" * len(head)]
    for label, r in rows.items():
        cells = "".join(
            f"{'-':>10}" if r.get(k) is None else f"{r[k]:>10}" if isinstance(r[k], int) else f"{r[k]:>10.3f}"
            for k, _ in COLUMNS)
        lines.append(f"{label:<28}{cells}")
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = list(report["families"])
    series = [("lofo", "left out (headline)")] + [(n, n) for n in report["providers"]]
    keys = ["boundary_f1", "purity"]
    fig, axes = plt.subplots(1, len(keys), figsize=(14, 4.8), sharey=True)
    width = 0.8 / max(1, len(series))
    for ax, key in zip(axes, keys, strict=True):
        for i, (name, label) in enumerate(series):
            rows = report["lofo"] if name == "lofo" else report["providers"][name]
            values = [(rows.get(f) or {}).get(key) or 0 for f in families]
            xs = [x + i * width - 0.4 + width / 2 for x in range(len(families))]
            ax.bar_label(ax.bar(xs, values, width, label=label), fmt="%.2f", fontsize=7)
        ax.axhline(0.95, color="grey", linestyle="--", linewidth=0.8)
        ax.set_xticks(range(len(families)), families)
        ax.set_ylim(0, 1.12)
        ax.set_title(key.replace("_", " ") + " per family")
    axes[0].legend(loc="lower left", fontsize=8)
    fig.suptitle(f"Pass 0.5 by family: {report['packets_per_family']} packets each, seed {report['seed']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    parser.add_argument("--packets", type=int, default=12, help="packets per family")
    parser.add_argument("--full", action="store_true", help="24 packets per family")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--before", default=BEFORE, help="git commit whose heuristic gives 'before' ('' for none)")
    parser.add_argument("--no-lofo", action="store_true", help="skip the left-one-family-out training")
    parser.add_argument("--no-old", action="store_true", help="skip the old generated bench and clinical validation")
    parser.add_argument("--explain", action="store_true",
                        help="print each invented date of the shipped heuristic with the line it came from")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    count = 24 if args.full else args.packets
    args.out.mkdir(parents=True, exist_ok=True)
    settings = Settings()

    ocr = CachedOcr()
    packets = load_packets(args.families, count, args.seed, ocr)
    report: dict = {
        "seed": args.seed, "packets_per_family": count, "ocr_pages": ocr.pages, "ocr_cached": ocr.cached,
        "families": {name: {"packets": len(ps), "pages": sum(len(p.pages) for p in ps),
                            "documents": sum(len(p.docs) for p in ps), "mixed": sum(p.mixed for p in ps)}
                     for name, ps in packets.items()},
        "providers": {}, "lofo": {},
    }
    for name, stats in report["families"].items():
        print(f"{name}: {stats['packets']} packets, {stats['documents']} documents, {stats['pages']} pages, "
              f"{stats['mixed']} mixing patients")
    make = makers(settings, args.before)
    for provider_name, m in make.items():
        provider = m()
        report["providers"][provider_name] = {
            family: score_family(provider, ps, args.explain and provider_name == "heuristic")
            for family, ps in packets.items()}
    if not args.no_lofo:
        by_mode = lofo(packets, settings.date_order)
        report["lofo"], report["lofo_modes"] = by_mode["hybrid"], by_mode
    if not args.no_old:
        old_args = argparse.Namespace(packets=16, seed=6, ocr_workers=2)
        old = oldgen.run(old_args, make)
        report["old_generated"] = {n: {k: v for k, v in r.items() if k != "packets"}
                                   for n, r in old["providers"].items()}
        report["clinical_validation"] = clinical_validation(make)

    for family in packets:
        rows = {f"{n}": report["providers"][n][family] for n in report["providers"]}
        for mode, rows_ in report.get("lofo_modes", {}).items():
            if family in rows_:
                rows["left out (headline)" if mode == "hybrid" else f"left out, {mode} alone"] = rows_[family]
        print(f"\n== {family} ==")
        print(table(rows))
    if "old_generated" in report:
        print("\n== old generated bench (Harold Vance packets, seed 6) ==")
        print(oldgen.table({"providers": {n: {**r, "cost_usd": r.get("cost_usd", 0.0)}
                                          for n, r in report["old_generated"].items()}}))
        if report["clinical_validation"]:
            print("\n== clinical validation part (_clinical, val, 24 packets, seed 6) ==")
            print(table(report["clinical_validation"]))
    (args.out / "encounters_families.json").write_text(json.dumps(report, indent=2, default=str))
    plot(report, args.out / "encounters_families.png")
    print(f"\nwrote {args.out / 'encounters_families.json'} and {args.out / 'encounters_families.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
