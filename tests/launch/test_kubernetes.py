"""launch/kubernetes.yaml: a JobSet whose group restarts together, sized in one place.

The container command itself runs in tests/train/test_multiprocess.py (two local processes);
here each pod's environment, as the kubelet would build it, goes through jssl's own
`maybe_initialize_distributed`.
"""

from __future__ import annotations

import copy
import os

import pytest

from jssl import cli, config_files
from tests.launch import kubernetes_pods as k8s
from tests.train.helpers import REPO


@pytest.fixture(scope="module")
def manifest():
    return k8s.load_manifest()


def test_the_group_restarts_together_and_preemptions_are_not_counted(manifest):
    jobset = manifest["JobSet"]
    assert jobset["apiVersion"] == "jobset.x-k8s.io/v1alpha2"
    job = k8s.replicated_job(jobset)["template"]["spec"]
    # One pod per Job, failed at its first failure, so JobSet (not the Job) restarts: every Job.
    assert job["completionMode"] == "Indexed" and job["parallelism"] == job["completions"] == 1
    assert job["backoffLimit"] == 0
    assert k8s.pod_spec(jobset)["restartPolicy"] == "Never"
    policy = jobset["spec"]["failurePolicy"]
    assert policy["maxRestarts"] >= 1
    # Exit 143 (jssl saved after SIGTERM) fails the Job by the podFailurePolicy; that reason
    # restarts the JobSet without using up maxRestarts.
    rules = job["podFailurePolicy"]["rules"]
    assert any(r["action"] == "FailJob" and 143 in r.get("onExitCodes", {}).get("values", []) for r in rules)
    assert all(r["action"] == "FailJob" for r in rules), "Ignore/Count would restart one pod alone"
    [preempted] = [r for r in policy["rules"] if "PodFailurePolicy" in r.get("onJobFailureReasons", [])]
    assert preempted["action"] == "RestartJobSetAndIgnoreMaxRestarts"
    assert k8s.pod_spec(jobset)["terminationGracePeriodSeconds"] >= 120  # time to save a checkpoint


def test_the_workdir_is_one_shared_volume_and_the_config_path_resolves(manifest, tmp_path):
    jobset, claim = manifest["JobSet"], manifest["PersistentVolumeClaim"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    [volume] = [v for v in k8s.pod_spec(jobset)["volumes"] if v["name"] == "workdir"]
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    args, cwd = k8s.local_command(jobset, str(tmp_path))
    assert args[0] == "train"
    workdir = args[args.index("--workdir") + 1]
    assert workdir.startswith(str(tmp_path) + os.sep), "the workdir must be on the shared volume"
    config = args[args.index("--config") + 1]
    # A shipped config's name (found inside the installed package) or a path under workingDir.
    path, _ = config_files.resolve(config if os.path.isabs(config) or "/" not in config else os.path.join(cwd, config))
    assert os.path.isfile(path)


@pytest.mark.parametrize("replicas", [None, 3])
def test_each_pod_joins_one_jax_group_sized_by_replicas_alone(manifest, monkeypatch, replicas):
    jobset = copy.deepcopy(manifest["JobSet"])
    if replicas is not None:
        k8s.replicated_job(jobset)["replicas"] = replicas  # the one place the size is written
    size = k8s.replicated_job(jobset)["replicas"]
    assert size >= 2
    calls = []
    monkeypatch.setattr("jax.distributed.initialize", lambda **kwargs: calls.append(kwargs))
    for name in [n for n in os.environ if n.startswith(("JAX_", "SLURM_"))]:
        monkeypatch.delenv(name)
    for index in range(size):
        for name, value in k8s.pod_env(jobset, index).items():
            monkeypatch.setenv(name, value)
        cli.maybe_initialize_distributed("auto")
    coordinator = k8s.pod_dns_name(jobset, 0) + ":1234"
    assert [(c["coordinator_address"], c["num_processes"], c["process_id"]) for c in calls] == [
        (coordinator, size, i) for i in range(size)
    ]
    # The image's working directory is the Dockerfile's.
    with open(os.path.join(REPO, "Dockerfile")) as f:
        assert f"WORKDIR {k8s.container(jobset)['workingDir']}\n" in f.read()
