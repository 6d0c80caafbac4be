"""Kubernetes manifests (k8s/): schema validation, consistency, and a local rehearsal.

- Every manifest passes `kubernetes-validate --strict`; a warning fails the test, and the only
  kinds allowed without a schema are the CRDs and kustomize files in ALLOWED_WITHOUT_SCHEMA. With
  kubectl present, the kustomization rendered with each overlay is validated too.
- The values that must agree across objects (node count, GPUs, names, the retry policy) agree.
- Rehearsal: the Indexed Job's exact command, args and env are taken from k8s/wgan-gp.yaml and
  run as two local "pods" (JOB_COMPLETION_INDEX 0 and 1), after the shard Job's command. Only
  these are substituted, as a cluster would provide them: MASTER_ADDR -> 127.0.0.1 (after checking
  it names pod 0), MASTER_PORT -> a free port, GPUS_PER_NODE -> 1 process per pod, the volume
  mount paths -> temporary directories (the ConfigMap is written to the config mount, with a tiny
  model and step count), the optional W&B Secret -> absent, the image -> this checkout (the venv's
  executables, PYTHONPATH). Pod 1 is then "preempted" (SIGTERM to its PID 1, as the kubelet
  does): both pods must checkpoint and exit 75, the code podFailurePolicy retries for free, and
  the retried pods must resume and complete.
- Crash rehearsal: the same two pods; one pod's training process is killed (kill -9) while the
  other pod's is stuck (SIGSTOP, as a rank blocked in an NCCL collective). Through the c10d
  rendezvous both pods' torchrun restart their workers, which resume from the latest checkpoint
  within a minute; no pod exits, the run completes and equals an uninterrupted run bit for bit.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tests.ports import free_port

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
VENV_BIN = Path(sys.executable).parent
# Oldest Kubernetes the manifests target (podFailurePolicy is GA from 1.31) and the newest schema
# kubernetes-validate ships (its default).
K8S_VERSIONS = ("1.31", None)
ALLOWED_WITHOUT_SCHEMA = {
    ("kubeflow.org/v1", "PyTorchJob"),  # Kubeflow training operator CRD
    ("kustomize.config.k8s.io/v1beta1", "Kustomization"),  # kustomize's own files, never applied
    ("kustomize.config.k8s.io/v1alpha1", "Component"),
}
INDEX_FIELD_PATHS = {
    "metadata.annotations['batch.kubernetes.io/job-completion-index']",
    "metadata.labels['batch.kubernetes.io/job-completion-index']",
}
EXIT_PREEMPTED = 75


# ---------------------------------------------------------------- helpers


def k8s_manifest_files() -> list[Path]:
    return sorted(p for p in K8S.rglob("*") if p.suffix in (".yaml", ".yml"))


def k8s_load(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def k8s_find(docs: list[dict[str, Any]], kind: str, **where: Any) -> dict[str, Any]:
    found = [
        d
        for d in docs
        if d.get("kind") == kind and all(d["metadata"].get(k) == v for k, v in where.items())
    ]
    assert len(found) == 1, f"expected one {kind} {where}, found {len(found)}"
    return found[0]


def k8s_indexed_job(docs: list[dict[str, Any]]) -> dict[str, Any]:
    jobs = [
        d for d in docs if d.get("kind") == "Job" and d["spec"].get("completionMode") == "Indexed"
    ]
    assert len(jobs) == 1, "expected exactly one Indexed Job"
    return jobs[0]


def k8s_container(job: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    containers = job["spec"]["template"]["spec"]["containers"]
    if name is None:
        assert len(containers) == 1
        return containers[0]
    return next(c for c in containers if c["name"] == name)


def k8s_env_values(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def k8s_expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in command/args/env: `$$` -> `$`, unknown names stay."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _REF.sub(sub, text)


def k8s_validate(paths: list[Path], version: str | None) -> tuple[int, str]:
    exe = shutil.which("kubernetes-validate", path=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}")
    if exe is None:
        pytest.skip(
            "kubernetes-validate is not installed (dev dependency: pip install "
            "'kubernetes-validate>=1.31')"
        )
    cmd = [exe, "--strict", *(["-k", version] if version else []), *map(str, paths)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stdout + proc.stderr


_NO_SCHEMA = re.compile(r"Couldn't find schema for kind (\S+) with api version (\S+) ")


def k8s_check_validate_output(rc: int, output: str, n_known: int) -> None:
    """Fail on any ERROR or WARN line except a missing schema for an allowed kind."""
    problems, passed = [], 0
    for line in output.splitlines():
        level, _, rest = line.partition(" ")
        if level == "INFO" and " passed for resource " in rest:
            passed += 1
        elif level == "WARN" and (m := _NO_SCHEMA.search(rest)):
            if (m.group(2), m.group(1)) not in ALLOWED_WITHOUT_SCHEMA:
                problems.append(f"unknown kind (not an allowed CRD): {line}")
        elif level in ("WARN", "ERROR") or line.strip():
            problems.append(line)
    assert not problems, "kubernetes-validate --strict:\n" + "\n".join(problems)
    assert rc == 0, output
    assert passed == n_known, f"expected {n_known} resources to pass, got {passed}:\n{output}"


def k8s_count_known(paths: list[Path]) -> int:
    return sum(
        (d["apiVersion"], d["kind"]) not in ALLOWED_WITHOUT_SCHEMA
        for p in paths
        for d in k8s_load(p)
    )


def k8s_check_training_set(docs: list[dict[str, Any]]) -> None:
    """The values a user changes together, and the retry contract, agree across objects."""
    job = k8s_indexed_job(docs)
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    trainer = k8s_container(job, "trainer")
    env = k8s_env_values(trainer)
    name = job["metadata"]["name"]

    # Node count: pinned, all pods at once, torchrun told the same.
    assert spec["completions"] == spec["parallelism"] == int(env["NNODES"])
    # One process per GPU.
    gpus = int(env["GPUS_PER_NODE"])
    res = trainer["resources"]
    assert int(res["limits"]["nvidia.com/gpu"]) == gpus
    assert int(res["requests"].get("nvidia.com/gpu", gpus)) == gpus

    # Rendezvous on pod 0 through the headless Service.
    svc = k8s_find(docs, "Service", name=pod["subdomain"])
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["publishNotReadyAddresses"] is True
    assert svc["spec"]["selector"] == {"batch.kubernetes.io/job-name": name}
    assert env["MASTER_ADDR"] == f"{name}-0.{pod['subdomain']}"
    assert any(p["port"] == int(env["MASTER_PORT"]) for p in svc["spec"]["ports"])

    # Retries resume: stable run name, resume=auto, preemption (75) and disruptions retried free,
    # a replacement pod only after the old one finished checkpointing.
    assert pod["restartPolicy"] == "Never"
    assert "train.resume=auto" in trainer["args"]
    assert "train.run_name=$(RUN_NAME)" in trainer["args"]
    assert "$(" not in env["RUN_NAME"], "the run name must not change between retries"
    rules = spec["podFailurePolicy"]["rules"]
    ignored_codes = [
        r["onExitCodes"] for r in rules if r["action"] == "Ignore" and "onExitCodes" in r
    ]
    assert any(
        c["operator"] == "In" and EXIT_PREEMPTED in c["values"] and c["containerName"] == "trainer"
        for c in ignored_codes
    )
    assert any(
        r["action"] == "Ignore"
        and any(c["type"] == "DisruptionTarget" for c in r.get("onPodConditions", []))
        for r in rules
    )
    assert spec.get("podReplacementPolicy") == "Failed"
    assert spec["backoffLimit"] >= 1
    # Time to checkpoint: torchrun's SIGKILL deadline, then the status wait, fit in the grace.
    grace = pod["terminationGracePeriodSeconds"]
    assert grace > int(env["TORCH_ELASTIC_SHUTDOWN_TIMEOUT"]) + int(env["STATUS_WAIT_S"])
    # A crashed rank restarts every pod's workers in place: c10d rendezvous hosted by pod 0,
    # restarts allowed, a store of their own per attempt (pytorch/pytorch#135712).
    k8s_check_restarts(trainer["command"][2], env, "JOB_COMPLETION_INDEX")

    # Shared memory and the shared volume.
    mounts = {m["name"]: m["mountPath"] for m in trainer["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts["dshm"] == "/dev/shm" and volumes["dshm"]["emptyDir"]["medium"] == "Memory"
    assert "persistentVolumeClaim" in volumes["work"]
    assert env["RUN_ROOT"].startswith(mounts["work"] + "/")
    # The config file comes from the ConfigMap in the same set.
    cm = k8s_find(docs, "ConfigMap", name=volumes["config"]["configMap"]["name"])
    assert trainer["args"][0] == f"{mounts['config']}/config.yaml"
    assert "config.yaml" in cm["data"]
    # The W&B key is optional.
    wandb = next(e for e in trainer["env"] if e["name"] == "WANDB_API_KEY")
    assert wandb["valueFrom"]["secretKeyRef"]["optional"] is True


def k8s_check_restarts(script: str, env: dict[str, str], index_var: str) -> None:
    """The launch script restarts all ranks after a crash: torchrun with a c10d rendezvous on
    MASTER_ADDR:MASTER_PORT hosted by pod 0 (by `index_var`), MAX_RESTARTS > 0 restarts, a new
    store per attempt; and it reads status.json whatever torchrun's exit code."""
    flags = re.sub(r"\\\n\s*", "", script)  # join continued lines
    assert "--rdzv-backend=c10d" in flags and "--rdzv-backend=static" not in flags
    assert '--rdzv-endpoint="$MASTER_ADDR:$MASTER_PORT"' in flags
    assert "is_host=$is_host" in flags and f'if [ "${index_var}" = 0 ]; then is_host=1' in flags
    assert '--max-restarts="$MAX_RESTARTS"' in flags and int(env["MAX_RESTARTS"]) >= 1
    assert env["TORCH_DISABLE_SHARE_RDZV_TCP_STORE"] == "1"
    assert '[ "$rc" -eq 0 ] && exit 0' not in flags, "exit 0 after a preemption must read status"


