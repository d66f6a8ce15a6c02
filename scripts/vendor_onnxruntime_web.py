"""Vendor onnxruntime-web's WebAssembly backend into the package, for `/demo`'s in-page scoring.

Three files of the npm package `onnxruntime-web` are copied unchanged: the ES module
`ort.wasm.min.mjs`, its loader `ort-wasm-simd-threaded.mjs`, and the runtime
`ort-wasm-simd-threaded.wasm`, stored gzip-compressed (14.8 MB raw, 3.8 MB compressed: the
server sends it as it is with `Content-Encoding: gzip`, and browsers unpack it). The package
ships no licence file; onnxruntime's own (MIT) and its third-party notices are copied from the
onnxruntime Python package installed beside this script, the same project and licence.

    npm pack onnxruntime-web@1.31.1   # or download the tarball from registry.npmjs.org
    python scripts/vendor_onnxruntime_web.py onnxruntime-web-1.31.1.tgz

Nothing here runs at build, install or test time: the files are committed.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import json
import tarfile
from importlib import resources
from pathlib import Path

OUT = (
    Path(__file__).resolve().parents[1]
    / "src"
    / "mlops_template"
    / "serving"
    / "static"
    / "onnxruntime-web"
)
FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
COMPRESSED = {"ort-wasm-simd-threaded.wasm"}


def vendor(tarball: Path, integrity: str | None) -> None:
    data = tarball.read_bytes()
    if integrity is not None:
        algorithm, _, expected = integrity.partition("-")
        found = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
        if found != expected:
            raise SystemExit(f"{tarball}: integrity {algorithm}-{found}, expected {integrity}")
    OUT.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball) as archive:
        manifest = archive.extractfile("package/package.json")
        assert manifest is not None
        version = json.load(manifest)["version"]
        for name in FILES:
            member = archive.extractfile(f"package/dist/{name}")
            if member is None:
                raise SystemExit(f"{tarball}: no package/dist/{name}")
            body = member.read()
            print(f"{name}  {len(body)} bytes  sha256 {hashlib.sha256(body).hexdigest()}")
            if name in COMPRESSED:  # mtime 0: the same input gives the same bytes
                (OUT / f"{name}.gz").write_bytes(gzip.compress(body, compresslevel=9, mtime=0))
            else:
                (OUT / name).write_bytes(body)
    notices = resources.files("onnxruntime")
    for name in ("LICENSE", "ThirdPartyNotices.txt"):
        (OUT / name).write_text(notices.joinpath(name).read_text(encoding="utf-8"), "utf-8")
    print(f"onnxruntime-web {version} vendored in {OUT}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tarball", type=Path, help="onnxruntime-web-<version>.tgz from npm")
    parser.add_argument("--integrity", help="the registry's `dist.integrity`, e.g. sha512-…")
    args = parser.parse_args()
    vendor(args.tarball, args.integrity)


if __name__ == "__main__":
    main()
