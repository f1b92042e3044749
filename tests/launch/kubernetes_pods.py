"""What Kubernetes and JobSet make of `launch/kubernetes.yaml`, without a cluster.

The tests read the manifest with these helpers: the JobSet's one container, the labels the JobSet
controller puts on pod i (jobset-name, replicatedjob-name, replicatedjob-replicas, job-index), the
container environment the kubelet builds from them (downward-API `fieldRef`s, then `$(VAR)`
references to earlier variables), pod i's DNS name, and the container's command line mapped onto
this machine (its working directory and the shared volume replaced by local directories).
"""

from __future__ import annotations

import os
import re

import yaml

from tests.train.helpers import REPO

MANIFEST = os.path.join(REPO, "launch", "kubernetes.yaml")


def load_manifest(path: str = MANIFEST) -> dict[str, dict]:
    """The manifest's objects by kind (each kind appears once)."""
    with open(path) as f:
        documents = [d for d in yaml.safe_load_all(f) if d]
    kinds = [d["kind"] for d in documents]
    assert len(kinds) == len(set(kinds)), kinds
    return {d["kind"]: d for d in documents}


def replicated_job(jobset: dict) -> dict:
    [rjob] = jobset["spec"]["replicatedJobs"]
    return rjob


def pod_spec(jobset: dict) -> dict:
    return replicated_job(jobset)["template"]["spec"]["template"]["spec"]


def container(jobset: dict) -> dict:
    [c] = pod_spec(jobset)["containers"]
    return c


def pod_labels(jobset: dict, index: int) -> dict[str, str]:
    """The labels JobSet's controller sets on the pod of Job `index` (labelAndAnnotateObject)."""
    rjob = replicated_job(jobset)
    return {
        "jobset.sigs.k8s.io/jobset-name": jobset["metadata"]["name"],
        "jobset.sigs.k8s.io/replicatedjob-name": rjob["name"],
        "jobset.sigs.k8s.io/replicatedjob-replicas": str(rjob.get("replicas", 1)),
        "jobset.sigs.k8s.io/job-index": str(index),
    }


def pod_dns_name(jobset: dict, index: int) -> str:
    """`<jobset>-<replicated job>-<job index>-<pod index>.<subdomain>` (JobSet's network docs)."""
    network = jobset["spec"].get("network", {})
    assert network.get("enableDNSHostnames", True), "pods have no DNS names without enableDNSHostnames"
    subdomain = network.get("subdomain") or jobset["metadata"]["name"]
    return f"{jobset['metadata']['name']}-{replicated_job(jobset)['name']}-{index}-0.{subdomain}"


_FIELD = re.compile(r"^metadata\.(labels|annotations)\['([^']+)'\]$")
_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def pod_env(jobset: dict, index: int) -> dict[str, str]:
    """The container environment of pod `index`, resolved as the kubelet does."""
    labels = pod_labels(jobset, index)
    env: dict[str, str] = {}
    for var in container(jobset).get("env", []):
        if "valueFrom" in var:
            match = _FIELD.match(var["valueFrom"]["fieldRef"]["fieldPath"])
            assert match, f"unsupported fieldRef in {var}"
            # JobSet sets each of these keys as both a label and an annotation.
            env[var["name"]] = labels[match.group(2)]
        else:
            # `$(NAME)` of an earlier variable is replaced, `$$` escapes, anything else stays.
            env[var["name"]] = _REFERENCE.sub(
                lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), str(var["value"])
            )
    return env


def local_command(jobset: dict, workdir_root: str) -> tuple[list[str], str]:
    """The container's `jssl ...` arguments (after `jssl`) and working directory, mapped here.

    The image's checkout (`workingDir`) becomes this repository and the shared volume's mount
    path becomes `workdir_root`; nothing else in the command line changes.
    """
    c = container(jobset)
    assert c.get("workingDir"), "relative --config paths need the container's workingDir"
    command = [*c.get("command", []), *c.get("args", [])]
    assert command[0] == "jssl", command
    [mount] = [m["mountPath"] for m in c["volumeMounts"] if m["name"] == "workdir"]
    args = [a.replace(mount, workdir_root, 1) if a.startswith(mount + "/") else a for a in command[1:]]
    return args, REPO
