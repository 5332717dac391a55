"""Where the files that one process writes and another reads live (``cluster.storage``).

Every hand-off between processes goes through here, by key (a relative path such as
``backbones/<pretraining id>/backbone.pt``), never as a local path: the writer may be a Ray
Train worker on one node and the reader an evaluation task on another. The storage is

* a local folder: the run directory by default, which only works while every process runs
  on one machine (ray_exec.check_shared_storage refuses it on a cluster of several nodes);
* a folder every node mounts (a shared filesystem: NFS, Lustre, ...), given as its path;
* an object store, given as a URI (``s3://bucket/prefix``, ``gs://...``), reached through
  pyarrow's filesystems with their usual variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...).

Ray Train's checkpoints go there as well (``ray_train``). A reader gets a local file: the
stored file itself on a filesystem, else a copy downloaded into its node's cache, named by the
stored file's size and time so that a file rewritten later (a rerun) is downloaded again."""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import pyarrow.fs as pafs

from workloads.data.remote import filesystem


class Storage:
    def __init__(self, location: str | os.PathLike):
        self.location = str(location)
        self.fs, self.root = filesystem(self.location)

    @property
    def is_local(self) -> bool:
        """A filesystem path (this machine's disk or a shared mount), not an object store."""
        return isinstance(self.fs, pafs.LocalFileSystem)

    def path(self, key: str) -> str:
        return f"{self.root}/{key.strip('/')}" if key else self.root

    def uri(self, key: str = "") -> str:
        """How messages name a stored file (the URI the user wrote, or the path)."""
        if self.is_local:
            return self.path(key)
        return f"{self.location.rstrip('/')}/{key}" if key else self.location

    def exists(self, key: str) -> bool:
        return self.fs.get_file_info(self.path(key)).type == pafs.FileType.File

    def put(self, local_file: str | os.PathLike, key: str) -> None:
        """Store a file under ``key``. Readers never see it half written: a local copy is renamed
        into place, an object-store upload appears whole when it completes."""
        dest = self.path(key)
        self.fs.create_dir(dest.rsplit("/", 1)[0], recursive=True)
        if self.is_local:
            tmp = f"{dest}.{os.getpid()}.tmp"
            shutil.copyfile(local_file, tmp)
            os.replace(tmp, dest)
        else:
            pafs.copy_files(str(Path(local_file).resolve()), dest, source_filesystem=pafs.LocalFileSystem(),
                            destination_filesystem=self.fs)

    def fetch(self, key: str, cache_dir: str | os.PathLike) -> Path:
        """A local file with the stored contents of ``key`` (FileNotFoundError naming it if absent)."""
        info = self.fs.get_file_info(self.path(key))
        if info.type != pafs.FileType.File:
            raise FileNotFoundError(f"{self.uri(key)}: not in the storage (cluster.storage)")
        if self.is_local:
            return Path(self.path(key))
        stamp = f"{self.location}|{key}|{info.size}|{info.mtime_ns}"
        dest = Path(cache_dir) / "storage" / hashlib.sha256(stamp.encode()).hexdigest()[:20] / Path(key).name
        if not dest.is_file():
            dest.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
                part = Path(tmp) / dest.name
                pafs.copy_files(self.path(key), str(part), source_filesystem=self.fs,
                                destination_filesystem=pafs.LocalFileSystem())
                os.replace(part, dest)
        return dest

    def delete(self, key: str) -> None:
        """Remove a stored file or everything under a folder key; nothing there is fine."""
        path = self.path(key)
        kind = self.fs.get_file_info(path).type
        if kind == pafs.FileType.File:
            self.fs.delete_file(path)
        elif kind == pafs.FileType.Directory:
            self.fs.delete_dir(path)

    def list(self, key: str) -> list[str]:
        """Keys of the files under a folder key (recursively), relative to the storage root."""
        selector = pafs.FileSelector(self.path(key), recursive=True, allow_not_found=True)
        return sorted(i.path[len(self.root) + 1:] for i in self.fs.get_file_info(selector)
                      if i.type == pafs.FileType.File)

    def check_writable(self, setting: str = "cluster.storage") -> None:
        """Write and remove a small file, so that an unreachable store, a missing bucket or a
        folder that cannot be made fails before any cell starts, naming the setting."""
        from .experiment import ConfigError
        key = f".sassl-probe-{os.getpid()}"
        try:
            with tempfile.TemporaryDirectory() as tmp:
                (Path(tmp) / "probe").write_text("sassl")
                self.put(Path(tmp) / "probe", key)
            self.delete(key)
        except (OSError, ValueError) as e:
            raise ConfigError(f"{setting}: cannot write to {self.uri()}: {' '.join(str(e).split())}") from None

    def ray_train(self, key: str) -> dict:
        """RunConfig arguments that put a Ray Train (or Tune) run's checkpoints under ``key``."""
        if self.is_local:
            return {"storage_path": self.path(key)}
        return {"storage_path": self.path(key), "storage_filesystem": self.fs}
