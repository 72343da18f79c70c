"""Regenerate ``opensphere.proto_gen`` from ``proto/``.

The generated modules live under our own package instead of a top-level ``yandex``
package, because the official SDK installs one and the two must never collide.
Run ``python -m opensphere.codegen`` after changing a ``.proto`` file.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from pathlib import Path

PACKAGE = "opensphere.proto_gen"
ROOT = Path(__file__).resolve().parents[2]
PROTO_DIR = ROOT / "proto"
OUT_DIR = Path(__file__).resolve().parent / "proto_gen"
# Top-level proto packages whose generated imports move under PACKAGE.
_IMPORT = re.compile(r"^from ((?:yandex|opensphere)(?:\.[\w.]+)?) import", re.MULTILINE)


def _include_dirs() -> list[str]:
    import grpc_tools
    from google.api import annotations_pb2

    googleapis = Path(annotations_pb2.__file__).resolve().parents[2]
    return [str(PROTO_DIR), str(Path(grpc_tools.__file__).parent / "_proto"), str(googleapis)]


def generate(out_dir: Path) -> None:
    """Compile every proto under ``proto/`` into ``out_dir`` as the ``proto_gen`` package."""
    from grpc_tools import protoc

    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))
    with tempfile.TemporaryDirectory() as raw:
        args = ["protoc", *(f"-I{d}" for d in _include_dirs()), f"--python_out={raw}", *protos]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        for src in sorted(Path(raw).rglob("*_pb2.py")):
            dest = out_dir / src.relative_to(raw)
            dest.parent.mkdir(parents=True, exist_ok=True)
            text = _IMPORT.sub(lambda m: f"from {PACKAGE}.{m.group(1)} import", src.read_text())
            dest.write_text(text)
        for folder in [out_dir, *(p for p in out_dir.rglob("*") if p.is_dir())]:
            (folder / "__init__.py").touch()
        (out_dir / "__init__.py").write_text(
            '"""Generated from proto/ by ``python -m opensphere.codegen``; never edit by hand."""\n'
        )


def main() -> None:
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT_DIR)


if __name__ == "__main__":
    main()
