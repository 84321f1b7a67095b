import os

import pytest

from configurator import config_keys, configure

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def defaults():
    return {"__name__": "__main__", "os": pytest, "lr": 1e-6, "epochs": 2,
            "compile": False, "out_dir": "out/rm", "init_from": None,
            "betas": (0.9, 0.95), "helper": len}


def test_config_keys_are_public_plain_values():
    assert sorted(config_keys(defaults())) == ["betas", "compile", "epochs", "init_from",
                                               "lr", "out_dir"]


def test_upper_case_constants_are_not_settings():
    g = {**defaults(), "GATES": {"a": 1}, "MODES": ("a",), "MAX_LEN": 3}
    assert sorted(config_keys(g)) == ["betas", "compile", "epochs", "init_from", "lr", "out_dir"]
    with pytest.raises(ValueError, match="unknown setting 'MAX_LEN'"):
        configure(g, ["--MAX_LEN=4"])


def test_flags_parse_by_type():
    g = defaults()
    cfg = configure(g, ["--lr=3e-4", "--epochs=5", "--compile=True", "--out_dir=out/x",
                        "--init_from=resume", "--betas=(0.8, 0.9)"])
    assert cfg == {"lr": 3e-4, "epochs": 5, "compile": True, "out_dir": "out/x",
                   "init_from": "resume", "betas": (0.8, 0.9)}
    assert g["lr"] == 3e-4 and g["compile"] is True


def test_flag_edge_cases():
    # lowercase booleans, an int for a float, digits kept as a string for a str setting,
    # a quoted string literal unquoted, a None default takes a parsed literal
    cfg = configure(defaults(), ["--compile=false", "--lr=1", "--out_dir=2024",
                                 "--init_from=3"])
    assert cfg["compile"] is False
    assert cfg["lr"] == 1.0 and type(cfg["lr"]) is float
    assert cfg["out_dir"] == "2024"
    assert cfg["init_from"] == 3
    assert configure(defaults(), ["--out_dir='a b'"])["out_dir"] == "a b"


def test_file_then_flag_in_order(tmp_path):
    path = tmp_path / "c.py"
    path.write_text("import math\n_scale = 10\nlr = lr * _scale\nepochs = 7\n"
                    "def unused():\n    return 1\n")
    cfg = configure(defaults(), [str(path), "--epochs=3"])
    assert cfg["lr"] == pytest.approx(1e-5)  # the file reads the current value
    assert cfg["epochs"] == 3  # the later flag wins
    cfg = configure(defaults(), ["--epochs=3", str(path)])
    assert cfg["epochs"] == 7


def test_unknown_flag_names_the_key():
    with pytest.raises(ValueError, match="unknown setting 'lrr'"):
        configure(defaults(), ["--lrr=1e-3"])


def test_flag_without_value():
    with pytest.raises(ValueError, match="--key=value"):
        configure(defaults(), ["--compile"])


@pytest.mark.parametrize("flag", ["--epochs=2.5", "--compile=1", "--lr=fast", "--betas=[1, 2]"])
def test_type_mismatch_names_the_key(flag):
    key = flag[2:].split("=")[0]
    with pytest.raises(ValueError, match=f"setting '{key}' expects"):
        configure(defaults(), [flag])


def test_config_file_with_unknown_setting(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text("lr = 1e-3\nlearning_rate = 1e-3\n")
    with pytest.raises(ValueError, match="bad.py' sets unknown setting 'learning_rate'"):
        configure(defaults(), [str(path)])


def test_config_file_type_mismatch(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text("epochs = '2'\n")
    with pytest.raises(ValueError, match="bad.py'.*'epochs' expects int"):
        configure(defaults(), [str(path)])


def test_missing_config_file(tmp_path):
    with pytest.raises(ValueError, match="cannot read config file"):
        configure(defaults(), [str(tmp_path / "nope.py")])


SCRIPT_OF = {"pgrpo": "train_grpo", "grpo": "train_grpo", "rm": "train_rm", "eval": "eval",
             "sft": "train_sft"}


@pytest.mark.parametrize("name", sorted(os.listdir(os.path.join(REPO, "config"))))
def test_every_shipped_config_sets_only_known_settings_of_its_script(name, monkeypatch):
    """config/<kind>_*.py: each setting it writes exists in the script it is for, with its
    type (a config that names a removed or misspelt setting fails here, not on 8 GPUs)."""
    import importlib
    monkeypatch.chdir(REPO)                      # the paper configs exec() their base by path
    script = importlib.import_module(SCRIPT_OF[name.split("_")[0]])
    settings = {k: v for k, v in vars(script).items()}
    resolved = configure(settings, [os.path.join("config", name)])
    assert resolved and all(k in vars(script) for k in resolved)