def docker_entrypoint() -> list[str]:
    """The image's ENTRYPOINT (exec form), used when a container spec has no `command`."""
    for line in (REPO / "Dockerfile").read_text().splitlines():
        if line.startswith("ENTRYPOINT "):
            return json.loads(line.removeprefix("ENTRYPOINT "))
    raise AssertionError("Dockerfile has no ENTRYPOINT")


# ---------------------------------------------------------------- schema and consistency


def test_manifests_pass_kubernetes_validate_strict() -> None:
    paths = k8s_manifest_files()
    assert K8S / "wgan-gp.yaml" in paths and K8S / "shard-job.yaml" in paths
    for version in K8S_VERSIONS:
        rc, out = k8s_validate(paths, version)
        k8s_check_validate_output(rc, out, k8s_count_known(paths))


def test_validator_output_check_rejects_unknown_kinds_and_warnings() -> None:
    ok = "INFO a.yaml passed for resource job/x against version 1.37"
    k8s_check_validate_output(0, ok, 1)
    crd = (
        "WARN a.yaml Couldn't find schema for kind PyTorchJob with api version kubeflow.org/v1 "
        "for kubernetes version 1.37"
    )
    k8s_check_validate_output(0, crd, 0)
    for bad in (
        crd.replace("PyTorchJob", "MPIJob"),
        "WARN a.yaml something else",
        "ERROR a.yaml did not validate for resource job/x: spec: 'foo' was unexpected",
    ):
        with pytest.raises(AssertionError):
            k8s_check_validate_output(0, bad, 0)


