"""Which image library page preparation should use: install size and peak RSS in an OCR child.

    python bench/prepare_libs.py [--install-dir DIR] [--out bench/results]

Each candidate is installed with its dependencies into a directory of its own (``pip install
--target DIR/NAME``, skipped when it is there already), its size on disk is measured, and a
fresh child process that has only it on its path does what page preparation does to one
300 dpi letter page (grey, 3x3 median, a 3-degree turn) and reports its peak RSS (VmHWM)
and seconds. Pillow is already a runtime dependency (0 MB added); its child runs
``shared.pages.prepare.prepare`` itself. Writes ``prepare_libs.json`` (no plot: five bars say
less than the table).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CANDIDATES = {
    "pillow (docpipe today)": None,
    "opencv-python-headless": "opencv-python-headless",
    "scikit-image": "scikit-image",
    "tesserocr (Tesseract + Leptonica)": "tesserocr",
}

CHILD = r"""
import sys, time
which, page = sys.argv[1], sys.argv[2]
started = time.perf_counter()
if which.startswith("pillow"):
    sys.path.insert(0, sys.argv[3])
    from shared.pages.prepare import prepare
    prepare(__import__("pathlib").Path(page), ("despeckle", "deskew", "colour"))
    from PIL import Image, ImageFilter
    Image.open(page).convert("L").filter(ImageFilter.MedianFilter(3)).rotate(3, expand=True, fillcolor=255)
elif which.startswith("opencv"):
    import cv2
    grey = cv2.imread(page, cv2.IMREAD_GRAYSCALE)
    grey = cv2.medianBlur(grey, 3)
    h, w = grey.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 3, 1.0)
    cv2.warpAffine(grey, m, (w, h), borderValue=255)
elif which.startswith("scikit"):
    import skimage.io, skimage.filters, skimage.transform, skimage.morphology
    grey = skimage.io.imread(page, as_gray=True)
    grey = skimage.filters.median(grey, skimage.morphology.square(3))
    skimage.transform.rotate(grey, 3, resize=True, cval=1.0)
elif which.startswith("tesserocr"):
    import tesserocr
    from PIL import Image
    tesserocr.image_to_text  # Leptonica's pix functions are not exposed: only loading the binding is measured
    Image.open(page).load()
seconds = time.perf_counter() - started
with open("/proc/self/status") as status:
    hwm = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(hwm, seconds)
"""


def du_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--install-dir", type=Path, default=Path(tempfile.gettempdir()) / "docpipe-prepare-libs")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    from PIL import Image, ImageDraw

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "page.png"
        image = Image.new("L", (2550, 3300), 255)
        draw = ImageDraw.Draw(image)
        for i in range(60):
            draw.text((150, 150 + 50 * i), "Patient seen for follow-up of hypertension " * 3, fill=0)
        image.save(page, dpi=(300, 300))
        for name, package in CANDIDATES.items():
            env = {"PATH": os.defpath, "OMP_THREAD_LIMIT": "1", "PYTHONNOUSERSITE": "1"}
            size = 0.0
            if package:
                target = args.install_dir / package
                if not target.is_dir():
                    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", str(target), package],
                                   check=True)
                size = du_mb(target)
                # Pillow comes with scikit-image's and tesserocr's dependencies; not counted twice.
                size -= sum(du_mb(p) for p in target.glob("[Pp][Ii][Ll]*") if p.is_dir())
                env["PYTHONPATH"] = str(target)
            done = subprocess.run([sys.executable, "-I" if not package else "-s", "-c", CHILD, name, str(page),
                                   str(ROOT)], env=env, capture_output=True, text=True)
            if done.returncode != 0:
                rows.append({"library": name, "error": done.stderr.strip().splitlines()[-1]})
                continue
            hwm, seconds = done.stdout.split()
            rows.append({"library": name, "install_mb": round(size, 1), "child_peak_rss_mb": round(int(hwm) / 1024, 1),
                         "seconds": round(float(seconds), 3)})
    print(f"{'library':36} {'install MB':>10} {'child peak RSS MB':>18} {'s (one page)':>12}")
    for row in rows:
        if "error" in row:
            print(f"{row['library']:36} error: {row['error']}")
        else:
            print(f"{row['library']:36} {row['install_mb']:10.1f} {row['child_peak_rss_mb']:18.1f} "
                  f"{row['seconds']:12.3f}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "prepare_libs.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
