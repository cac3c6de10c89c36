"""A short soak (scripts/soak runs 1,000 turns): turns do not leak memory, fds or tasks."""

from __future__ import annotations

from pathlib import Path

from tests.support.soak import soak


async def test_sixty_turns_leak_no_file_descriptors_tasks_or_memory(tmp_path: Path) -> None:
    first, last = await soak(60, tmp_path)
    print(f"RSS {first.rss_kb} -> {last.rss_kb} kB, fds {first.fds}, tasks {first.tasks}")
    assert last.turns - first.turns >= 60
    assert last.fds == first.fds
    assert last.tasks == first.tasks
    assert last.rss_kb - first.rss_kb < 2048  # the full soak's budget is 5 MB per 1,000