def test_training_set_is_consistent() -> None:
    k8s_check_training_set(k8s_load(K8S / "wgan-gp.yaml"))


def test_shard_job_writes_what_training_reads() -> None:
    train = k8s_load(K8S / "wgan-gp.yaml")
    cm = k8s_find(train, "ConfigMap", name="wgan-gp-config")
    source = yaml.safe_load(cm["data"]["config.yaml"])["data"]["source"]
    shard = k8s_find(k8s_load(K8S / "shard-job.yaml"), "Job", name="gandist-shard-digits")
    container = k8s_container(shard)
    assert "command" not in container, "the shard Job runs the image's entry point"
    args = container["args"]
    assert docker_entrypoint() == ["gandist"] and args[0] == "shard"
    assert source == f"shards:{args[2]}"
    claim = shard["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]
    pvc = k8s_find(k8s_load(K8S / "pvc.yaml"), "PersistentVolumeClaim")
    assert claim["claimName"] == pvc["metadata"]["name"]
    assert "ReadWriteMany" in pvc["spec"]["accessModes"]


def test_evaluator_job_writes_what_training_reads(tmp_path: Path) -> None:
    """The evaluator Job's `gandist train-evaluator` lands where the run looks for one (the
    ConfigMap's source, size and data root on the volume): a run on Kubernetes ends scored, and
    the evaluator outlives the pod that trained it."""
    from gandist.cli import parse
    from gandist.cli_data import source_config
    from gandist.config import load_config
    from gandist.evaluation.classifier import default_evaluator_dir
    from gandist.evaluation.image_eval import evaluator_dir, train_evaluator_hint

    cm = k8s_find(k8s_load(K8S / "wgan-gp.yaml"), "ConfigMap", name="wgan-gp-config")
    path = tmp_path / "config.yaml"
    path.write_text(cm["data"]["config.yaml"])
    cfg = load_config(path)
    job = k8s_find(k8s_load(K8S / "evaluator-job.yaml"), "Job", name="gandist-evaluator-digits")
    container = k8s_container(job)
    assert "command" not in container and docker_entrypoint() == ["gandist"]
    args = parse(container["args"])
    data = source_config(
        args, source=args.source, image_size=args.image_size, channels=args.channels
    )
    assert default_evaluator_dir(data) == evaluator_dir(cfg)
    assert str(evaluator_dir(cfg)).startswith(container["volumeMounts"][0]["mountPath"])
    assert train_evaluator_hint(cfg) == f"gandist {' '.join(container['args'])}"
    shard = k8s_container(k8s_find(k8s_load(K8S / "shard-job.yaml"), "Job"))
    assert container["image"] == shard["image"]


def test_configmap_is_the_recipe_it_names() -> None:
    """The ConfigMap says it is configs/wgan_gp_digits.yaml on the shards: every training and
    scoring setting must match, only the data source and the cluster's cadence may differ."""
    cm = k8s_find(k8s_load(K8S / "wgan-gp.yaml"), "ConfigMap", name="wgan-gp-config")
    ours = yaml.safe_load(cm["data"]["config.yaml"])
    recipe = yaml.safe_load((REPO / "configs" / "wgan_gp_digits.yaml").read_text())
    for section in ("model", "loss", "optim", "eval"):
        assert ours.get(section) == recipe.get(section), section
    cadence = ("sample_every", "checkpoint_every", "keep_checkpoints")
    for train in (ours["train"], recipe["train"]):
        for key in cadence:
            train.pop(key, None)
    assert ours["train"] == recipe["train"]
    assert ours["data"]["image_size"] == recipe["data"]["image_size"]


def test_config_in_configmap_loads(tmp_path: Path) -> None:
    from gandist.config import load_config

    cm = k8s_find(k8s_load(K8S / "wgan-gp.yaml"), "ConfigMap", name="wgan-gp-config")
    path = tmp_path / "config.yaml"
    path.write_text(cm["data"]["config.yaml"])
    cfg = load_config(path, ["train.resume=auto", "train.run_name=x"])
    assert cfg.loss.penalty == "gp" and cfg.model.d_norm != "batch"


def test_pytorchjob_pods_validate_and_agree(tmp_path: Path) -> None:
    """The PyTorchJob CRD has no schema here: validate its pod templates as core PodTemplates."""
    job = k8s_find(k8s_load(K8S / "pytorchjob-wgan-gp.yaml"), "PyTorchJob")
    replicas = job["spec"]["pytorchReplicaSpecs"]
    templates = [
        {
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": {"name": f"pytorchjob-{role.lower()}"},
            "template": spec["template"],
        }
        for role, spec in replicas.items()
    ]
    path = tmp_path / "pod-templates.yaml"
    path.write_text(yaml.safe_dump_all(templates))
    for version in K8S_VERSIONS:
        rc, out = k8s_validate([path], version)
        k8s_check_validate_output(rc, out, len(templates))
    nodes = sum(spec["replicas"] for spec in replicas.values())
    for role, spec in replicas.items():
        (container,) = spec["template"]["spec"]["containers"]
        env = k8s_env_values(container)
        assert container["name"] == "pytorch", role  # the operator's container name
        assert int(env["NNODES"]) == nodes
        assert int(env["GPUS_PER_NODE"]) == int(container["resources"]["limits"]["nvidia.com/gpu"])
        assert "train.resume=auto" in container["args"]
        assert "torchrun" in container["command"][2]
        k8s_check_restarts(container["command"][2], env, "RANK")
        assert spec["restartPolicy"] == "ExitCode"  # 143 (preempted) is retried, 1-127 are not


def _k8s_containers(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if doc.get("kind") == "Job":
        yield from doc["spec"]["template"]["spec"]["containers"]
    elif doc.get("kind") == "PyTorchJob":
        for spec in doc["spec"]["pytorchReplicaSpecs"].values():
            yield from spec["template"]["spec"]["containers"]


def test_launch_scripts_parse() -> None:
    """Every `bash -c` script in the manifests is valid bash (the PyTorchJob's is not run here)."""
    scripts = [
        c["command"][2]
        for path in k8s_manifest_files()
        for doc in k8s_load(path)
        for c in _k8s_containers(doc)
        if c.get("command", [])[:2] == ["/bin/bash", "-c"]
    ]
    assert len(scripts) >= 3
    for script in scripts:
        proc = subprocess.run(["bash", "-n", "-c", script], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr


def _k8s_overlays() -> list[str | None]:
    return [None, *sorted(p.parent.name for p in K8S.glob("overlays/*/kustomization.yaml"))]


@pytest.mark.parametrize("overlay", _k8s_overlays())
def test_kustomize_renders_valid_consistent_sets(overlay: str | None, tmp_path: Path) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: kustomize rendering is not checked")
    root = tmp_path / "k8s"
    shutil.copytree(K8S, root)
    kust = yaml.safe_load((root / "kustomization.yaml").read_text())
    kust["components"] = [f"overlays/{overlay}"] if overlay else []
    (root / "kustomization.yaml").write_text(yaml.safe_dump(kust))
    proc = subprocess.run(
        [kubectl, "kustomize", str(root)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(proc.stdout)
    docs = k8s_load(rendered)
    k8s_check_training_set(docs)
    for version in K8S_VERSIONS:
        rc, out = k8s_validate([rendered], version)
        k8s_check_validate_output(rc, out, len(docs))


# ---------------------------------------------------------------- rehearsal


def _children(pid: int) -> list[int]:
    """The direct children of a process, from /proc (as the launch script's workers_of)."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry))
    return found


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        children = _children(todo.pop())
        found += children
        todo += children
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@dataclass
class K8sPod:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def workers(self) -> list[int]:
        """The pod's training processes: the children of its torchrun."""
        agents = [c for c in _children(self.proc.pid) if "torchrun" in _cmdline(c)]
        return [w for a in agents for w in _children(a) if "gandist" in _cmdline(w)]

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.name} still running after {timeout} s:\n{self.tail()}")

    def tail(self, n: int = 40) -> str:
        lines = self.log.read_text(errors="replace").splitlines()
        return "\n".join(lines[-n:])


class K8sRehearsal:
    """Runs containers of the manifests as local processes, substituting only the documented."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.docs = k8s_load(K8S / "wgan-gp.yaml")
        self.job = k8s_indexed_job(self.docs)
        self.trainer = k8s_container(self.job, "trainer")
        pod = self.job["spec"]["template"]["spec"]
        # Volume mounts -> local directories (the PVC is shared by all pods, as on a cluster).
        self.paths: dict[str, Path] = {}
        volumes = {v["name"]: v for v in pod["volumes"]}
        configmaps: list[tuple[Path, dict[str, Any]]] = []
        for mount in self.trainer["volumeMounts"]:
            vol = volumes[mount["name"]]
            if vol.get("emptyDir", {}).get("medium") == "Memory":
                continue  # /dev/shm: the host's
            local = root / mount["name"]
            local.mkdir(parents=True, exist_ok=True)
            self.paths[mount["mountPath"]] = local
            if "configMap" in vol:
                cm = k8s_find(self.docs, "ConfigMap", name=vol["configMap"]["name"])
                configmaps.append((local, cm))
        for local, cm in configmaps:  # the config names paths under the mounts too
            for key, text in cm["data"].items():
                (local / key).write_text(self.map_paths(text))
        self.workdir = root / "workspace"  # the image's WORKDIR
        self.workdir.mkdir()
        self.port = free_port()

    @property
    def config_file(self) -> Path:
        return self.local("/etc/gandist/config.yaml")

    def local(self, path: str) -> Path:
        return Path(self.map_paths(path))

    def map_paths(self, text: str) -> str:
        for mount, local in sorted(self.paths.items(), key=lambda kv: -len(kv[0])):
            text = re.sub(re.escape(mount) + r"(?=/|$|\s)", str(local), text)
        return text

    def tiny_config(self, steps: int, checkpoint_every: int = 1000) -> None:
        """Shrink the run: same recipe and data path, tiny model and step count."""
        cfg = yaml.safe_load(self.config_file.read_text())
        cfg["model"].update(g_width=8, d_width=8)
        cfg["train"].update(
            steps=steps,
            batch_size=16,
            sample_every=1000,
            checkpoint_every=checkpoint_every,
            log_every=1,
        )
        cfg["data"]["workers"] = 1
        cfg["tracking"]["wandb"] = "disabled"
        self.config_file.write_text(yaml.safe_dump(cfg))

    def base_env(self) -> dict[str, str]:
        return {
            "PATH": f"{VENV_BIN}{os.pathsep}/usr/local/bin:/usr/bin:/bin",
            "PYTHONPATH": str(REPO),  # the image's gandist = this checkout
            "HOME": str(self.root / "home"),
            "LANG": "C.UTF-8",
            "OMP_NUM_THREADS": "1",  # two "pods" share this machine's CPUs
            "WANDB_SILENT": "true",
        }

    def pod_env(self, index: int) -> dict[str, str]:
        env: dict[str, str] = {}
        gpus = self.trainer["resources"]["limits"]["nvidia.com/gpu"]
        for item in self.trainer.get("env", []):
            name = item["name"]
            if "value" in item:
                env[name] = k8s_expand(item["value"], env)
                continue
            ref = item["valueFrom"]
            if "fieldRef" in ref:
                assert ref["fieldRef"]["fieldPath"] in INDEX_FIELD_PATHS, ref
                env[name] = str(index)
            elif "secretKeyRef" in ref:
                assert ref["secretKeyRef"].get("optional") is True, f"{name}: a required Secret"
            else:
                raise AssertionError(f"{name}: unsupported valueFrom {ref}")
        env.setdefault("JOB_COMPLETION_INDEX", str(index))  # the Job controller adds it too
        job, sub = self.job["metadata"]["name"], self.job["spec"]["template"]["spec"]["subdomain"]
        assert env["MASTER_ADDR"] == f"{job}-0.{sub}"
        assert int(env["GPUS_PER_NODE"]) == int(gpus)
        env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(self.port), GPUS_PER_NODE="1")
        return {k: self.map_paths(v) for k, v in env.items()}

    def start(self, argv: list[str], env: dict[str, str], name: str) -> K8sPod:
        log = self.root / f"{name}.log"
        with log.open("ab") as fh:
            proc = subprocess.Popen(
                argv,
                cwd=self.workdir,
                env={**self.base_env(), **env},
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, like a container
            )
        return K8sPod(name, proc, log)

    def start_trainer(self, index: int, attempt: int) -> K8sPod:
        env = self.pod_env(index)
        argv = [
            self.map_paths(k8s_expand(a, env))
            for a in [*self.trainer["command"], *self.trainer["args"]]
        ]
        return self.start(argv, env, f"pod{index}-attempt{attempt}")

    def run_shard_job(self) -> None:
        job = k8s_find(k8s_load(K8S / "shard-job.yaml"), "Job", name="gandist-shard-digits")
        c = k8s_container(job)
        argv = [self.map_paths(a) for a in [*c.get("command", docker_entrypoint()), *c["args"]]]
        pod = self.start(argv, {}, "shard")
        assert pod.wait(120) == 0, pod.tail()

    def run_dir(self) -> Path:
        env = self.pod_env(0)
        return Path(env["RUN_ROOT"]) / env["RUN_NAME"]

    def start_reference(self, run_name: str, nproc: int) -> K8sPod:
        """The Job's training, uninterrupted, as one local torchrun of `nproc` processes (the
        same world size as the pods': the result does not depend on how ranks map to nodes)."""
        env = self.pod_env(0)
        args = [self.map_paths(k8s_expand(a, env)) for a in self.trainer["args"]]
        argv = [
            str(VENV_BIN / "torchrun"),
            "--standalone",
            f"--nproc-per-node={nproc}",
            "-m",
            "gandist",
            "train",
            *args,
            f"train.run_name={run_name}",
        ]
        return self.start(argv, {}, run_name)


@pytest.fixture
def k8s_rehearsal(tmp_path: Path) -> Iterator[K8sRehearsal]:
    rehearsal = K8sRehearsal(tmp_path)
    rehearsal.run_shard_job()
    started: list[subprocess.Popen[bytes]] = []
    orig_start = rehearsal.start

    def tracked(argv: list[str], env: dict[str, str], name: str) -> K8sPod:
        pod = orig_start(argv, env, name)
        started.append(pod.proc)
        return pod

    rehearsal.start = tracked  # type: ignore[method-assign]
    yield rehearsal
    for proc in started:  # only the processes this test started
        if proc.poll() is None:
            # torchrun starts each worker in a session of its own: kill them one by one.
            for pid in _descendants(proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _status(run: Path) -> dict[str, Any]:
    return json.loads((run / "status.json").read_text())


def _trainer_state(run: Path) -> dict[str, Any]:
    latest = (run / "checkpoints" / "latest").read_text().strip()
    return json.loads((run / "checkpoints" / latest / "trainer_state.json").read_text())


def _wait_for_steps(run: Path, n: int, pods: list[K8sPod], timeout: float) -> None:
    metrics = run / "metrics.jsonl"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= n:
            return
        for pod in pods:
            if pod.proc.poll() is not None:
                pytest.fail(f"{pod.name} exited {pod.proc.returncode} early:\n{pod.tail()}")
        time.sleep(0.2)
    pytest.fail(f"no {n} logged steps after {timeout} s:\n{pods[0].tail()}")


def test_rehearsal_two_pods_train_checkpoint_preempt_resume(k8s_rehearsal: K8sRehearsal) -> None:
    r = k8s_rehearsal
    steps = 100  # 0.05-0.2 s a step here: the stop lands within a few steps of the signal
    r.tiny_config(steps)
    run = r.run_dir()

    # Attempt 1: both pods start; pod 1's node is preempted (SIGTERM to its PID 1 only).
    pods = [r.start_trainer(i, attempt=1) for i in (0, 1)]
    _wait_for_steps(run, 3, pods, timeout=60)
    pods[1].proc.send_signal(signal.SIGTERM)
    codes = [p.wait(90) for p in pods]
    assert codes == [EXIT_PREEMPTED] * 2, "\n\n".join(p.tail() for p in pods)
    status = _status(run)
    assert status["state"] == "preempted", status
    stopped = status["step"]
    assert 0 < stopped < steps
    state = _trainer_state(run)
    assert state["step"] == stopped and state["world_size"] == 2

    # Attempt 2: podFailurePolicy ignores exit 75 and the Job controller recreates both pods
    # with the same spec: they resume from checkpoints/latest and complete.
    pods = [r.start_trainer(i, attempt=2) for i in (0, 1)]
    codes = [p.wait(120) for p in pods]
    assert codes == [0, 0], "\n\n".join(p.tail() for p in pods)
    status = _status(run)
    assert status["state"] == "completed" and status["step"] == steps, status
    state = _trainer_state(run)
    assert state["step"] == steps and state["world_size"] == 2
    # Global rank 0 (which logs) is on whichever pod the c10d rendezvous made rank 0.
    assert any("resumed from" in p.log.read_text() for p in pods)
    assert not any(p.name.endswith("-2") for p in run.parent.iterdir()), "a retry made a new run"


def _resumed_at(pods: list[K8sPod]) -> int | None:
    """The step rank 0 (on either pod) last said it resumed at, if it did."""
    found = [
        int(m.group(1))
        for p in pods
        for m in re.finditer(r"resumed from \S+ at step (\d+)", p.log.read_text(errors="replace"))
    ]
    return found[-1] if found else None


def _last_step(run: Path) -> int:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return max((json.loads(ln)["step"] for ln in lines if ln.strip()), default=0)


def test_rehearsal_crashed_rank_restarts_every_pod_from_the_checkpoint(
    k8s_rehearsal: K8sRehearsal,
) -> None:
    """One pod's training process dies (kill -9) while the other pod's is stuck in a collective
    (SIGSTOP: like a rank blocked in an NCCL allreduce, it neither fails nor answers SIGTERM).
    torchrun restarts the dead rank's workers; through the c10d rendezvous, the other pod's
    torchrun restarts its own too (SIGKILL 30 s after SIGTERM). Within a minute every rank is
    training again from the latest checkpoint, no pod exits until the run completes, and the
    result equals, bit for bit, the same training never interrupted."""
    r = k8s_rehearsal
    steps, every = 16, 4
    r.tiny_config(steps, checkpoint_every=every)
    run = r.run_dir()

    pods = [r.start_trainer(i, attempt=1) for i in (0, 1)]
    _wait_for_steps(run, every + 1, pods, timeout=90)
    before = [p.workers() for p in pods]
    assert [len(w) for w in before] == [1, 1], before
    (stuck,), (crashed,) = before
    os.kill(stuck, signal.SIGSTOP)
    os.kill(crashed, signal.SIGKILL)
    t0 = time.monotonic()
    checkpoint = _trainer_state(run)["step"]
    assert checkpoint >= every
    # The uninterrupted reference trains meanwhile (the stuck worker leaves the CPU free).
    reference = r.start_reference("reference", nproc=2)

    # Back to training: new workers on both pods, rank 0 resumed from the checkpoint, and a
    # step after it logged (every step is a collective of both ranks).
    deadline = t0 + 90
    while time.monotonic() < deadline:
        for pod in pods:
            if pod.proc.poll() is not None:
                pytest.fail(f"{pod.name} exited {pod.proc.returncode}:\n{pod.tail()}")
        resumed = _resumed_at(pods)
        if resumed is not None and _last_step(run) > resumed:
            break
        time.sleep(0.2)
    else:
        pytest.fail("no rank back training after 90 s:\n" + "\n\n".join(p.tail() for p in pods))
    recovered = time.monotonic() - t0
    after = [p.workers() for p in pods]
    assert resumed == checkpoint, (resumed, checkpoint)
    assert all(w and not set(w) & set(b) for w, b in zip(after, before, strict=True)), after
    print(f"crash -> every rank training again from step {resumed}: {recovered:.1f} s")
    assert recovered < 60, f"recovery took {recovered:.0f} s"
    logs = [p.log.read_text(errors="replace") for p in pods]
    assert f"(pid: {crashed})" in logs[1] and "exitcode: -9" in logs[1], pods[1].tail()
    assert f"Sending process {stuck} closing signal SIGTERM" in logs[0], pods[0].tail()

    # The pods never fail: the run completes in the same attempt.
    codes = [p.wait(120) for p in pods]
    assert codes == [0, 0], "\n\n".join(p.tail() for p in pods)
    status = _status(run)
    assert status["state"] == "completed" and status["step"] == steps, status
    assert reference.wait(120) == 0, reference.tail()
    ref = run.parent / "reference"
    for stem in ("generator", "discriminator"):
        got = load_file(run / "checkpoints" / f"step_{steps}" / f"{stem}.safetensors")
        want = load_file(ref / "checkpoints" / f"step_{steps}" / f"{stem}.safetensors")
        assert got.keys() == want.keys()
        unequal = [k for k in want if not torch.equal(got[k], want[k])]
        assert not unequal, f"{stem}: restarted run != uninterrupted run in {unequal}"


def test_rehearsal_a_batch_that_does_not_split_over_the_pods_fails_the_job_at_once(
    tmp_path: Path,
) -> None:
    """2 pods x 1 process and train.batch_size=15: the pod's pre-check knows the world it will
    start, so the pod exits 2 (podFailurePolicy: FailJob) before torchrun; it exited 1 after
    torchrun's restarts, and the Job retried it up to backoffLimit."""
    r = K8sRehearsal(tmp_path)
    r.tiny_config(10)
    r.trainer["args"] = [*r.trainer["args"], "train.batch_size=15"]
    pod = r.start_trainer(0, attempt=1)
    assert pod.wait(120) == 2, pod.tail()
    text = pod.log.read_text()
    assert "dist.world_size=2 processes: use a multiple of 2" in text, pod.tail()
    assert not r.run_dir().exists()
