"""Storage backends side by side on the same work: one 50 MB original and 300 page JPEGs, up
and down, through the Supabase Storage API (SupabaseStorage), Supabase's S3 protocol
(S3Storage with STORAGE_BACKEND=s3) and moto's S3 (the tests' stand-in for Amazon S3), in one run
on one machine. The Storage server is the real one (../shared/tools/supabase-storage, file
backend) on the embedded Postgres, as the tests run it.

    .venv/bin/python -m bench.storage [--original-mb 50] [--pages 300] [--repeat 3]

Prints MB/s per backend and phase (the best of --repeat runs, and the median), writes
bench/results/storage.{json,png}. Everything is sequential, as one preprocess invocation
stores its pages; all servers share the same 2 cores as this process, so the figures compare
the protocols and adapters here, not a network.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench._stack import RESULTS, write_results

PATIENT = uuid.UUID("11111111-1111-4111-8111-111111111111")
PHASES = ("original up", "original down", "pages up", "pages down")


def page_jpegs(n: int, seed: int = 7) -> list[bytes]:
    """``n`` distinct page-sized JPEGs (1240x1754, a scan-like grey page with text-like noise)."""
    import random

    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    base = Image.new("L", (1240, 1754), 245)
    draw = ImageDraw.Draw(base)
    for y in range(120, 1650, 34):
        x = 100
        while x < 1140:
            w = rng.randint(20, 90)
            draw.rectangle([x, y, x + w, y + 16], fill=rng.randint(20, 90))
            x += w + rng.randint(8, 20)
    out = []
    for i in range(n):
        page = base.copy()
        ImageDraw.Draw(page).text((100, 60), f"page {i + 1}", fill=0)
        page = Image.blend(page, Image.effect_noise(page.size, 40), 0.05)  # scanner grain
        buf = io.BytesIO()
        page.save(buf, "JPEG", quality=80)
        out.append(buf.getvalue())
    return out


def write_original(path: Path, size: int) -> None:
    with path.open("wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(left, 1 << 20))
            f.write(chunk)
            left -= len(chunk)


def run_once(storage, original: Path, pages: list[bytes], work: Path) -> dict:
    fid = uuid.uuid4()
    from shared.keys import original_key, page_key

    okey = original_key(PATIENT, fid, "pdf")
    keys = [page_key(PATIENT, fid, n) for n in range(1, len(pages) + 1)]
    size = original.stat().st_size
    page_bytes = sum(map(len, pages))
    t = {}
    start = time.perf_counter()
    storage.put_file(okey, original, "application/pdf")
    t["original up"] = time.perf_counter() - start
    start = time.perf_counter()
    got = storage.download(okey, work / "original.pdf")
    t["original down"] = time.perf_counter() - start
    assert got == size
    start = time.perf_counter()
    for key, data in zip(keys, pages):
        storage.put_bytes(key, data, "image/jpeg")
    t["pages up"] = time.perf_counter() - start
    start = time.perf_counter()
    down = 0
    for key in keys:
        down += storage.download(key, work / "page.jpg")
    t["pages down"] = time.perf_counter() - start
    assert down == page_bytes
    mb = {"original up": size, "original down": size, "pages up": page_bytes, "pages down": page_bytes}
    return {
        "seconds": t,
        "mb_per_s": {p: mb[p] / 1e6 / t[p] for p in PHASES},
        "pages_per_s": {"pages up": len(pages) / t["pages up"], "pages down": len(pages) / t["pages down"]},
    }


def plot(summary: dict, out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    backends = list(summary)
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / len(backends)
    for i, backend in enumerate(backends):
        values = [summary[backend]["best_mb_per_s"][p] for p in PHASES]
        bars = ax.bar([x + i * width for x in range(len(PHASES))], values, width, label=backend)
        ax.bar_label(bars, fmt="%.0f", fontsize=8)
    ax.set_xticks([x + width * (len(backends) - 1) / 2 for x in range(len(PHASES))], PHASES)
    ax.set_ylabel("MB/s (best run)")
    ax.set_title(title, fontsize=10)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--original-mb", type=int, default=50)
    parser.add_argument("--pages", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    from shared.adapters.aws import S3Storage
    from shared.adapters.supabase_storage import SupabaseStorage
    from shared.runtime.localstack import LocalStack
    from tests.servers import SupabaseStorageServer

    if not SupabaseStorageServer.available():
        print("needs ../shared/tools/supabase-storage and npm", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="docpipe-bench-storage-"))
    stack = LocalStack(root / "stack", storage="s3").start()
    server = SupabaseStorageServer(stack.database_url, root / "supabase").start()
    try:
        os.environ.update({k: v for k, v in stack.env().items() if k.startswith("AWS_")})
        env = server.env
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        backends = {
            "Supabase Storage API": SupabaseStorage(env["SUPABASE_URL"], env["SUPABASE_SERVICE_ROLE_KEY"], bucket),
            "Supabase S3 protocol": S3Storage(
                bucket + "-s3", env["SUPABASE_S3_REGION"], env["SUPABASE_S3_ENDPOINT"],
                access_key_id=env["SUPABASE_S3_ACCESS_KEY_ID"],
                secret_access_key=env["SUPABASE_S3_SECRET_ACCESS_KEY"], path_style=True,
            ),
            "moto S3": S3Storage(bucket, "us-east-1", stack.endpoint_url),
        }
        for storage in backends.values():
            storage.ensure_bucket()
        original = root / "original.pdf"
        write_original(original, args.original_mb * 1024 * 1024)
        pages = page_jpegs(args.pages)
        print(f"work: one {args.original_mb} MB original, {len(pages)} page JPEGs "
              f"({sum(map(len, pages)) / 1e6:.1f} MB, {statistics.mean(map(len, pages)) / 1e3:.0f} KB each); "
              f"best of {args.repeat}, interleaved")
        runs: dict[str, list[dict]] = {name: [] for name in backends}
        for _ in range(args.repeat):
            for name, storage in backends.items():  # interleaved: a slow moment hits all alike
                work = root / "work"
                work.mkdir(exist_ok=True)
                runs[name].append(run_once(storage, original, pages, work))
        summary = {}
        for name, rs in runs.items():
            summary[name] = {
                "best_mb_per_s": {p: max(r["mb_per_s"][p] for r in rs) for p in PHASES},
                "median_mb_per_s": {p: statistics.median(r["mb_per_s"][p] for r in rs) for p in PHASES},
                "best_pages_per_s": {p: max(r["pages_per_s"][p] for r in rs) for p in ("pages up", "pages down")},
                "runs": rs,
            }
        header = f"{'MB/s (best / median)':<24}" + "".join(f"{p:>18}" for p in PHASES) + f"{'pages/s up/down':>18}"
        print(header)
        for name, s in summary.items():
            cells = "".join(f"{s['best_mb_per_s'][p]:>10.1f} /{s['median_mb_per_s'][p]:>6.1f}" for p in PHASES)
            pps = s["best_pages_per_s"]
            print(f"{name:<24}{cells}{pps['pages up']:>11.0f} /{pps['pages down']:>5.0f}")
        data = {
            "work": {"original_bytes": original.stat().st_size, "pages": len(pages),
                     "page_bytes": sum(map(len, pages)), "repeat": args.repeat},
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
            "servers": {"supabase_storage": "supabase/storage v1.70.6, file backend, via gateway.js",
                        "moto": "moto server (LocalStack of docpipe)"},
            "backends": summary,
        }
        path = write_results("storage", data)
        png = RESULTS / "storage.png"
        plot(summary, png, f"one {args.original_mb} MB original + {len(pages)} page JPEGs, sequential, "
                           f"{os.cpu_count()} cores shared with the servers")
        print(f"\nwrote {path} and {png}")
        for storage in backends.values():
            close = getattr(storage, "close", None)
            if close:
                close()
    finally:
        server.stop()
        stack.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
