"""The NERSC-style Slurm profile (profiles/slurm) on the paper config, without a cluster.

1. `snakemake --profile profiles/slurm all_figures -n`, run from the repository root exactly as a
   user types it: the jobs of config/paper.yaml alone (counts computed from the config), with the
   profile's Perlmutter resources, and every training and sampling job with the paper's settings
   (each job's message shows them); a config without a system plans none of its jobs.
2. The same command for real, with fake Slurm tools first on PATH (`sbatch` records its argv and
   prints a job id; `sacctmgr` knows the account m0000): the plugin submits every job that is ready
   at the start, then the run is killed. The sbatch lines are printed (`pytest -s`, or `-rA` for
   the captured output) and checked against what a Perlmutter user expects: `-A m0000` from
   $SBATCH_ACCOUNT, `-C cpu` / `-C gpu`, `--qos=regular`, runtime, memory and cores of the
   profile, `--gpus=<training.gpus>` on one node for training.

The submitting run works in a temporary working directory (`-d`); nothing is left running. The real Slurm
path is tests/test_slurm.py (a one-node cluster from ci/slurm/up.sh).
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, snakemake_env

from lattherm.config import load_config as complete_config
from lattherm.config import sizes_of, system_grid, training_gpus
from lattherm.reference import applies
from lattherm.systems import REGISTRY

pytestmark = pytest.mark.workflow

#: the target a Perlmutter user builds; `all_figures` once the figure stage lands (then add the
#: figure rules to expected_jobs)
TARGET = "all_figures"
#: as the user types it, from the repository root (the profile's configfile is relative to it)
PROFILE = "profiles/slurm"
ACCOUNT = "m0000"
#: rules whose jobs need no other job's output: the plugin submits all of them at once
SOURCE_RULES = (
    "exact_reference",
    "mcmc_reference",
    "wang_landau",
    "exact_composition_reference",
    "metadynamics_reference",
    "field_integration_reference",
    "train",
)
GPU_RULES = ("train", "sample")
#: every Slurm command the plugin may call on the submitting host
SLURM_TOOLS = ("sbatch", "sacct", "squeue", "scancel", "sinfo", "scontrol", "sacctmgr", "sshare", "srun")
SUBMIT_TIMEOUT = 120

FAKE_SLURM = """#!{python}
# Fake Slurm command for tests/test_slurm_profile.py: records its name, argv and stdin (one JSON
# line in $FAKE_SLURM_LOG); sbatch prints a job id, sacctmgr/sshare the account $SBATCH_ACCOUNT.
import fcntl, json, os, sys
tool = os.path.basename(sys.argv[0])
stdin = "" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read()
with open(os.environ["FAKE_SLURM_LOG"], "a+") as fh:
    fcntl.flock(fh, fcntl.LOCK_EX)
    fh.seek(0)
    n = sum(json.loads(line)["tool"] == "sbatch" for line in fh)
    fh.write(json.dumps({{"tool": tool, "argv": sys.argv[1:], "stdin": stdin}}) + "\\n")
if tool == "sbatch":
    print(1000 + n)
elif tool in ("sacctmgr", "sshare"):
    print(os.environ.get("SBATCH_ACCOUNT", ""))
elif tool == "sinfo":
    print("PARTITION")  # no default partition: the plugin adds no -p (Perlmutter routes by QOS)
