"""The ``mtier`` preset: a ``[[contexts]]`` entry expanded into the kernel sample's two
contexts (samples/damon/mtier.c), its validation messages, and ``damond check`` printing
the expansion."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from damond.config import ConfigError, ContextConfig, Mode, load_settings
from damond.control.pageclass import PageClass
from damond.simulation.run import run_simulation
from tests.conftest import damond_env, run_cli

MiB = 1 << 20
U32_MAX = 2**32 - 1

PRESET = '[[contexts]]\nname = "tier"\npreset = "mtier"\nnodes = [0, 1]\n'
PLAIN = (
    '[[contexts]]\nname = "{name}"\nnode = 0\nscheme = {{ target_nid = 1 }}\n'
    'goal = {{ metric = "node_target_mem_bp", nid = 0, target_bp = {target} }}\n'
)


def load(tmp_path: Path, text: str) -> tuple[ContextConfig, ...]:
    path = tmp_path / "damond.toml"
    path.write_text(text)
    return load_settings(path).contexts


def errors(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return info.value.errors


def test_mtier_expands_into_the_kernel_samples_two_contexts(tmp_path: Path) -> None:
    promote, demote = load(tmp_path, PRESET)
    assert (promote.name, demote.name) == ("tier-promote", "tier-demote")
    for ctx in (promote, demote):
        assert ctx.preset == "tier (mtier on nodes 0, 1)"
        assert ctx.mode.value == "daemon" and ctx.enabled
        # the sample's attrs: 5 ms sampling, 100 ms aggregation, 60 s ops update
        assert (ctx.intervals.sample_us, ctx.intervals.aggr_us) == (5_000, 100_000)
        assert ctx.intervals.update_us == 60_000_000
        # 200 MiB per 1 s reset interval, prioritized by access frequency and age only
        quota = ctx.scheme.quota
        assert (quota.max_bytes, quota.reset_interval_ms) == (200 * MiB, 1_000)
        weights = quota.weights
        assert (weights.sz_permil, weights.nr_accesses_permil, weights.age_permil) == (0, 100, 100)
        assert (ctx.scheme.access_pattern.age_min, ctx.scheme.access_pattern.age_max) == (
            0,
            U32_MAX,
        )
        (young,) = ctx.scheme.filters
        assert (young.type, young.matching) == ("young", True)
        assert ctx.goal.nid == 0  # both goals are of node 0, the fast node
    # promotion: hot pages of node 1 to node 0 until node 0 is 99.7 % used
    assert (promote.node, promote.scheme.target_nid, promote.scheme.action) == (1, 0, "migrate_hot")
    pattern = promote.scheme.access_pattern
    assert (pattern.nr_accesses_min, pattern.nr_accesses_max) == (1, U32_MAX)
    assert promote.scheme.filters[0].allow  # young pages only
    assert (promote.goal.metric, promote.goal.target_bp) == ("node_mem_used_bp", 9970)
    # demotion: cold pages of node 0 to node 1 until node 0 is 0.5 % free
    assert (demote.node, demote.scheme.target_nid, demote.scheme.action) == (0, 1, "migrate_cold")
    pattern = demote.scheme.access_pattern
    assert (pattern.nr_accesses_min, pattern.nr_accesses_max) == (0, 0)
    assert not demote.scheme.filters[0].allow  # young pages are left alone
    assert (demote.goal.metric, demote.goal.target_bp) == ("node_mem_free_bp", 50)


def test_overrides_reach_both_contexts(tmp_path: Path) -> None:
    promote, demote = load(
        tmp_path,
        '[[contexts]]\nname = "t"\npreset = "MTIER"\nnodes = [1, 0]\nmode = "kernel"\n'
        "enabled = false\nmem_used_bp = 9000\nmem_free_bp = 500\nmax_bytes = 67108864\n",
    )
    assert (promote.node, promote.scheme.target_nid, promote.goal.nid) == (0, 1, 1)
    assert (demote.node, demote.scheme.target_nid, demote.goal.nid) == (1, 0, 1)
    assert (promote.goal.target_bp, demote.goal.target_bp) == (9000, 500)
    for ctx in (promote, demote):
        assert ctx.mode.value == "kernel" and not ctx.enabled
        assert ctx.scheme.quota.max_bytes == 64 * MiB


def test_a_cross_check_names_the_preset_a_context_came_from(tmp_path: Path) -> None:
    assert errors(tmp_path, PRESET.replace("[0, 1]", "[2, 1]")) == [
        f"contexts[{i}] ({name} of the preset tier (mtier on nodes 2, 1)).{field}: unknown "
        "node 2, the simulated machine has nodes 0, 1"
        for i, name, field in [
            (0, "tier-promote", "scheme.target_nid"),
            (0, "tier-promote", "goal.nid"),
            (1, "tier-demote", "node"),
            (1, "tier-demote", "goal.nid"),
        ]
    ]


def test_written_contexts_keep_their_places(tmp_path: Path) -> None:
    contexts = load(
        tmp_path, PLAIN.format(name="a", target=6000) + PRESET + PLAIN.format(name="b", target=5000)
    )
    assert [c.name for c in contexts] == ["a", "tier-promote", "b", "tier-demote"]
    assert [c.preset for c in contexts] == [
        None,
        "tier (mtier on nodes 0, 1)",
        None,
        "tier (mtier on nodes 0, 1)",
    ]
    # an error in an entry after a preset names that entry's own place in the file
    assert errors(tmp_path, PRESET + PLAIN.format(name="b", target=70000)) == [
        "contexts[1].goal.target_bp: must be between 0 and 10000, got 70000"
    ]


def test_every_bad_preset_field_is_named_with_the_rest(tmp_path: Path) -> None:
    text = (
        PLAIN.format(name="a", target=70000)
        + '[[contexts]]\nname = "tier"\npreset = "mtierx"\nnodes = [0, 0]\n'
        "mem_used_bp = 10001\nnode = 1\n"
        + '[[contexts]]\nname = "t2"\npreset = "mtier"\nnodes = [0]\n'
        + '[[contexts]]\nname = "a-very-long-name-that-leaves-no-room-for-the-suffix-promote"\n'
        'preset = "mtier"\nnodes = [0, 1]\n'
    )
    assert errors(tmp_path, text) == [
        "contexts[1].preset: input should be 'mtier', got 'mtierx'",
        "contexts[1].nodes: must be two different nodes, the fast one first, like [0, 1], "
        "got [0, 0]",
        "contexts[1].mem_used_bp: must be between 0 and 10000, got 10001",
        "contexts[1].node: unknown field",
        "contexts[2].nodes: must be two nodes, the fast one first, like [0, 1], got [0]",
        "contexts[3].name: must be 1-55 letters, digits, '_', '.' or '-', starting with a "
        "letter or digit (the contexts are named <name>-promote and <name>-demote), got "
        "'a-very-long-name-that-leaves-no-room-for-the-suffix-promote'",
        "contexts[0].goal.target_bp: must be between 0 and 10000, got 70000",
    ]


def test_a_name_the_preset_would_take_twice_is_refused(tmp_path: Path) -> None:
    assert errors(tmp_path, PLAIN.format(name="tier-demote", target=6000) + PRESET) == [
        "contexts[1].name: the preset names a context 'tier-demote', as contexts[0] is named, "
        "got 'tier'"
    ]
    assert errors(tmp_path, PRESET + PRESET.replace("[0, 1]", "[1, 0]")) == [
        "contexts[1].name: the preset names a context 'tier-promote', as contexts[0] is named, "
        "got 'tier'",
        "contexts[1].name: the preset names a context 'tier-demote', as contexts[0] is named, "
        "got 'tier'",
    ]


def test_a_preset_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAMOND_CONTEXTS", '[{"name": "t", "preset": "mtier", "nodes": [0, 1]}]')
    assert [c.name for c in load_settings(None).contexts] == ["t-promote", "t-demote"]


def test_check_prints_the_expansion(tmp_path: Path) -> None:
    path = tmp_path / "damond.toml"
    path.write_text(PRESET)
    done = run_cli("check", "-c", str(path), env=damond_env())
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert lines[0] == f"config: ok (2 contexts) from {path}"
    at = lines.index("presets:")
    assert lines[at + 1 :] == [
        "  tier (mtier on nodes 0, 1) expands into:",
        "    tier-promote: node 1 -> node 0, migrate_hot (allow young), daemon mode; goal "
        "node_mem_used_bp of node 0 at 9970 bp",
        "    tier-demote: node 0 -> node 1, migrate_cold (reject young), daemon mode; goal "
        "node_mem_free_bp of node 0 at 50 bp",
    ]


def test_check_without_presets_prints_no_preset_section() -> None:
    done = run_cli("check", env=damond_env())
    assert done.returncode == 0, done.stderr
    assert "presets:" not in done.stdout and not done.stdout.endswith("\n\n")


# -- the mtier scenario: the preset on the simulator under a growing workload ----------------

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "benchmarks" / "scenarios" / "mtier.toml"


@pytest.mark.parametrize("mode", ["daemon", "kernel"])
def test_mtier_keeps_dram_near_99_6_percent_used_as_the_workload_grows(mode: str) -> None:
    settings = load_settings(SCENARIO, {"backend": "simulated"})
    contexts = tuple(c.model_copy(update={"mode": Mode(mode)}) for c in settings.contexts)
    result = asyncio.run(run_simulation(settings.model_copy(update={"contexts": contexts}), 600))
    used = result.history["tier-promote"]  # node_mem_used_bp of node 0
    free = dict(result.history["tier-demote"])  # node_mem_free_bp of node 0

    def at(t_s: float) -> int:
        return [v for t, v in used if t <= t_s][-1]

    # while the workload fits, DRAM holds all of it: 4 GiB idle + 2 GiB, then + 8 GiB
    assert abs(at(149) - 3750) <= 10 and abs(at(299) - 7500) <= 10
    # from 300 s it outgrows DRAM (4 + 14 GiB): DRAM settles between the demotion goal
    # (0.5 % free: 9950) and the promotion goal (9970), and stays as the workload grows
    settled = [(t, v) for t, v in used if t >= 360]
    assert settled and all(9950 <= v <= 9970 for _, v in settled), settled
    # the demotion context sees the same node from the other side
    assert all(abs(v + free[t] - 10_000) <= 1 for t, v in settled if t in free)
    assert result.contexts[0].final_bp == at(600)


def test_an_unlimited_age_reads_as_any_age_at_the_samples_short_intervals(
    tmp_path: Path,
) -> None:
    """age_max at the kernel's largest value is no limit, also at 100 ms aggregations
    (it read "aged 0-4.29497e+08 s" once)."""
    promote, demote = load(tmp_path, PRESET)
    assert PageClass.of(promote).describe() == (
        "pages accessed in 5%-100% of samples, aged 0 s or more"
    )
    assert PageClass.of(demote).describe().endswith("aged 0 s or more")
