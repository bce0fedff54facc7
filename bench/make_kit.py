"""Fill ``.gpu-kit/`` with what the lent H200 lacks for bench/gpu.sh (``make gpu-kit``).

The device machine runs its own python3 (3.12) with torch, transformers 5.17, peft,
accelerate, safetensors, huggingface_hub, tokenizers, opencv-python-headless and
scikit-image, and reaches no registry. This script downloads, here, cp312 / pure-Python wheels
of the packages named on the command line at the versions in requirements.lock (diffusers,
peft, transformers, regex for the engine; dlib-bin, invisible-watermark, pywavelets for faces
and labels), copies the two dlib model files the engine's faces module loads (5-point
landmarks and the face-recognition ResNet, xz-compressed) and a CJK font for the visible
label (xz), and writes MANIFEST.json. torch is never downloaded: the device's CUDA build is
used.

What travels with a ``run`` call is limited to 64 MiB (working tree included): the script
fails above ``--max-mib``. ``--no-faces`` / ``--no-font`` leave those parts out (the GPU run
then reports likeness / labels as unavailable).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import lzma
import re
import shutil
import subprocess
import sys
from pathlib import Path

PLATFORMS = [
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_24_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
]
FACE_MODELS = ("shape_predictor_5_face_landmarks.dat", "dlib_face_recognition_resnet_model_v1.dat")
FONTS = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
)


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions(lock: Path) -> dict[str, str]:
    versions = {}
    for line in lock.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==([^\s;\\]+)", line)
        if match:
            versions[_normalise(match.group(1))] = match.group(2)
    return versions


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _xz(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(lzma.compress(source.read_bytes(), preset=6))


def download(packages: list[str], versions: dict[str, str], wheels: Path) -> list[str]:
    pins = []
    for package in packages:
        version = versions.get(_normalise(package))
        if version is None:
            raise SystemExit(f"{package} is not in requirements.lock")
        pins.append(f"{package}=={version}")
    wanted = {_normalise(p) for p in packages}
    for stale in wheels.glob("*.whl"):  # one version of each package, nothing else
        if _normalise(stale.name.split("-")[0]) not in wanted:
            stale.unlink()
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--disable-pip-version-check",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        "3.12",
        "--implementation",
        "cp",
        *platforms,
        "-d",
        str(wheels),
        *pins,
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    errors = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if line.strip() and "is ignored: it is neither a file nor a directory" not in line
    ]
    if result.returncode != 0:
        raise SystemExit("pip download failed:\n" + "\n".join(errors))
    for pin in pins:  # drop other versions of the same package
        name, version = pin.split("==")
        for wheel in wheels.glob("*.whl"):
            parts = wheel.name.split("-")
            if _normalise(parts[0]) == _normalise(name) and parts[1] != version:
                wheel.unlink()
    return pins


def face_models_dir() -> Path | None:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def tree_bytes(root: Path) -> int:
    """Bytes of what a ``run`` call sends besides carried paths: tracked files and untracked
    files git does not ignore."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        check=False,
    )
    if listed.returncode != 0:
        return 0
    total = 0
    for name in listed.stdout.decode().split("\0"):
        path = root / name
        if name and path.is_file():
            total += path.stat().st_size
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("packages", nargs="+", help="package names (versions from the lock)")
    parser.add_argument("--out", type=Path, default=Path(".gpu-kit"))
    parser.add_argument("--lock", type=Path, default=Path("requirements.lock"))
    parser.add_argument("--no-faces", action="store_true")
    parser.add_argument("--no-font", action="store_true")
    parser.add_argument("--max-mib", type=float, default=63.0)
    args = parser.parse_args(argv)

    out: Path = args.out
    wheels = out / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    pins = download(args.packages, locked_versions(args.lock), wheels)
    manifest: dict[str, object] = {"python": "cp312", "pins": pins, "files": {}}

    faces_dir = out / "faces"
    shutil.rmtree(faces_dir, ignore_errors=True)
    if not args.no_faces:
        models = face_models_dir()
        if models is None:
            print("face_recognition_models is not installed here: faces left out", file=sys.stderr)
        else:
            for name in FACE_MODELS:
                _xz(models / name, faces_dir / f"{name}.xz")
    fonts_dir = out / "fonts"
    shutil.rmtree(fonts_dir, ignore_errors=True)
    if not args.no_font:
        font = next((Path(p) for p in FONTS if Path(p).is_file()), None)
        if font is None:
            print("no CJK font here (make system-deps): labels left out", file=sys.stderr)
        else:
            _xz(font, fonts_dir / f"{font.name}.xz")

    files = manifest["files"]
    assert isinstance(files, dict)
    kit_bytes = 0
    for path in sorted(out.rglob("*")):
        if path.is_file() and path.name != "MANIFEST.json":
            size = path.stat().st_size
            kit_bytes += size
            files[str(path.relative_to(out))] = {"bytes": size, "sha256": _sha256(path)}
    tree = tree_bytes(Path.cwd())
    manifest["kit_bytes"] = kit_bytes
    manifest["tree_bytes"] = tree
    (out / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    total_mib = (kit_bytes + tree) / 2**20
    for name, entry in files.items():
        print(f"{entry['bytes'] / 2**20:7.2f} MiB  {name}")
    print(
        f"kit {kit_bytes / 2**20:.1f} MiB + working tree {tree / 2**20:.1f} MiB = {total_mib:.1f} MiB"
    )
    if total_mib > args.max_mib:
        print(
            f"over {args.max_mib} MiB (a run carries 64 MiB at most): try --no-font / --no-faces",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
