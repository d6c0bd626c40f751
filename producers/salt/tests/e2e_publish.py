"""Publishes Salt fixture returns through the real returner, for
producers_test.go to consume and decode in Go.

    python3 e2e_publish.py [--drop-stamp] [--OPTION=VALUE...] URL_WITHOUT_PASSWORD PASSWORD EXCHANGE FIXTURE.json...

Each fixture's `data` goes through runlens_amqp.returner(); --drop-stamp
removes its `_stamp` first, as a minion-side return has none. Any other
--OPTION=VALUE sets runlens_amqp.OPTION (e.g. --tls_ca_file=ca.pem). Exits 1
if the returner logged a warning (it never raises).
"""

import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import support  # noqa: E402


class _Count(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.n = 0

    def emit(self, record):
        self.n += 1
        sys.stderr.write(self.format(record) + "\n")


def main(argv):
    drop = "--drop-stamp" in argv
    extra = dict(a[2:].split("=", 1) for a in argv if a.startswith("--") and "=" in a)
    args = [a for a in argv if not a.startswith("--")]
    if len(args) < 4:
        sys.stderr.write(__doc__)
        return 2
    url, password, exchange, files = args[0], args[1], args[2], args[3:]
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    mod = support.load_returner({
        "runlens_amqp.url": url,
        "runlens_amqp.password": password,
        "runlens_amqp.exchange": exchange,
        **{"runlens_amqp." + k: v for k, v in extra.items()},
    })
    counter = _Count()
    mod.log.addHandler(counter)
    for path in files:
        data = support.load_fixture(path)["data"]
        if drop:
            data.pop("_stamp", None)
        mod.returner(data)
    return 1 if counter.n else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
