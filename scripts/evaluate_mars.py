"""How well MARS rating places microbleeds: category, side and region accuracy on held-out phantoms.

Each phantom (``phantom.generate_subject``, seeds 9000+ are held out) is registered to MNI under its random
pose, and its TRUE CMB centres are rated as lesions, so the figures measure registration plus the region
map, not detection. Also reports the registration error at the CMBs (mapped centre vs the MNI point the
phantom placed it at) and the registration time.

    python scripts/evaluate_mars.py --seeds 9000-9019
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "2")

import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402

from CMBDetectionLib.mars.rating import MarsRater  # noqa: E402
from CMBDetectionLib.mars.registration import RegistrationError, preload_template  # noqa: E402
from CMBDetectionLib.phantoms.generator import generate_subject  # noqa: E402


def _seeds(text: str) -> list[int]:
    first, _, last = text.partition("-")
    return list(range(int(first), int(last or first) + 1))


def evaluate(seeds: list[int], threads: int) -> dict[str, float]:
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    preload_template()  # so the timings below are registration only
    hits = {"category": [], "side": [], "region": []}
    errors, seconds, cpu_seconds, failures = [], [], [], 0
    for seed in seeds:
        subject = generate_subject(seed)
        start, cpu_start = time.perf_counter(), time.process_time()
        try:
            rater = MarsRater.from_image(subject.image)
        except RegistrationError as exc:
            failures += 1
            print(f"seed {seed}: registration failed: {exc}", flush=True)
            continue
        seconds.append(time.perf_counter() - start)
        cpu_seconds.append(time.process_time() - cpu_start)  # all threads: the cost on an idle machine
        for cmb in subject.cmbs:
            region, category, side = rater.locate(cmb.centre_ras)
            hits["category"].append(category == cmb.category)
            hits["side"].append(side == cmb.side)
            hits["region"].append(region == cmb.region)
            mni = rater.registration.subject_ras_to_mni_ras(cmb.centre_ras)
            errors.append(float(np.linalg.norm(np.subtract(mni, cmb.centre_mni))))
            if category != cmb.category or side != cmb.side:
                print(f"seed {seed}: truth {cmb.region}/{cmb.side} at MNI {np.round(cmb.centre_mni, 1).tolist()}, "
                      f"rated {region}/{side} at {np.round(mni, 1).tolist()}", flush=True)
        reg = rater.registration
        print(f"seed {seed}: {len(subject.cmbs)} CMBs, registration {seconds[-1]:.1f} s ({cpu_seconds[-1]:.1f} CPU-s), "
              f"tissue contrast {reg.tissue_contrast:.2f}, coverage {reg.coverage:.2f}", flush=True)
    return {
        "subjects": len(seeds),
        "registration_failures": failures,
        "cmbs": len(hits["category"]),
        **{f"{name}_accuracy": float(np.mean(v)) if v else float("nan") for name, v in hits.items()},
        "registration_error_mm_median": float(np.median(errors)) if errors else float("nan"),
        "registration_error_mm_max": float(np.max(errors)) if errors else float("nan"),
        "registration_seconds_median": float(np.median(seconds)) if seconds else float("nan"),
        "registration_seconds_max": float(np.max(seconds)) if seconds else float("nan"),
        "registration_cpu_seconds_median": float(np.median(cpu_seconds)) if cpu_seconds else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="9000-9019", help="phantom seeds, FIRST-LAST (default 9000-9019)")
    parser.add_argument("--threads", type=int, default=2, help="SimpleITK threads (default 2, the CI machine)")
    args = parser.parse_args()
    summary = evaluate(_seeds(args.seeds), args.threads)
    print("\nMARS rating on phantoms (true CMB centres, random pose):")
    for key, value in summary.items():
        print(f"  {key:30s} {value:.3f}" if isinstance(value, float) else f"  {key:30s} {value}")


if __name__ == "__main__":
    main()
