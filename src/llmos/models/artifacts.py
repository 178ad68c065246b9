"""Content-addressed artifact store: sha256 blobs and file manifests.

Layout under ``root`` (``$LLMOS_HOME/artifacts``)::

    blobs/sha256/<aa>/<digest>     file contents, read-only, named by their sha256
    checkouts/<manifest-digest>/   materialised directories (verified copies)
    tmp/                           in-flight writes; anything here is garbage

A model version is a :class:`Manifest` (relative path -> digest, size). A file
with the same bytes is stored once however many versions or models hold it.

Atomicity: every blob is written to ``tmp/`` and ``os.replace``-d into place, so
a blob path either does not exist or holds exactly its digest's bytes. A
version becomes visible only when the registry commits its manifest row, which
happens after every blob is in place: a crash mid-write leaves only
unreferenced blobs, which :meth:`ArtifactStore.gc` removes.

Thread/process safety: concurrent writers of the same blob are harmless
(identical content, atomic rename). ``gc`` must not race a writer whose
version is not yet committed; the ``grace_s`` window (blobs younger than it are
kept) covers that.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from llmos.errors import IntegrityError, NotFound, ValidationError

CHUNK_BYTES = 1 << 20
DEFAULT_GC_GRACE_S = 3600.0


@dataclass(frozen=True)
class FileEntry:
    digest: str
    size_bytes: int


@dataclass(frozen=True)
class Manifest:
    """The files of one artifact: relative POSIX path -> :class:`FileEntry`."""

    files: Mapping[str, FileEntry]

    @property
    def size_bytes(self) -> int:
        return sum(f.size_bytes for f in self.files.values())

    @property
    def digest(self) -> str:
        """sha256 of the canonical JSON form; identifies the whole artifact."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    def to_dict(self) -> dict[str, dict[str, object]]:
        return {p: {"sha256": f.digest, "size": f.size_bytes} for p, f in sorted(self.files.items())}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Mapping[str, object]]) -> Manifest:
        files = {}
        for p, f in data.items():
            digest, size = f.get("sha256"), f.get("size")
            if not isinstance(digest, str) or not isinstance(size, int):
                raise IntegrityError(f"manifest entry {p!r} is malformed")
            files[p] = FileEntry(digest, size)
        return cls(files)


@dataclass(frozen=True)
class GcReport:
    removed_blobs: int
    freed_bytes: int
    kept_blobs: int


def hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            h.update(chunk)
    return h.hexdigest()