"""


def load_profile() -> dict:
    return yaml.safe_load((ROOT / PROFILE / "config.yaml").read_text())


def load_config() -> dict:
    return yaml.safe_load((ROOT / load_profile()["configfile"]).read_text())


def expected_jobs(config: dict) -> Counter:
    """Jobs per rule of TARGET for a config (DESIGN §6 layout, workflow/rules/common.smk targets)."""
    systems = config["systems"]
    ising, cuau = sizes_of(config, "ising"), sizes_of(config, "cuau")
    cuau_exact = [s for s in cuau if REGISTRY["cuau"].has_exact(s)]
    metadynamics = config["reference"]["metadynamics"]["sizes"] if "cuau" in systems else []
    full = complete_config(config)  # with the schema's defaults
    fields = system_grid(full, "ising")[1] if ising else []
    integration = [s for s in ising if applies("ising", "field_integration", s, full["reference"], fields)]
    models = len(ising) * len(systems.get("ising", {}).get("models", [])) + len(cuau) * len(
        systems.get("cuau", {}).get("models", [])
    )
    with_models = len(ising) * bool(systems.get("ising", {}).get("models")) + len(cuau) * bool(
        systems.get("cuau", {}).get("models")
    )  # (system, size) pairs with sampler figures
    counts = Counter(
        exact_reference=len(ising) + len(cuau_exact),
        wang_landau=len(ising),
        mcmc_reference=len(ising) + len(cuau),
        exact_composition_reference=len(cuau_exact),
        metadynamics_reference=len(metadynamics),
        field_integration_reference=len(integration),
        phase_diagram_reference=len(metadynamics),
        train=models,
        sample=models,
        metrics=models,
        figure_free_energy=with_models,
        figure_heat_capacity=with_models,
        figure_training=with_models,
        figure_phase_diagram=len(metadynamics),
        figure_equal_cost=int(models > 0),
        sampler_summary=int(models > 0),
    )
    # an HTML view (for snakemake --report) of every table the target asks for
    # CuAu samplers: free energies per composition and their phase diagram (a table, its view, a figure)
    cuau_models = len(cuau) * len(systems.get("cuau", {}).get("models", []))
    counts.update(composition=cuau_models, figure_sampler_phase_diagram=cuau_models)
    counts["table_view"] = (3 * len(ising) + len(cuau) + 2 * len(cuau_exact) + 2 * len(metadynamics) + models
                            + len(integration) + int(models > 0) + 2 * cuau_models)  # fmt: skip
    counts[TARGET] = 1
    return +counts  # drops rules without jobs


@pytest.fixture(scope="module")
def fake_slurm(tmp_path_factory) -> Path:
    """A bin directory with fake Slurm commands (one script, one name per command)."""
    bin_dir = tmp_path_factory.mktemp("fake-slurm") / "bin"
    bin_dir.mkdir()
    script = bin_dir / "fake_slurm"
    script.write_text(FAKE_SLURM.format(python=sys.executable))
    script.chmod(0o755)
    for tool in SLURM_TOOLS:
        (bin_dir / tool).symlink_to(script.name)
    return bin_dir


def slurm_env(bin_dir: Path, log: Path) -> dict:
    """The test environment with the fake Slurm first on PATH, the account in SBATCH_ACCOUNT and
    no Slurm variables of a surrounding job or cluster."""
    env = {k: v for k, v in snakemake_env().items() if not k.startswith(("SLURM_", "SBATCH_", "SNAKEMAKE_SLURM"))}
    env["PATH"] = os.pathsep.join([str(bin_dir), env.get("PATH", "")])
    env["SBATCH_ACCOUNT"] = ACCOUNT
    env["FAKE_SLURM_LOG"] = str(log)
    return env


#: the message of a train / sample job in a dry run: what it runs and with which settings
JOB_MESSAGE = re.compile(
    r"^Job \d+: (?P<rule>train|sample) (?P<model>\S+) on (?P<system>\w+) (?P<size>\S+?)"
    r"(?:, (?P<gpus>\d+) GPU\(s\): model (?P<model_config>\{.*?\}), training (?P<train_config>\{.*\})"
    r"|: (?P<sampling>\{.*\}))$"
)


def parse_dry_run(out: str) -> list[tuple[str, dict]]:
    """(rule, resources) of every job in a dry run's output; train and sample jobs, which print a
    message instead, give (rule, their message's fields)."""
    jobs: list[tuple[str, dict]] = []
    for line in out.splitlines():
        if m := re.match(r"^(?:local)?rule (\w+):$", line):
            jobs.append((m.group(1), {}))
        elif (m := re.match(r"^\s+resources: (.*)$", line)) and jobs:
            jobs[-1][1].update(item.split("=", 1) for item in m.group(1).split(", "))
        elif m := JOB_MESSAGE.match(line):
            fields = {k: v for k, v in m.groupdict().items() if v is not None}
            for k in ("model_config", "train_config", "sampling"):
                if k in fields:
                    fields[k] = ast.literal_eval(fields[k])
            jobs.append((fields.pop("rule"), fields))
    return jobs


def dry_run(snakemake_exe: str, tmp_path: Path, fake_slurm: Path, *extra: str) -> tuple[list[tuple[str, dict]], str]:
    """The user's dry run, from the repository root as a user types it (the profile's configfile
    is relative to it); the fake Slurm's log in ``tmp_path``. Returns (jobs, output)."""
    log = tmp_path / "slurm.jsonl"
    cmd = [snakemake_exe, "--profile", PROFILE, TARGET, "-n", *extra]
    proc = subprocess.run(cmd, cwd=ROOT, env=slurm_env(fake_slurm, log), capture_output=True, text=True,
                          timeout=300, check=False)  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert not sbatch_calls(log), "a dry run submitted jobs"
    stats = dict(re.findall(r"^(\w+)\s+(\d+)$", out.split("Job stats:")[-1], flags=re.M))
    jobs = parse_dry_run(out)
    assert Counter(rule for rule, _ in jobs) == Counter({k: int(v) for k, v in stats.items() if k != "total"}), out
    return jobs, out


def _layered(block: dict, model: str, size: str) -> dict:
    """The settings of one job from a config block, as the config documents its layers."""
    block = dict(block or {})
    per_model, per_size = block.pop("per_model", {}) or {}, block.pop("per_size", {}) or {}
    size_block = dict(per_size.get(size) or {})
    size_models = size_block.pop("per_model", {}) or {}
    return {**block, **(per_model.get(model) or {}), **size_block, **(size_models.get(model) or {})}


def test_dry_run_paper_config(snakemake_exe, tmp_path, fake_slurm):
    """The user's command, from the repository root: the jobs of config/paper.yaml alone, under its
    own results root, with the profile's resources, and every training and sampling job with the
    paper's settings and GPUs (nothing from the laptop's config/config.yaml)."""
    config, profile = load_config(), load_profile()
    for extra in ((), ("--configfile", "config/paper.yaml")):
        jobs, out = dry_run(snakemake_exe, tmp_path, fake_slurm, *extra)
        assert Counter(rule for rule, _ in jobs) == expected_jobs(config)
        results = config["results_dir"]
        assert results != "results" and not re.search(r"(?<![\w-])results/", out), "writes into the laptop's results/"
        assert f"{results}/ising/10x10/models/" in out
        planned = {(r, f["system"], f["size"], f["model"]): f for r, f in jobs if r in GPU_RULES}
        wanted = {(r, system, size, model) for r in GPU_RULES for system, block in config["systems"].items()
                  for size in block["sizes"] for model in block["models"]}  # fmt: skip
        assert set(planned) == wanted
        for (rule, system, size, model), fields in planned.items():
            if rule == "train":
                settings = dict(fields["train_config"])
                assert isinstance(settings.pop("seed"), int)
                assert settings == _layered(config["training"][system], model, size), (system, size, model)
                assert fields["model_config"] == config["models"][model]
                want_gpus = config["training"].get("gpus_per_model", {}).get(model, config["training"]["gpus"])
                assert int(fields["gpus"]) == want_gpus
            else:
                sampling = _layered(config["sampling"].get(system, {}), model, size)
                top = {k: v for k, v in config["sampling"].items() if k not in ("ising", "cuau")}
                want = {**top, **sampling}
                want.pop("symmetrised", None)  # Ising only: its own check (test_config)
                assert {k: fields["sampling"][k] for k in want} == want, (system, model)
    train_gpus = {training_gpus(config, m) for s in config["systems"].values() for m in s["models"]}
    assert max(train_gpus) == 4, "the paper's MAM Transformers train on 4 GPUs"
    for rule, res in jobs:
        if rule in GPU_RULES or rule == TARGET or rule.startswith("figure_") or rule == "sampler_summary":
            continue  # train/sample: message above (their sbatch lines: test_sbatch_lines_perlmutter); local rules
        want = {**profile["default-resources"], **profile["set-resources"].get(rule, {})}
        assert res["slurm_account"] == ACCOUNT, (rule, res)
        for key in ("constraint", "qos", "runtime", "mem_mb", "cpus_per_task"):
            assert res[key] == str(want[key]), (rule, key, res)
        assert res["constraint"] == "cpu" and "gpu" not in res, (rule, res)


def test_config_without_a_system_plans_none_of_its_jobs(snakemake_exe, tmp_path, fake_slurm):
    """The paper config without its cuau block: not one CuAu job (nothing merged from another file),
    and a values grid is taken as it is."""
    config = load_config()
    del config["systems"]["cuau"]
    config["reference"]["metadynamics"]["sizes"] = []
    config["systems"]["ising"]["T"] = {"values": [1.5, 2.269, 3.5]}
    configfile = tmp_path / "ising-only.yaml"
    configfile.write_text(yaml.safe_dump(config))
    jobs, out = dry_run(snakemake_exe, tmp_path, fake_slurm, "--configfile", str(configfile))
    assert Counter(rule for rule, _ in jobs) == expected_jobs(config)
    assert "cuau" not in out


def test_dry_run_four_gpu_training(snakemake_exe, tmp_path, fake_slurm):
    """training.gpus reaches the train jobs' GPUs (a model without its own gpus_per_model entry);
    sampling stays on one GPU."""
    config = load_config()
    config["training"]["gpus"] = 4
    configfile = tmp_path / "paper-4gpu.yaml"
    configfile.write_text(yaml.safe_dump(config))
    jobs, _ = dry_run(snakemake_exe, tmp_path, fake_slurm, "--configfile", str(configfile))
    assert {f["gpus"] for rule, f in jobs if rule == "train"} == {"4"}
    assert {res.get("gpu") for rule, res in jobs if rule == "sample"} == {None}  # the message; sbatch test: 1


def sbatch_calls(log: Path) -> list[list[str]]:
    if not log.exists():
        return []
    return [row["argv"] for row in map(json.loads, log.read_text().splitlines()) if row["tool"] == "sbatch"]


def options(argv: list[str]) -> dict[str, str]:
    """sbatch options as {flag: value} ("-A m0000" and "--qos=regular" alike)."""
    opts: dict[str, str] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--") and "=" in arg:
            key, value = arg.split("=", 1)
            opts[key] = value
        elif i + 1 < len(argv) and not argv[i + 1].startswith("-"):
            opts[arg] = argv[i + 1]
            i += 1
        else:
            opts[arg] = ""
        i += 1
    return opts


def shown(argv: list[str], work: Path) -> str:
    """An sbatch line as the plugin runs it, with the wrapped job command cut after its target and
    the working directory written $WORK."""
    wrap = next(a for a in argv if a.startswith("--wrap="))
    short = re.sub(r"(--target-jobs \S+).*", r"\1 …", wrap.removeprefix("--wrap="))
    line = shlex.join(["sbatch", *(a for a in argv if a != wrap)]) + f' --wrap="{short}"'
    return line.replace(str(work), "$WORK")


def test_sbatch_lines_perlmutter(snakemake_exe, tmp_path, fake_slurm):
    """The real plugin's sbatch lines for every job it can submit at once (fake sbatch)."""
    config, profile = load_config(), load_profile()
    expected = expected_jobs(config)
    first_wave = Counter({rule: expected[rule] for rule in SOURCE_RULES if expected[rule]})
    work, log = tmp_path / "work", tmp_path / "slurm.jsonl"
    cmd = [snakemake_exe, "--profile", PROFILE, TARGET, "-d", str(work)]
    t0 = time.perf_counter()
    # a session of its own: killing its process group ends Snakemake and everything it started
    proc = subprocess.Popen(
        ["timeout", "-s", "KILL", str(SUBMIT_TIMEOUT), *cmd],
        cwd=ROOT,
        env=slurm_env(fake_slurm, log),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        while len(sbatch_calls(log)) < first_wave.total() and proc.poll() is None:
            if time.perf_counter() - t0 > SUBMIT_TIMEOUT:
                break
            time.sleep(0.2)
        time.sleep(1.0)  # nothing more may come: the other jobs wait for these
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out = proc.communicate(timeout=30)[0].decode(errors="replace")
    for _ in range(50):  # orphans of the group are gone, not just the leader
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"processes of group {proc.pid} still running")
    calls = sbatch_calls(log)
    print(f"\n{len(calls)} sbatch calls within {time.perf_counter() - t0:.1f} s of `{shlex.join(cmd)}`")
    print(f"(WORK={work}):")
    for argv in calls:
        print(shown(argv, work))

    rules = []
    for argv in calls:
        opts = options(argv)
        m = re.fullmatch(r"rule_(\w+?)(?:_wildcards_.*)?", opts["--comment"])
        assert m, opts["--comment"]
        rule = m.group(1)
        rules.append(rule)
        want = {**profile["default-resources"], **profile["set-resources"].get(rule, {})}
        assert opts["-A"] == ACCOUNT
        assert opts["--qos"] == "regular" == want["qos"]
        assert opts["-t"] == str(want["runtime"])
        assert opts["--mem"] == str(want["mem_mb"])
        assert opts["--cpus-per-task"] == str(want["cpus_per_task"])
        assert "-p" not in opts and "--partition" not in opts  # NERSC routes jobs by QOS and constraint
        assert opts["-D"] == str(work) and opts["--export"] == "ALL" and "--parsable" in opts
        assert opts["--output"].startswith(f"{work}/.snakemake/slurm_logs/rule_{rule}/"), opts["--output"]
        job = opts["--wrap"]
        assert f"--allowed-rules {rule}" in job and f"--configfiles {ROOT / 'config/paper.yaml'}" in job, job
        if rule in GPU_RULES:
            gpus = training_gpus(config, opts["--comment"].rsplit("_", 1)[-1]) if rule == "train" else 1
            assert opts["-C"] == "gpu" and opts["--gpus"] == str(gpus) and opts["--nodes"] == "1", argv
        else:
            assert opts["-C"] == "cpu" and opts["--ntasks"] == "1" and "--gpus" not in opts, argv
    assert Counter(rules) == first_wave, out
