"""``lienthong serve`` fixes glibc's mmap threshold before its workers fork (``fix_mmap_threshold``): a
block of a megabyte or more is handed back to the system when freed, even after a larger one was freed
before (glibc would otherwise raise the threshold to that size and keep the next such blocks in its heap).
Each case runs in a fresh interpreter: the setting is process-wide and cannot be undone."""

from __future__ import annotations

import ctypes.util
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc" or not ctypes.util.find_library("c"),
    reason="glibc's allocator on Linux",
)

_PROGRAM = """
import os, sys
from gateway.server import fix_mmap_threshold

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

if sys.argv[1] == "fixed":
    assert fix_mmap_threshold()
big = b"x" * (20 << 20)  # a large block (a packet's text): mapped, then freed
del big
before = rss()
blocks = [b"y" * (3 << 20) for _ in range(6)]  # the next packet's blocks, written through, then freed
del blocks
print(rss() - before)
"""


def _kept_after_free(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", _PROGRAM, mode], capture_output=True, text=True, check=True, timeout=60
    )
    return int(out.stdout.strip())


def test_a_freed_large_block_goes_back_to_the_system_with_the_threshold_fixed():
    assert _kept_after_free("fixed") < 4 << 20


def test_without_it_glibc_keeps_such_blocks_after_a_larger_one_was_freed():
    # the behaviour the setting is there for (if glibc stops doing this, the setting can go)
    assert _kept_after_free("default") > 16 << 20
