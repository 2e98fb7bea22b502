"""`efflab flops` and `efflab cost` through efflab.cli.main: JSON contract, tables, bad input (exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from efflab.cli import main

TINY_LLAMA = {
    "model_type": "llama",
    "vocab_size": 256,
    "hidden_size": 64,
    "intermediate_size": 96,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 64,
    "tie_word_embeddings": False,
}


def run_json(capsys, *argv):
    rc = main([*argv, "--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return json.loads(out.out)


def run_bad(capsys, *argv) -> str:
    rc = main(list(argv))
    out = capsys.readouterr()
    assert rc == 2, (rc, out.out)
    assert "Traceback" not in out.err
    assert out.err.count("efflab: error:") == 1  # one message
    return out.err


# ---- efflab flops ---------------------------------------------------------------------------------


def test_flops_llama405b_json(capsys):
    o = run_json(capsys, "flops", "llama-3.1-405b", "--tokens", "15.6e12")
    for key in (
        "params_total",
        "params_active",
        "params_embedding",
        "forward_flops_per_token",
        "train_flops_per_token",
        "train_flops",
        "train_flops_6nd",
        "seq_len",
        "convention",
        "breakdown",
    ):
        assert key in o, key
    assert abs(o["train_flops_6nd"] - 3.8e25) / 3.8e25 < 0.01  # Llama 3 paper: 3.8e25
    # the published run: 8K, then long-context stages (Llama 3 section 3.4), summed stage by stage
    assert o["train_flops"] == pytest.approx(sum(s["flops"] for s in o["stages"]))
    assert o["train_flops"] > o["train_flops_per_token"] * 15.6e12
    one = run_json(capsys, "flops", "llama-3.1-405b", "--tokens", "15.6T", "--seq-len", "8192")
    assert one["train_flops"] == pytest.approx(one["train_flops_per_token"] * 15.6e12)
    assert o["seq_len"] == 8192
    assert set(o["breakdown"]) == {"attn_proj", "attn_scores", "mlp", "lm_head"}
    assert o["published"]["train_flops"] == 3.8e25


def test_flops_human_table_states_convention(capsys):
    assert main(["flops", "mixtral-8x7b", "--tokens", "1e12", "--seq-len", "4096", "--causal"]) == 0
    out = capsys.readouterr().out
    assert "convention:" in out and "multiply-add = 2" in out and "causal" in out
    assert "experts" in out and "router" in out and "6ND" in out and "active per token" in out


def test_flops_moe_6nd_uses_active_params(capsys):
    o = run_json(capsys, "flops", "mixtral-8x7b", "--tokens", "1e12")
    assert o["train_flops_6nd"] == pytest.approx(6 * o["params_active"] * 1e12)
    assert o["params_active"] < o["params_total"]


def test_flops_published_only_preset(capsys):
    o = run_json(capsys, "flops", "gpt4-estimate")
    assert o["train_flops"] == 2.1e25 and o["published"]["estimate"] is True
    o = run_json(capsys, "flops", "chinchilla-70b")  # counted from the Table 4 shape; 5.76e23 shown beside
    assert o["train_flops"] == pytest.approx(5.659e23, rel=1e-3) and o["published"]["train_flops"] == 5.76e23
    assert o["train_flops_6nd"] == pytest.approx(6 * 70e9 * 1.4e12)


def test_flops_config_json_and_dir(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps(TINY_LLAMA))
    a = run_json(capsys, "flops", str(tmp_path / "config.json"), "--seq-len", "32")
    b = run_json(capsys, "flops", str(tmp_path), "--seq-len", "32")
    assert a["params_total"] == b["params_total"] > 0
    assert a["seq_len"] == 32


def test_flops_measure_on_tiny_config(tmp_path, capsys):
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model on a shared machine
    try:
        (tmp_path / "config.json").write_text(json.dumps(TINY_LLAMA))
        o = run_json(capsys, "flops", str(tmp_path / "config.json"), "--seq-len", "16", "--measure")
    finally:
        torch.set_num_threads(n)
    assert 0.98 < o["measured_ratio"] < 1.02
    assert o["measured_uncounted_modules"] == []
    assert o["measured_train_flops_per_token"] > 0


def test_flops_efflab_yaml_config(capsys):
    from efflab.commands.run import configs_root

    path = configs_root() / "baseline" / "tiny.yaml"
    o = run_json(capsys, "flops", str(path))
    assert o["model_type"] == "llama" and o["params_total"] > 0
    assert any("data.seq_len" in n for n in o["notes"])


def test_flops_measure_refuses_big_models(capsys):
    err = run_bad(capsys, "flops", "llama-2-7b", "--measure")
    assert "too big" in err and "2e+09" in err


def test_flops_answers_without_torch_or_transformers():
    """`efflab flops PRESET` must answer in about a second: no torch/transformers import, no weights."""
    code = (
        "import sys; from efflab.cli import main; "
        "rc = main(['flops', 'llama-3.1-405b', '--tokens', '15.6e12']); "
        "heavy = [m for m in ('torch', 'transformers') if m in sys.modules]; "
        "assert rc == 0 and not heavy, heavy"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "3.799e+25" in r.stdout


# ---- efflab cost ----------------------------------------------------------------------------------


def test_cost_flops_json(capsys):
    o = run_json(capsys, "cost", "--flops", "2.1e25", "--gpu", "h100", "--mfu", "0.4", "--gpus", "25000")
    for key in (
        "flops",
        "gpu",
        "peak_flops_per_s",
        "mfu",
        "gpu_hours",
        "wall_days",
        "cost_usd",
        "energy_mwh",
    ):
        assert key in o, key
    assert o["gpu_hours"] == pytest.approx(2.1e25 / (989e12 * 0.4) / 3600)
    assert o["wall_days"] == pytest.approx(o["gpu_hours"] / 25000 / 24)
    o = run_json(capsys, "cost", "--flops", "1e21", "--gpu", "a100", "--price", "0", "--pue", "1.5")
    assert "wall_days" not in o and o["cost_usd"] == 0.0 and o["pue"] == 1.5


def test_cost_model_and_tokens(capsys):
    o = run_json(capsys, "cost", "llama-2-7b", "--tokens", "2e12", "--gpu", "a100")
    assert o["flops"] > 6 * 6.7e9 * 2e12  # detailed count: 6N plus attention at T=4096
    assert o["train_flops_6nd"] == pytest.approx(6 * 6_738_415_616 * 2e12)
    assert 0.3 < o["implied_mfu_published"] < 0.6  # 184,320 A100-hours (model card)
    o = run_json(capsys, "cost", "gpt4-estimate", "--gpu", "h100")
    assert o["flops"] == 2.1e25 and "ESTIMATE" in o["flops_source"]


def test_cost_human_table(capsys):
    assert main(["cost", "--flops", "2.1e25", "--gpu", "h100", "--gpus", "25000"]) == 0
    out = capsys.readouterr().out
    assert "GPU-hours" in out and "days on 25,000 GPUs" in out and "MWh" in out and "$" in out


# ---- bad input: exit 2, one message naming every problem ---------------------------------------


def test_unknown_preset_and_gpu_suggest(capsys):
    err = run_bad(capsys, "flops", "llama-3.1-450b")
    assert "did you mean" in err and "llama-3.1-405b" in err
    err = run_bad(capsys, "cost", "--flops", "1e20", "--gpu", "h1000")
    assert "did you mean" in err and "h100" in err


def test_cost_collects_every_problem(capsys):
    err = run_bad(
        capsys, "cost", "--flops", "1e20", "--gpu", "h1000", "--mfu", "1.5", "--price", "-1", "--gpus", "0"
    )
    for part in ("h1000", "--mfu", "--price", "--gpus"):
        assert part in err, part
    err = run_bad(capsys, "cost", "--flops", "1e20", "--gpu", "a100", "--mfu", "0")
    assert "(0, 1]" in err


def test_bad_tokens(capsys):
    assert "--tokens" in run_bad(capsys, "flops", "mixtral-8x7b", "--tokens", "0")
    assert "--tokens" in run_bad(capsys, "flops", "mixtral-8x7b", "--tokens", "-5")
    assert "not a number" in run_bad(capsys, "flops", "mixtral-8x7b", "--tokens", "lots")
    err = run_bad(capsys, "cost", "llama-2-7b", "--tokens", "-1", "--gpu", "a100", "--mfu", "2")
    assert "--tokens" in err and "--mfu" in err


def test_bad_configs(tmp_path, capsys):
    vit = tmp_path / "vit.json"
    vit.write_text(json.dumps({"model_type": "vit", "hidden_size": 768}))
    assert "cannot be counted by the FLOP ledger" in run_bad(capsys, "flops", str(vit))
    junk = tmp_path / "junk.json"
    junk.write_text("{oops")
    assert "not valid JSON" in run_bad(capsys, "flops", str(junk))


def test_cost_needs_exactly_one_budget(capsys):
    assert "either --flops" in run_bad(capsys, "cost", "llama-2-7b", "--flops", "1e20", "--gpu", "a100")
    assert "nothing to price" in run_bad(capsys, "cost", "--gpu", "a100")
    assert "--tokens" in run_bad(capsys, "cost", "mistral-7b", "--gpu", "a100")


# ---- one pricing rule, --causal, --published, precision -------------------------------------------


@pytest.mark.parametrize(
    "name,tokens", [("llama-3.1-405b", "15.6T"), ("deepseek-v3", "14.8T"), ("llama-2-7b", "2T")]
)
def test_cost_prices_the_same_count_with_or_without_tokens(capsys, name, tokens):
    a = run_json(capsys, "cost", name, "--gpu", "h100")
    b = run_json(capsys, "cost", name, "--gpu", "h100", "--tokens", tokens)
    assert a["flops"] == pytest.approx(b["flops"]) and a["flops_source"] == b["flops_source"]
    assert "detailed count" in a["flops_source"] and "in full" in a["flops_convention"]


def test_cost_causal_published_and_precision(capsys):
    full = run_json(capsys, "cost", "llama-3.1-405b", "--gpu", "h100")
    causal = run_json(capsys, "cost", "llama-3.1-405b", "--gpu", "h100", "--causal")
    assert causal["flops"] == pytest.approx(full["executed_flops"]) and causal["flops"] < full["flops"]
    assert "causal" in causal["flops_convention"]
    pub = run_json(capsys, "cost", "llama-3.1-405b", "--gpu", "h100", "--published")
    assert pub["flops"] == 3.8e25 and "published" in pub["flops_source"]
    assert full["published_flops"] == 3.8e25 and full["published_ratio"] == pytest.approx(
        full["flops"] / 3.8e25
    )
    ds = run_json(capsys, "cost", "deepseek-v3", "--gpu", "h800")
    assert ds["precision"] == "fp8" and ds["peak_flops_per_s"] == 1979e12
    assert ds["published_gpu_hours"] == 2.664e6 and ds["published_gpu_hours_total"] == 2.788e6
    assert "a100" in run_bad(capsys, "cost", "--flops", "1e20", "--gpu", "a100", "--precision", "fp8")
    assert "published" in run_bad(
        capsys, "cost", "mistral-7b", "--tokens", "1T", "--gpu", "h100", "--published"
    )


def test_cost_human_table_names_the_count(capsys):
    assert main(["cost", "deepseek-v3", "--gpu", "h800"]) == 0
    out = capsys.readouterr().out
    for part in ("detailed count", "executed FLOPs", "MTP", "dense FP8", "published run", "whole run"):
        assert part in out, part


# ---- every shipped run config: flops, cost, dry run ----------------------------------------------


def _shipped_run_configs():
    from efflab.commands.run import configs_root

    return sorted(
        p for p in configs_root().glob("*/*.yaml") if p.parent.name not in ("suite", "accelerate", "validate")
    )


def test_every_shipped_config_answers_flops_and_cost(capsys):
    paths = _shipped_run_configs()
    assert len(paths) >= 15
    for path in paths:
        o = run_json(capsys, "flops", str(path))
        assert o["train_flops"] > 0 and o["tokens"] > 0 and o["steps"] >= 1, path  # the file's budget
        c = run_json(capsys, "cost", str(path), "--gpu", "h100")
        assert c["flops"] == pytest.approx(o["train_flops"]) and c["gpu_hours"] > 0, path
        if path.parent.name in ("distill", "synthetic"):
            assert c["total_flops"] > c["flops"], path  # the teacher / generator the recipe trains first


def test_yaml_budget_and_cli_tokens(capsys):
    o = run_json(capsys, "flops", "configs/baseline/tiny.yaml")
    t = run_json(capsys, "flops", "configs/baseline/tiny.yaml", "--tokens", "1M")
    assert t["tokens"] <= 1e6 and t["tokens"] != o["tokens"]
    assert "suite plan" in run_bad(capsys, "flops", "configs/suite/quick.yaml")
    assert "accelerate" in run_bad(capsys, "cost", "configs/accelerate/fsdp.yaml", "--gpu", "h100")


# ---- input friction -------------------------------------------------------------------------------


def test_si_suffixes(capsys):
    a = run_json(capsys, "flops", "llama-3.1-405b", "--tokens", "14.8T", "--seq-len", "8K")
    assert a["tokens"] == 14.8e12 and a["seq_len"] == 8000
    from efflab.errors import parse_count

    assert parse_count("2M") == 2e6 and parse_count("1.5b") == 1.5e9 and parse_count("500k") == 5e5


def test_wrong_flag_shows_the_subcommand_usage(capsys):
    assert main(["cost", "--flops", "1e20", "--gpu", "h100", "--bogus"]) == 2
    err = capsys.readouterr().err
    assert "usage: efflab cost" in err and "--bogus" in err and "Traceback" not in err


def test_closed_pipe_is_not_a_traceback():
    code = "import sys; from efflab.cli import main; sys.exit(main(['list']))"
    r = subprocess.run(
        f'{sys.executable} -c "{code}" | head -1', shell=True, capture_output=True, text=True, timeout=120
    )
    assert "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr, r.stderr


def test_env(capsys):
    o = run_json(capsys, "env")
    assert o["packages"]["efflab"] and o["python"] and "device" in o and "cpu_count" in o
    if "torch_threads" in o:
        assert o["torch_threads"] >= 1 and o["blas"]
