"""Build src/transferlab/data/samples/cifar10-sample.zip, the built-in photo sample.

It copies, byte for byte, the first TRAIN train and TEST test JPEGs of each class of the CIFAR-10
subset in ../shared/data/cifar10-subset (itself the first 1000/200 images per class of CIFAR-10 in
the original order; see its README). The one dataset there that may ship with the package.
Cite: A. Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009.

    python tools/make_cifar_sample.py [--train 200] [--test 40]
"""
from __future__ import annotations

import argparse
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO.parent / "shared" / "data" / "cifar10-subset"
OUT = REPO / "src" / "transferlab" / "data" / "samples" / "cifar10-sample.zip"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", type=int, default=200)
    p.add_argument("--test", type=int, default=40)
    args = p.parse_args()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with zipfile.ZipFile(OUT, "w", compression=zipfile.ZIP_STORED) as z:  # JPEGs do not compress further
        for split, count in (("train", args.train), ("test", args.test)):
            for cls in sorted(d.name for d in (SOURCE / split).iterdir() if d.is_dir()):
                for f in sorted((SOURCE / split / cls).glob("*.jpg"))[:count]:
                    info = zipfile.ZipInfo(f"{split}/{cls}/{f.name}", date_time=(2009, 4, 8, 0, 0, 0))
                    z.writestr(info, f.read_bytes())
                    n += 1
    print(f"wrote {n} images to {OUT} ({OUT.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
