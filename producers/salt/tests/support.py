"""Helpers shared by the returner's tests and the end-to-end script.

Runs with Debian's /usr/bin/python3 and python3-pika; Salt is not needed.
"""

import importlib.util
import itertools
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
MODULE_PATH = os.path.join(os.path.dirname(HERE), "_returners", "runlens_amqp.py")
ENV_SHARED = "RUNLENS_SHARED"

_counter = itertools.count()


def fixtures_dir():
    """The shared Salt fixtures: $RUNLENS_SHARED/fixtures/salt, else the first
    shared/fixtures/salt found walking up from this file or the working
    directory (a `shared` checkout beside the repository). Raises when there
    is none: a test that cannot find its fixtures must fail, not pass empty."""
    shared = os.environ.get(ENV_SHARED)
    if shared:
        d = os.path.join(shared, "fixtures", "salt")
        if not os.path.isdir(d):
            raise RuntimeError("{}={} has no fixtures/salt directory".format(ENV_SHARED, shared))
        return d
    for start in (HERE, os.getcwd()):
        d = os.path.abspath(start)
        while True:
            cand = os.path.join(d, "shared", "fixtures", "salt")
            if os.path.isdir(cand):
                return cand
            parent = os.path.dirname(d)
            if parent == d:
                break
            d = parent
    raise RuntimeError(
        "no shared/fixtures/salt directory found above {}; check out the shared directory beside the "
        "repository or set {}".format(HERE, ENV_SHARED)
    )


def fixture_files():
    d = fixtures_dir()
    files = sorted(os.path.join(d, n) for n in os.listdir(d) if n.endswith(".json"))
    if not files:
        raise RuntimeError("no Salt fixtures in " + d)
    return files


def load_fixture(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def load_returner(opts=None, fake_salt=None, hide=()):
    """Loads runlens_amqp.py as a fresh module, the way Salt's loader does,
    and injects __opts__.

    fake_salt: None makes `import salt.returners` fail (no Salt installed);
    else a module object to serve as salt.returners.
    hide: module names whose import must fail (e.g. "pika")."""
    names = ["salt", "salt.returners"] + list(hide)
    saved = {n: sys.modules.get(n, _MISSING) for n in names}
    try:
        if fake_salt is None:
            sys.modules["salt"] = None
        else:
            pkg = type(sys)("salt")
            pkg.__path__ = []
            pkg.returners = fake_salt
            sys.modules["salt"] = pkg
            sys.modules["salt.returners"] = fake_salt
        for n in hide:
            sys.modules[n] = None
        name = "runlens_amqp_under_test_{}".format(next(_counter))
        spec = importlib.util.spec_from_file_location(name, MODULE_PATH)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        for n, m in saved.items():
            if m is _MISSING:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m
    mod.__opts__ = dict(opts or {})
    return mod


_MISSING = object()
