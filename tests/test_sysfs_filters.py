"""A scheme's configured DAMOS filters on fake 6.12, 6.14, 6.18 and 7.2 trees: the
directories and files each kernel has, the translation for kernels before 6.15, the
refusals naming the filter, read-back and roll-back."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from damond.backend.sysfs import filters as kfilters
from damond.backend.sysfs.backend import SysfsBackend
from damond.config import ContextConfig
from damond.control.translation import build_context
from damond.model import damon as model
from damond.model.errors import BackendError, EnvironmentRefused
from damond.model.filtering import Page
from tests.fakedamon import BLOCK, FakeKernel, FakeMachine, make_machine
from tests.sysfs_support import backend, pull_context

W = "kdamonds/0/contexts/0/schemes/0"
DB = "/system.slice/db.service"
BATCH = "/batch.slice"
NODE0 = {"type": "addr", "matching": "Y", "addr_start": "0", "addr_end": str(8 * BLOCK)}
"""damond's own first core filter of the node-1 context: reject node 0's memory."""


def ctx(filters: list[dict[str, Any]], mode: str = "daemon") -> dict[str, Any]:
    return pull_context(mode, scheme={"target_nid": 0, "filters": filters})


@pytest.fixture
async def started() -> AsyncIterator[list[SysfsBackend]]:
    """Backends a test started, closed after it."""
    backends: list[SysfsBackend] = []
    yield backends
    for b in backends:
        await b.close()


async def start(
    m: FakeMachine,
    k: FakeKernel,
    state: Path,
    filters: list[dict[str, Any]],
    started: list[SysfsBackend],
) -> list[tuple[str, str]]:
    """Start the pull context with ``filters``; return the writes to its filter files."""
    c = ctx(filters)
    b = backend(m, k, state, contexts=[c])
    await b.open()
    started.append(b)
    k.writes.clear()
    await b.start_context(build_context(ContextConfig.model_validate(c)))
    return [(p, v) for p, v in k.writes if p.startswith(W) and "filters/" in p]


def read_dir(m: FakeMachine, k: FakeKernel, where: str, names: list[dict[str, str]]) -> None:
    """``where`` holds exactly the filters ``names`` describe (file -> value)."""
    d = m.admin / W / where
    assert k.read(d / "nr_filters") == str(len(names)), where
    for i, expected in enumerate(names):
        actual = {name: k.read(d / str(i) / name) for name in expected}
        assert actual == expected, f"{where}/{i}"


def files_written(written: list[tuple[str, str]], where: str) -> set[str]:
    return {p.split(f"{where}/", 1)[1] for p, _ in written if f"/{where}/" in p}


USER = [
    {"type": "memcg", "memcg_path": DB, "allow": True},
    {"type": "addr", "addr_start": 8 * BLOCK, "addr_end": 10 * BLOCK, "allow": False},
    {"type": "anon", "matching": False, "allow": False},
]


@pytest.mark.parametrize("version", ["6.18", "7.2"])
async def test_layered_kernels_get_core_and_ops_filters_in_order(
    tmp_path: Path, started: list[SysfsBackend], version: str
) -> None:
    m, k = make_machine(tmp_path / "root", version)
    written = await start(m, k, tmp_path / "state", USER, started)
    read_dir(
        m,
        k,
        "core_filters",
        [
            {**NODE0, "allow": "N"},
            {
                "type": "addr",
                "matching": "Y",
                "allow": "N",
                "addr_start": str(8 * BLOCK),
                "addr_end": str(10 * BLOCK),
            },
        ],
    )
    read_dir(
        m,
        k,
        "ops_filters",
        [
            {"type": "memcg", "matching": "Y", "allow": "Y", "memcg_path": DB},
            {"type": "anon", "matching": "N", "allow": "N"},
        ],
    )
    read_dir(m, k, "filters", [])
    assert not files_written(written, "filters")
    # only each type's own fields are written (and only values that differ)
    assert files_written(written, "ops_filters") == {
        "nr_filters",
        "0/type",
        "0/matching",
        "0/allow",
        "0/memcg_path",
    }


async def test_6_12_gets_one_filters_dir_and_the_last_allow_filter_turned_around(
    tmp_path: Path,
    started: list[SysfsBackend],
) -> None:
    """6.12 has no ``allow`` file and lets through every page no filter decides: the
    memcg allow filter, last of the ops layer, becomes "reject what is not of DB"."""
    m, k = make_machine(tmp_path / "root", "6.12")
    written = await start(m, k, tmp_path / "state", [USER[1], USER[0]], started)
    read_dir(
        m,
        k,
        "filters",
        [
            NODE0,
            {
                "type": "addr",
                "matching": "Y",
                "addr_start": str(8 * BLOCK),
                "addr_end": str(10 * BLOCK),
            },
            {"type": "memcg", "matching": "N", "memcg_path": DB},
        ],
    )
    assert not (m.admin / W / "core_filters").exists()
    assert not any(p.endswith("/allow") for p, _ in written)


async def test_6_14_writes_allow_and_turns_only_the_last_around(
    tmp_path: Path, started: list[SysfsBackend]
) -> None:
    m, k = make_machine(tmp_path / "root", "6.14")
    user = [{"type": "memcg", "memcg_path": DB}, {"type": "memcg", "memcg_path": BATCH}]
    await start(m, k, tmp_path / "state", user, started)
    read_dir(
        m,
        k,
        "filters",
        [
            {**NODE0, "allow": "N"},
            {"type": "memcg", "matching": "Y", "allow": "Y", "memcg_path": DB},
            {"type": "memcg", "matching": "N", "allow": "N", "memcg_path": BATCH},
        ],
    )


async def test_hugepage_size_filter_writes_min_and_max_on_7_2(
    tmp_path: Path, started: list[SysfsBackend]
) -> None:
    m, k = make_machine(tmp_path / "root", "7.2")
    user = [{"type": "hugepage_size", "min": 2 << 20, "max": 2 << 20, "allow": False}]
    await start(m, k, tmp_path / "state", user, started)
    read_dir(
        m,
        k,
        "ops_filters",
        [{"type": "hugepage_size", "matching": "Y", "allow": "N", "min": "2097152"}],
    )
    assert k.read(m.admin / W / "ops_filters/0/max") == "2097152"


@pytest.mark.parametrize(
    ("version", "user", "message"),
    [
        (
            "6.12",
            [{"type": "active", "allow": False}],
            r"contexts\[0\]\.scheme\.filters\[0\]\.type: 'active' needs Linux 6\.15\+ "
            r"\(kernel 6\.12\.117\+deb13-amd64\)",
        ),
        (
            "6.14",
            [{"type": "anon"}, {"type": "hugepage_size", "min": 0, "max": 4096}],
            r"contexts\[0\]\.scheme\.filters\[1\]\.type: 'hugepage_size' needs Linux 6\.15\+",
        ),
        (
            "6.12",
            [{"type": "memcg", "memcg_path": DB}, {"type": "memcg", "memcg_path": BATCH}],
            r"contexts\[0\]\.scheme\.filters\[0\]\.allow: this allow filter needs Linux "
            r"6\.14\+ \(kernel 6\.12\.117\+deb13-amd64\); before, only the last filter",
        ),
        (  # the core layer's last filter, but ops filters follow: it cannot be turned around
            "6.12",
            [{"type": "addr", "addr_start": 0, "addr_end": 4096}, {"type": "anon"}],
            r"contexts\[0\]\.scheme\.filters\[0\]\.allow: this allow filter needs Linux 6\.14",
        ),
    ],
)
async def test_a_filter_the_kernel_lacks_is_refused_at_open(
    tmp_path: Path, version: str, user: list[dict[str, Any]], message: str
) -> None:
    m, k = make_machine(tmp_path / "root", version)
    b = backend(m, k, tmp_path / "state", contexts=[ctx(user)])
    with pytest.raises(EnvironmentRefused, match=message):
        await b.open()
    assert k.read(m.admin / "kdamonds/nr_kdamonds") == "0"


class DropsMemcgPath(FakeKernel):
    """A kernel that keeps another cgroup path than the one written."""

    def write(self, path: Path, value: str) -> None:
        if path.name == "memcg_path":
            value = value.rsplit("/", 1)[0] or "/"
        super().write(path, value)


async def test_a_filter_not_read_back_fails_and_rolls_the_start_back(tmp_path: Path) -> None:
    m, _ = make_machine(tmp_path / "root", "7.2")
    k = DropsMemcgPath(m)
    c = ctx([{"type": "memcg", "memcg_path": DB}])
    b = backend(m, k, tmp_path / "state", contexts=[c])
    await b.open()
    with pytest.raises(BackendError, match=r"ops_filters/0/memcg_path: '/system.slice/db"):
        await b.start_context(build_context(ContextConfig.model_validate(c)))
    kd = m.admin / "kdamonds/0"
    assert k.read(kd / "state") == "off"
    # nothing half-written stays staged for anyone to turn on
    assert k.read(kd / "contexts/nr_contexts") == "0"
    await b.close()
    assert k.read(m.admin / "kdamonds/nr_kdamonds") == "0"


async def test_a_cgroup_that_does_not_exist_fails_the_start_naming_the_filter(
    tmp_path: Path,
) -> None:
    m, k = make_machine(tmp_path / "root", "7.2")
    cgroups = tmp_path / "cgroup"
    (cgroups / "system.slice").mkdir(parents=True)
    c = ctx([{"type": "memcg", "memcg_path": DB}])
    b = backend(m, k, tmp_path / "state", contexts=[c], sysfs={"cgroup_root": cgroups})
    await b.open()
    model_ctx = build_context(ContextConfig.model_validate(c))
    k.writes.clear()
    with pytest.raises(
        BackendError,
        match=r"contexts\[0\]\.scheme\.filters\[0\]\.memcg_path: no cgroup "
        r"/system\.slice/db\.service \(no directory .*/cgroup/system\.slice/db\.service\)",
    ):
        await b.start_context(model_ctx)
    assert not [p for p, _ in k.writes if p.startswith("kdamonds/0/")]
    (cgroups / "system.slice/db.service").mkdir()  # the service started: the retry runs
    await b.start_context(model_ctx)
    assert k.read(m.admin / "kdamonds/0/state") == "on"
    await b.close()


# -- the translation for kernels before 6.15 lets the same pages through ----------------


def _holds(f: model.Filter, page: Page) -> bool:
    """The filter's condition (its type matches, or with ``matching`` N does not)."""
    if f.type is model.FilterType.ADDR:
        of_type = f.addr_start <= page.addr < f.addr_end
    elif f.type is model.FilterType.MEMCG:
        of_type = page.memcg == f.memcg_path
    else:
        of_type = page.anon
    return of_type == f.matching


