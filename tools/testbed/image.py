"""Container images for the test bed's pods, built without a registry.

Owns writing an OCI image layout tar (``oci-layout``, ``index.json`` and three blobs: one
uncompressed layer, the image config, the manifest) that ``ctr images import`` reads. The
layer is Debian's static busybox with a link per applet, so a pod has ``sh``, ``sleep``,
``ip`` and ``ping``; extra files (a geth binary, say) can be added. The same image serves as
the sandbox ("pause") image: its command sleeps until SIGTERM.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
IMAGE_NAME = "docker.io/local/busybox:1"
# Sleeps until told to stop: as PID 1 a plain sleep would ignore SIGTERM and every pod
# deletion would wait out its grace period.
COMMAND = ["/bin/sh", "-c", "trap 'exit 0' TERM INT; sleep 2147483647 & wait"]


def _add_file(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o755) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 0
    tar.addfile(info, io.BytesIO(data))


def _layer(extra_files: dict[str, Path]) -> bytes:
    applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True, check=True).stdout.split()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for directory in ("bin", "tmp", "etc", "proc", "sys", "dev", "root", "var", "var/run"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o1777 if directory == "tmp" else 0o755, 0
            tar.addfile(info)
        _add_file(tar, "bin/busybox", BUSYBOX.read_bytes())
        for applet in sorted(set(applets) - {"busybox"}):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname, link.mtime = tarfile.SYMTYPE, "busybox", 0
            tar.addfile(link)
        _add_file(tar, "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644)
        _add_file(tar, "etc/group", b"root:x:0:\n", 0o644)
        for target, source in sorted(extra_files.items()):
            _add_file(tar, target.lstrip("/"), Path(source).read_bytes())
    return buffer.getvalue()


def _blob(blobs: Path, data: bytes) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def write_image(path: Path, *, name: str = IMAGE_NAME, extra_files: dict[str, Path] | None = None) -> Path:
    """Write an OCI layout tar of the image to ``path``; returns it."""
    staging = path.with_suffix(".d")
    blobs = staging / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    layer = _layer(extra_files or {})
    layer_ref = _blob(blobs, layer)
    config = {"architecture": "amd64", "os": "linux",
              "config": {"Cmd": COMMAND, "Env": ["PATH=/bin"], "WorkingDir": "/"},
              "rootfs": {"type": "layers", "diff_ids": [layer_ref["digest"]]}}
    config_ref = _blob(blobs, json.dumps(config, sort_keys=True).encode())
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config_ref},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer_ref}]}
    manifest_ref = _blob(blobs, json.dumps(manifest, sort_keys=True).encode())
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", **manifest_ref,
        "annotations": {"org.opencontainers.image.ref.name": name}}]}
    (staging / "index.json").write_text(json.dumps(index))
    (staging / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    with tarfile.open(path, "w") as tar:
        for entry in ("oci-layout", "index.json", "blobs"):
            tar.add(staging / entry, arcname=entry)
    shutil.rmtree(staging)
    return path
