"""Test-only, for subprocesses given this folder on PYTHONPATH: torchvision's CIFAR, Flowers-102
and STL-10 readers accept the fake files of tests/fake_datasets.py. They check each file's MD5 against the
real release, which no fake can match; torchvision's own dataset tests patch the same check.
Only the checksum is skipped (a missing file still fails), and only once torchvision's cifar
module is imported, so processes that never read them (Ray's own) are untouched."""
import importlib.abc
import importlib.util
import os
import sys

_MODULES = {"torchvision.datasets.cifar", "torchvision.datasets.flowers102", "torchvision.datasets.stl10"}


class _ExistsInsteadOfMD5(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name not in _MODULES:
            return None
        _MODULES.discard(name)
        sys.meta_path.remove(self)   # find the real module, then patch it once it has run
        spec = importlib.util.find_spec(name)
        if _MODULES:
            sys.meta_path.insert(0, self)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            module.check_integrity = lambda fpath, md5=None: os.path.isfile(fpath)
        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _ExistsInsteadOfMD5())