def _first(layer: list[model.Filter], page: Page) -> bool | None:
    return next((f.allow for f in layer if _holds(f, page)), None)


def _acts(filters: list[model.Filter], page: Page, *, default_reject: bool) -> bool:
    """Whether the kernel acts on ``page`` (mm/damon/core.c, paddr.c): a layer's first
    filter whose condition holds decides, and a core allow skips the ops layer; an
    undecided page passes, or from 6.15 (``default_reject``) is rejected where the
    layer's last filter allows (the core layer only when no ops filter follows)."""
    core = [f for f in filters if f.type.is_core]
    ops = [f for f in filters if not f.type.is_core]
    decided = _first(core, page)
    if decided is not None:
        return decided
    if default_reject and core and not ops and core[-1].allow:
        return False
    decided = _first(ops, page)
    if decided is not None:
        return decided
    return not (default_reject and ops and ops[-1].allow)


FILTERS = st.builds(
    model.Filter,
    type=st.sampled_from([model.FilterType.ADDR, model.FilterType.MEMCG, model.FilterType.ANON]),
    matching=st.booleans(),
    allow=st.booleans(),
    memcg_path=st.sampled_from([DB, BATCH]),
    addr_start=st.just(0),
    addr_end=st.just(4096),
)
PAGES = [
    Page(memcg=cg, anon=anon, addr=addr)
    for cg, anon, addr in itertools.product([DB, BATCH, "/"], [True, False], [0, 8192])
]


@given(st.lists(FILTERS, max_size=4))
def test_translation_keeps_the_pages_the_kernel_acts_on(user: list[model.Filter]) -> None:
    written = kfilters.unlayered(user)
    for page in PAGES:
        expected = _acts(user, page, default_reject=True)
        assert _acts(written, page, default_reject=False) == expected, (user, page)
