"""bench/soak_turns.py: long loop turns attributed to the collector or the callback they ran."""

from __future__ import annotations

from pathlib import Path

from bench.soak_turns import Probes, attribute, load, turn_table

LOOP = "__main__:<module>;loadsvc.cli:_run_async;uvloop:run"
METRICS = LOOP + ";loadsvc.service.readcache:exposition_in_slices;loadsvc.selfmon:count_sockets"
READ = LOOP + ";loadsvc.users.arrival:StampedTransport._read_ready"


def _probes_with_turns(out: Path) -> Probes:
    probes = Probes(0.001, 0.001)
    for at, cpu, stacks in ((10.0, 0.012, [METRICS] * 3 + [READ]), (20.0, 0.030, [READ])):
        probes.turn_at.append(at)
        probes.turn_cpu.append(cpu)
        probes.turn_wall.append(cpu)
        for i, stack in enumerate(stacks):
            index = probes.stacks.setdefault(stack, len(probes.stack_names))
            if index == len(probes.stack_names):
                probes.stack_names.append(stack)
            probes.sample_at.append(at + 0.001 * (i + 1) * cpu / 0.004)
            probes.sample_stack.append(index)
    # A 25 ms middle-generation pause ends inside the second turn: it is the collector's.
    probes.gc_at.append(20.028)
    probes.gc_cpu.append(0.025)
    probes.gc_gen.append(1)
    probes.dump(out)
    return probes


def test_turns_are_the_collectors_or_their_callbacks(tmp_path: Path) -> None:
    """A turn whose samples were mostly in the exposition is /metrics'; one that a collector
    pause took most of is the collector's, by generation, whatever its samples say."""
    out = tmp_path / "turns.jsonl"
    _probes_with_turns(out)
    doc = load(out)
    assert attribute(doc, 0.0, 100.0) == [
        ("/metrics exposition", 0.012),
        ("collector, generation 1", 0.030),
    ]
    shown = turn_table(doc, 0.0, 60.0, 0.010, "t").text()
    assert "/metrics exposition" in shown and "collector, generation 1" in shown


def test_dumps_append_only_what_is_new(tmp_path: Path) -> None:
    """A second dump adds only the turns, samples and stacks since the first: loading the
    file gives each once."""
    out = tmp_path / "turns.jsonl"
    probes = _probes_with_turns(out)
    probes.turn_at.append(30.0)
    probes.turn_cpu.append(0.002)
    probes.turn_wall.append(0.002)
    probes.dump(out)
    doc = load(out)
    assert doc["turns"][0] == [10.0, 20.0, 30.0]
    assert len(doc["samples"][0]) == 5
    assert sorted(doc["stacks"].values()) == sorted([METRICS, READ])