class ArtifactStore:
    """Blobs and checkouts under ``root``; see the module docstring for the contract."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.blob_dir = self.root / "blobs" / "sha256"
        self.checkout_dir = self.root / "checkouts"
        self.tmp_dir = self.root / "tmp"
        for d in (self.blob_dir, self.checkout_dir, self.tmp_dir):
            d.mkdir(parents=True, exist_ok=True)

    def blob_path(self, digest: str) -> Path:
        return self.blob_dir / digest[:2] / digest

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    # ------------------------------------------------------------ writing

    def put_file(self, src: Path) -> FileEntry:
        """Store one file's bytes (once); returns its entry. Idempotent."""
        tmp = self.tmp_dir / f"{uuid.uuid4().hex}.part"
        h = hashlib.sha256()
        size = 0
        try:
            with src.open("rb") as fin, tmp.open("wb") as fout:
                while chunk := fin.read(CHUNK_BYTES):
                    h.update(chunk)
                    fout.write(chunk)
                    size += len(chunk)
                fout.flush()
                os.fsync(fout.fileno())
            digest = h.hexdigest()
            dest = self.blob_path(digest)
            if dest.exists():
                tmp.unlink()
                # Refresh the age so a concurrent gc's grace window protects a re-used blob.
                os.utime(dest)
            else:
                dest.parent.mkdir(parents=True, exist_ok=True)
                tmp.chmod(0o444)
                os.replace(tmp, dest)
            return FileEntry(digest, size)
        finally:
            if tmp.exists():
                tmp.unlink()

    def put_dir(self, src_dir: str | Path) -> Manifest:
        """Store every regular file under ``src_dir``; returns the manifest (not yet referenced)."""
        src = Path(src_dir)
        if not src.is_dir():
            raise ValidationError(f"not a directory: {src}")
        files: dict[str, FileEntry] = {}
        for path in sorted(src.rglob("*")):
            if path.is_file() and not path.is_symlink():
                files[path.relative_to(src).as_posix()] = self.put_file(path)
        if not files:
            raise ValidationError(f"directory {src} holds no files")
        return Manifest(files)

    # ------------------------------------------------------------ reading

    def verify_blob(self, digest: str) -> None:
        path = self.blob_path(digest)
        if not path.is_file():
            raise IntegrityError(f"blob {digest[:12]} is missing from the artifact store")
        actual = hash_file(path)
        if actual != digest:
            raise IntegrityError(f"blob {digest[:12]} is corrupt (content hashes to {actual[:12]})")

    def verify(self, manifest: Manifest) -> None:
        """Re-hash every blob of ``manifest``; raises :class:`IntegrityError` on any mismatch."""
        for entry in manifest.files.values():
            self.verify_blob(entry.digest)

    def checkout(self, manifest: Manifest, *, verify: bool = True) -> Path:
        """A directory holding ``manifest``'s files; built once, atomically, then reused.

        Blobs are copied (not linked) so a process that writes into its
        checkout can never corrupt the store. Each copy is verified against its
        digest while it is made; an existing checkout is checked for size.
        """
        dest = self.checkout_dir / manifest.digest
        if dest.is_dir():
            for rel, entry in manifest.files.items():
                p = dest / rel
                if not p.is_file() or p.stat().st_size != entry.size_bytes:
                    raise IntegrityError(f"checkout {dest} is damaged at {rel}; remove it to rebuild")
            return dest
        staging = self.tmp_dir / f"co-{uuid.uuid4().hex}"
        try:
            for rel, entry in manifest.files.items():
                src = self.blob_path(entry.digest)
                if not src.is_file():
                    raise IntegrityError(f"blob {entry.digest[:12]} of {rel} is missing")
                out = staging / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                h = hashlib.sha256()
                with src.open("rb") as fin, out.open("wb") as fout:
                    while chunk := fin.read(CHUNK_BYTES):
                        h.update(chunk)
                        fout.write(chunk)
                if verify and h.hexdigest() != entry.digest:
                    raise IntegrityError(f"{rel}: blob {entry.digest[:12]} is corrupt")
            try:
                os.replace(staging, dest)
            except OSError:
                if not dest.is_dir():  # another process won the race: fine
                    raise
            return dest
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    def read_bytes(self, manifest: Manifest, rel: str) -> bytes:
        entry = manifest.files.get(rel)
        if entry is None:
            raise NotFound(f"artifact has no file {rel!r}")
        data = self.blob_path(entry.digest).read_bytes()
        if hashlib.sha256(data).hexdigest() != entry.digest:
            raise IntegrityError(f"{rel}: blob {entry.digest[:12]} is corrupt")
        return data

    # ------------------------------------------------------------ accounting

    def all_blobs(self) -> dict[str, int]:
        """Every stored blob: digest -> size in bytes."""
        return {p.name: p.stat().st_size for p in self.blob_dir.glob("*/*") if p.is_file()}

    def usage_bytes(self) -> int:
        return sum(self.all_blobs().values())

    def gc(
        self, live: Iterable[Manifest], *, grace_s: float = DEFAULT_GC_GRACE_S, now: float | None = None
    ) -> GcReport:
        """Delete blobs no manifest in ``live`` references (older than ``grace_s``), stale
        checkouts and leftover temp files. Returns what was freed."""
        now = time.time() if now is None else now
        live = list(live)
        keep = {e.digest for m in live for e in m.files.values()}
        live_checkouts = {m.digest for m in live}
        removed = freed = kept = 0
        for path in list(self.blob_dir.glob("*/*")):
            st = path.stat()
            if path.name in keep or now - st.st_mtime < grace_s:
                kept += 1
                continue
            path.unlink()
            removed += 1
            freed += st.st_size
        for co in list(self.checkout_dir.iterdir()):
            if co.name not in live_checkouts:
                shutil.rmtree(co, ignore_errors=True)
        for tmp in list(self.tmp_dir.iterdir()):
            if now - tmp.stat().st_mtime >= grace_s:
                if tmp.is_dir():
                    shutil.rmtree(tmp, ignore_errors=True)
                else:
                    tmp.unlink()
        return GcReport(removed, freed, kept)
