"""Load-time memory: peak RSS and artifact bytes reported, table buffers prefaulted into huge-page memory
on request (issue 20), outputs unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import recc
from recc.runtime import memory
from tests.conftest import FP32_ATOL, max_abs_error
from tests.passes.test_batch_embedding_bags import MixedTables, _inputs


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> tuple[MixedTables, Path]:
    module = MixedTables().eval()
    compiled = recc.compile(module, _inputs(4, 0), tuning_db=None)
    return module, compiled.save(tmp_path_factory.mktemp("memory") / "m.recc")


@pytest.mark.parametrize("prefault", [False, True])
def test_prefaulted_or_mapped_tables_give_eager_outputs(artifact, monkeypatch, prefault: bool) -> None:
    module, path = artifact
    monkeypatch.setattr(memory, "LARGE_WEIGHT_BYTES", 1)  # every weight is a "table buffer" here
    loaded = recc.load(path, prefault=prefault)
    inputs = _inputs(9, seed=4)
    assert max_abs_error(loaded(*inputs), module(*inputs)) <= FP32_ATOL
    report = loaded.memory()
    assert report["prefaulted"] is prefault and report["table_buffer_bytes"] > 0
    assert report["artifact_bytes"] == sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    assert report["peak_rss_bytes"] > 0 and report["thp_setting"] in ("always", "madvise", "never", "unavailable")


def test_read_huge_paged_reads_the_file_into_aligned_memory(tmp_path: Path) -> None:
    data = np.arange(3 << 20, dtype=np.float32)  # 12 MiB: several huge pages
    path = tmp_path / "t.npy"
    np.save(path, data)
    offset = np.load(path, mmap_mode="r").offset
    array = memory.read_huge_paged(path, offset, data.dtype, data.shape)
    np.testing.assert_array_equal(array, data)
    assert array.flags.writeable and array.ctypes.data % memory.HUGE_PAGE == 0
    if memory.thp_setting() in ("always", "madvise"):
        assert memory.huge_page_bytes(array) > 0  # granted where the kernel allows it
    with pytest.raises(EOFError):
        memory.read_huge_paged(path, offset, data.dtype, (data.size + 1,))
