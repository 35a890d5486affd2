"""Hyperparameters -> Hydra overrides, container paths, hosts and GPUs (no training)."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import pytest

from informer.errors import InformerError
from sagemaker_jobs.container import (
    ContainerPaths,
    cluster_overrides,
    detect_cluster,
    rendezvous_env,
)
from sagemaker_jobs.hyperparameters import (
    compose_config,
    decode_key,
    encode_key,
    from_sm_hps,
    merge,
    parse_cli,
    shell_safe,
    to_overrides,
)
from sagemaker_jobs.train import build_overrides


# hyperparameters -----------------------------------------------------------------------------
def test_hyperparameters_become_hydra_overrides():
    options, pairs = parse_cli(["--experiment", "etth1_M_24", "--trainer.max_epochs", "3",
                                "--model__d_model=256", "--channel", "train",
                                "--sagemaker_program", "train.py"], ["channel"])
    assert options == {"channel": "train"}
    assert to_overrides(pairs) == ["experiment=etth1_M_24", "trainer.max_epochs=3",
                                   "model.net.d_model=256"]
    assert to_overrides([("model.net.s_layers", "[3,2,1]"), ("data.target", "my col")]) == \
        ["model.net.s_layers=[3,2,1]", "data.target=my col"]
    hps = from_sm_hps(json.dumps({"trainer__max_epochs": 2, "seed": 7, "sagemaker_region": "x"}))
    assert merge(hps, [("seed", "8")]) == [("trainer.max_epochs", "2"), ("seed", "8")]
    for key in ("trainer.max_epochs", "+trainer.gradient_clip_val", "++callbacks.a._target_"):
        encoded, _ = shell_safe(key, "1")
        assert decode_key(encoded) == key and encode_key(key) == encoded
        assert encoded.replace("-", "_").isidentifier(), encoded


@pytest.mark.parametrize("pairs, message", [
    ([("epochs", "3")], r"--epochs: unknown key; expected a config group \['callbacks', 'data'"),
    ([("experiment", "etth1_M_25")], r"--experiment: unknown experiment 'etth1_M_25'; expected "
                                     r"one of \[('\w+', )*'etth1_M_168', 'etth1_M_24'"),
    ([("data.sequence", "3")], r"--data.sequence: data has no key 'sequence'; expected one of"),
    ([("seed", "1,2")], r"--seed: expected one value, got the sweep"),
])
def test_unknown_hyperparameters_are_refused_with_the_valid_names(pairs, message, tmp_path):
    paths = ContainerPaths.resolve({"base-dir": str(tmp_path)}, {})
    with pytest.raises(InformerError, match=message):
        compose_config(build_overrides(pairs, paths, {}))


def test_paths_come_from_arguments_then_sm_variables_then_the_base_dir(tmp_path):
    env = {"SM_MODEL_DIR": "/m", "SM_CHANNEL_TRAIN": "/data/train", "SAGEMAKER_BASE_DIR": "/b"}
    paths = ContainerPaths.resolve({"channel": "train", "output-data-dir": "/o"}, env)
    assert (paths.model_dir, paths.data_dir, paths.output_data_dir) == \
        (Path("/m"), Path("/data/train"), Path("/o"))
    assert paths.checkpoint_dir == Path("/b/checkpoints")
    assert paths.failure_file == Path("/b/output/failure")
    with pytest.raises(InformerError, match=r"SM_CHANNEL_TRAINING: channel 'training' not found"
                                            r".*the job has channels \['train'\]"):
        ContainerPaths.resolve({"base-dir": str(tmp_path)}, {}).check_data(
            {"SM_CHANNELS": '["train", "code", "sm_drivers"]'})


# hosts and GPUs -------------------------------------------------------------------------------
def test_cluster_from_sagemaker_hosts_gpus_and_torchrun():
    assert cluster_overrides(detect_cluster({}), set()) == []
    two_hosts = {"SM_HOSTS": '["algo-1", "algo-2"]', "SM_NUM_GPUS": "4",
                 "SM_CURRENT_HOST": "algo-2"}
    assert cluster_overrides(detect_cluster(two_hosts), set()) == [
        "trainer=gpu", "trainer.accelerator=gpu", "trainer.devices=4",
        "++trainer.num_nodes=2", "++trainer.strategy=ddp"]
    assert rendezvous_env(detect_cluster(two_hosts), two_hosts) == {
        "MASTER_ADDR": "algo-1", "MASTER_PORT": "7777", "NODE_RANK": "1"}
    torchrun = {"WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "2", "SM_NUM_GPUS": "2",
                "SM_HOSTS": '["algo-1", "algo-2", "algo-3", "algo-4"]'}
    cluster = detect_cluster(torchrun)
    assert (cluster.num_nodes, cluster.devices, cluster.torchrun) == (4, 2, True)
    assert rendezvous_env(cluster, torchrun) == {}  # torchrun's own rendezvous
    # what the user set explicitly wins
    assert cluster_overrides(cluster, {"trainer", "trainer.strategy"}) == [
        "trainer.accelerator=gpu", "trainer.devices=2", "++trainer.num_nodes=4"]
    cpu_hosts = detect_cluster({"SM_HOSTS": '["algo-1", "algo-2"]'})
    assert cluster_overrides(cpu_hosts, set()) == [
        "trainer.accelerator=cpu", "trainer.devices=1", "++trainer.num_nodes=2",
        "++trainer.strategy=ddp"]



def test_console_script_is_installed():
    scripts = {e.name: e.value for e in metadata.entry_points(group="console_scripts")}
    for name, target in (("informer-sagemaker", "launcher"), ("informer-serve", "serve"),
                         ("informer-sagemaker-local-train", "local_train"),
                         ("informer-transform", "transform")):
        assert scripts.get(name) == f"sagemaker_jobs.{target}:main", name
