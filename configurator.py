"""
Command-line configuration for the training scripts, nanoGPT style.

A script declares its settings as plain module-level globals with defaults, then calls
`configure(globals())` under `if __name__ == "__main__":`. Arguments are applied left to
right:

    python train_rm.py config/rm_cpu.py --lr=3e-4 --out_dir=out/try1

- a bare argument is a Python file (usually under config/) that assigns some of the
  settings; it runs in a namespace holding the current values, so it may read them;
- `--key=value` sets one setting; the value is parsed as a Python literal
  (ast.literal_eval) and kept as the raw string when it is not one (`--init_from=resume`).

Both are checked: the key must be an existing setting and the new value must have the
default's type (an int is accepted for a float setting; a None default takes anything).
A typo therefore fails at once instead of silently training with the default. Names in
a config file that start with an underscore, and imported modules, functions and classes,
are helpers and are not settings.
"""

import ast
import sys
import types

PLAIN_TYPES = (bool, int, float, str, type(None), list, tuple, dict)


def config_keys(g):
    """The names in g that are settings: public names bound to plain values, less
    UPPER_CASE constants (tables such as train_grpo.GATES are code, not settings)."""
    return [k for k, v in g.items()
            if not k.startswith("_") and not k.isupper() and isinstance(v, PLAIN_TYPES)]


def _checked(key, value, default, origin):
    """Returns value converted to the default's type, or raises naming the key."""
    if default is None or type(value) is type(default):
        return value
    if type(default) is float and type(value) is int:
        return float(value)
    raise ValueError(f"{origin}: setting '{key}' expects {type(default).__name__} "
                     f"(default {default!r}), got {type(value).__name__} {value!r}")


def _parse_flag(arg, default):
    """Parses the value of `--key=value` with the default's type in mind."""
    raw = arg.split("=", 1)[1]
    if isinstance(default, bool) and raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw
    # A string setting keeps what was typed unless it was a quoted literal, so that
    # `--run_name=2024` stays "2024" instead of failing as an int.
    if isinstance(default, str) and not isinstance(value, str):
        return raw
    return value


def _apply_file(g, keys, path):
    try:
        with open(path) as f:
            source = f.read()
    except OSError as e:
        raise ValueError(f"cannot read config file '{path}': {e}") from e
    namespace = {k: g[k] for k in keys}
    namespace["__file__"] = path
    exec(compile(source, path, "exec"), namespace)
    for key, value in namespace.items():
        if key.startswith("_") or isinstance(value, (types.ModuleType, types.FunctionType, type)):
            continue
        if key not in keys:
            raise ValueError(f"config file '{path}' sets unknown setting '{key}' "
                             f"(known: {', '.join(sorted(keys))})")
        g[key] = _checked(key, value, g[key], f"config file '{path}'")


def configure(g, argv=None):
    """Applies config files and --key=value flags from argv (default sys.argv[1:]) to
    the settings in g, in order. Returns {setting: final value} for every setting."""
    argv = sys.argv[1:] if argv is None else argv
    keys = config_keys(g)
    for arg in argv:
        if not arg.startswith("--"):
            _apply_file(g, keys, arg)
            continue
        if "=" not in arg:
            raise ValueError(f"flag '{arg}' must be written --key=value")
        key = arg[2:].split("=", 1)[0]
        if key not in keys:
            raise ValueError(f"unknown setting '{key}' in flag '{arg}' "
                             f"(known: {', '.join(sorted(keys))})")
        g[key] = _checked(key, _parse_flag(arg, g[key]), g[key], f"flag '{arg}'")
    return {k: g[k] for k in keys}
