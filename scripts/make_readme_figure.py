"""Make docs/phantom.png (axial phantom slices, CMBs circled) and, with --write-demo, the shipped demo data.

    python scripts/make_readme_figure.py                 # figure from CMBDetectionLib/data/demo_*
    python scripts/make_readme_figure.py --write-demo    # regenerate the demo subject first (seed DEMO_SEED)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402
from matplotlib.patches import Circle  # noqa: E402

from CMBDetectionLib.imageio.volumes import ras_to_index  # noqa: E402
from CMBDetectionLib.phantoms.generator import DEMO_SEED, generate_subject, write_subject  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "CMBDetectionLib" / "data"
COLOURS = {"lobar": "#ff5050", "deep": "#ffd030", "infratentorial": "#40c0ff"}


def _pick_slices(image: sitk.Image, cmbs: list[dict], n: int) -> list[int]:
    """Slices holding the most CMBs, preferring a spread of categories, then sorted inferior to superior."""
    ks = [int(round(ras_to_index(image, c["centre_ras"])[2])) for c in cmbs]
    chosen: list[int] = []
    for category in ("infratentorial", "deep", "lobar"):
        for k, c in zip(ks, cmbs):
            if c["category"] == category and all(abs(k - o) > 3 for o in chosen):
                chosen.append(k)
                break
    for k in sorted(set(ks), key=ks.count, reverse=True):
        if len(chosen) < n and all(abs(k - o) > 3 for o in chosen):
            chosen.append(k)
    depth = image.GetSize()[2]
    for k in np.linspace(depth * 0.3, depth * 0.8, n).astype(int):  # fill with evenly spread slices
        if len(chosen) < n and all(abs(k - o) > 3 for o in chosen):
            chosen.append(int(k))
    return sorted(chosen[:n])


def make_figure(swi_path: Path, cmbs_path: Path, out: Path, n_slices: int = 6) -> None:
    image = sitk.ReadImage(str(swi_path))
    array = sitk.GetArrayFromImage(image)
    cmbs = json.loads(cmbs_path.read_text())
    spacing = image.GetSpacing()[0]
    vmax = np.percentile(array, 99.5)
    slices = _pick_slices(image, cmbs, n_slices)
    cols = (len(slices) + 1) // 2
    fig, axes = plt.subplots(2, cols, figsize=(3.4 * cols, 7.2), facecolor="black")
    for ax in axes.ravel()[len(slices):]:
        ax.axis("off")
    for ax, k in zip(axes.ravel(), slices):
        # Radiological display: patient left on the image right (the grid's i axis already runs R -> L).
        ax.imshow(array[k], cmap="gray", vmin=0, vmax=vmax, interpolation="lanczos")
        for c in cmbs:
            i, j, kc = ras_to_index(image, c["centre_ras"])
            if abs(kc - k) <= 1.0:
                radius = max(c["diameter_mm"] * 1.3, 4.0) / spacing
                ax.add_patch(Circle((i, j), radius, fill=False, color=COLOURS[c["category"]], lw=1.2))
        ax.set_title(f"slice {k}", color="white", fontsize=9)
        ax.axis("off")
    handles = [plt.Line2D([], [], marker="o", ls="", mfc="none", mec=col, label=cat) for cat, col in COLOURS.items()]
    fig.legend(handles=handles, loc="lower center", ncol=3, frameon=False, labelcolor="white", fontsize=9)
    fig.suptitle("Synthetic SWI phantom: ground-truth microbleeds circled", color="white", fontsize=10)
    fig.tight_layout(rect=(0, 0.04, 1, 0.96))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, facecolor="black")
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write-demo", action="store_true", help=f"regenerate the demo subject (seed {DEMO_SEED})")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "phantom.png")
    args = parser.parse_args()
    if args.write_demo:
        subject = generate_subject(DEMO_SEED)
        write_subject(subject, DATA, stem="demo")
        # Noise compresses badly: the shipped copy uses the strongest gzip level to stay under 5 MB.
        sitk.WriteImage(subject.image, str(DATA / "demo_swi.nii.gz"), True, 9)
    make_figure(DATA / "demo_swi.nii.gz", DATA / "demo_cmbs.json", args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
