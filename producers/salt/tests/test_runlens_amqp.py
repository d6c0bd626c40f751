"""Tests of the runlens_amqp Salt returner, without Salt, against the real
RabbitMQ (127.0.0.1:5672, guest/guest, or RUNLENS_TEST_AMQP_URL): each test
declares its own exchange and queue and deletes them afterwards.

    /usr/bin/python3 producers/salt/tests/test_runlens_amqp.py -v
"""

import datetime
import json
import logging
import os
import socket
import sys
import threading
import time
import types
import unittest
import urllib.parse
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pika  # noqa: E402

import support  # noqa: E402

AMQP_URL = os.environ.get("RUNLENS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
LOGGER = "runlens_amqp_under_test"
SECRET = "not-guest-s3cret"

logging.getLogger("pika").setLevel(logging.CRITICAL)


def setUpModule():
    # Fails every test (rather than skipping) when the fixtures are missing.
    support.fixture_files()


def split_url():
    """(url without password, password) as a minion would configure them."""
    p = urllib.parse.urlsplit(AMQP_URL)
    host = p.netloc.rpartition("@")[2]
    user = p.username or "guest"
    url = urllib.parse.urlunsplit((p.scheme, "{}@{}".format(user, host), p.path, "", ""))
    return url, urllib.parse.unquote(p.password or "guest")


def fake_salt_returners():
    """salt.returners with get_returner_options as Salt implements it for a
    dict config (the scheduler case, no __salt__['config.option']): the
    dotted key, then the bare key, then the default; falsy values count as
    unset; ret_kwargs override."""
    mod = types.ModuleType("salt.returners")
    mod.calls = []

    def get_returner_options(virtualname=None, ret=None, attrs=None, **kwargs):
        mod.calls.append((virtualname, ret is not None, sorted(attrs or {})))
        cfg = kwargs.get("__salt__", {}).get("config.option", kwargs.get("__opts__", {}))
        defaults = kwargs.get("defaults") or {}
        out = {}
        for option, key in (attrs or {}).items():
            value = cfg.get("{}.{}".format(virtualname, key)) or cfg.get(key)
            if value:
                out[option] = value
            elif option in defaults:
                out[option] = defaults[option]
        if ret and "ret_kwargs" in ret:
            out.update(ret["ret_kwargs"])
        return out

    mod.get_returner_options = get_returner_options
    return mod


class Broker:
    """An exchange declared as the returner declares it (durable fanout)
    and an exclusive queue bound to it."""

    def __init__(self):
        self.conn = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        self.ch = self.conn.channel()
        self.exchange = "runlens.test.salt." + uuid.uuid4().hex[:12]
        self.ch.exchange_declare(self.exchange, "fanout", durable=True)
        self.queue = self.ch.queue_declare("", exclusive=True).method.queue
        self.ch.queue_bind(self.queue, self.exchange)

    def take(self, n, within=5.0):
        out = []
        deadline = time.time() + within
        while len(out) < n and time.time() < deadline:
            method, props, body = self.ch.basic_get(self.queue, auto_ack=True)
            if method is None:
                self.conn.sleep(0.02)
                continue
            out.append((props, json.loads(body)))
        return out

    def count(self):
        return self.ch.queue_declare(self.queue, passive=True).method.message_count

    def close(self):
        try:
            self.ch.exchange_delete(self.exchange)
            self.conn.close()
        except Exception:
            pass


class VirtualTest(unittest.TestCase):
    def test_virtual_name_with_pika(self):
        self.assertEqual(support.load_returner().__virtual__(), "runlens_amqp")

    def test_virtual_false_with_reason_without_pika(self):
        mod = support.load_returner(hide=("pika",))
        ok, reason = mod.__virtual__()
        self.assertIs(ok, False)
        self.assertIn("pika", reason)

    def test_private_helpers_are_not_loader_functions(self):
        # Salt's loader exposes every public function of a returner module.
        mod = support.load_returner()
        public = sorted(
            n for n, v in vars(mod).items() if callable(v) and not n.startswith("_") and isinstance(v, types.FunctionType)
        )
        self.assertEqual(public, ["event_return", "returner"])


class ReturnerTest(unittest.TestCase):
    def setUp(self):
        self.broker = Broker()
        url, password = split_url()
        self.opts = {
            "runlens_amqp.url": url,
            "runlens_amqp.password": password,
            "runlens_amqp.exchange": self.broker.exchange,
            "runlens_amqp.timeout": 3,
        }

    def tearDown(self):
        self.broker.close()

    def test_every_real_return_fixture(self):
        mod = support.load_returner(self.opts)
        expected = []
        for path in support.fixture_files():
            event = support.load_fixture(path)
            data = event["data"]
            with self.subTest(fixture=os.path.basename(path)):
                mod.returner(data)
                if "return" not in data:
                    # 06 is a job-publish event, not a return: nothing to send.
                    self.assertNotIn("/ret/", event["tag"])
                    continue
                expected.append((os.path.basename(path), event))
        got = self.broker.take(len(expected))
        self.assertEqual(len(got), len(expected))
        self.assertEqual(self.broker.take(1, within=0.3), [], "nothing else was published")
        for (name, event), (props, msg) in zip(expected, got):
            with self.subTest(fixture=name):
                data = event["data"]
                self.assertEqual(msg["tag"], event["tag"], "salt/job/<jid>/ret/<id>")
                self.assertEqual(msg["data"], data, "the return goes unchanged (it had a _stamp)")
                self.assertEqual(props.delivery_mode, 2)
                self.assertEqual(props.content_type, "application/json")
                self.assertEqual(props.message_id, "{}/{}".format(data["jid"], data["id"]))

    def test_stamp_added_and_return_config_dropped(self):
        mod = support.load_returner(self.opts)
        path = [p for p in support.fixture_files() if os.path.basename(p).startswith("02-")][0]
        data = support.load_fixture(path)["data"]
        data.pop("_stamp")
        data["ret_kwargs"] = {"timeout": 2}
        before = time.time()
        mod.returner(data)
        self.assertNotIn("_stamp", data, "the caller's dict is not modified")
        (props, msg), = self.broker.take(1)
        stamp = msg["data"]["_stamp"]
        # Salt's own format: ISO 8601, UTC, no zone.
        self.assertNotRegex(stamp, r"(Z|[+-]\d\d:\d\d)$")
        t = datetime.datetime.fromisoformat(stamp).replace(tzinfo=datetime.timezone.utc).timestamp()
        self.assertLess(abs(t - before), 5, stamp)
        self.assertNotIn("ret_kwargs", msg["data"])
        self.assertEqual(msg["data"]["retcode"], 2)

    def test_non_state_functions_are_skipped(self):
        mod = support.load_returner(self.opts)
        mod.returner({"id": "m1", "jid": "20240101000000000001", "fun": "test.ping", "return": True, "retcode": 0})
        mod.returner({"id": "m1", "jid": "20240101000000000002", "fun": "state.show_sls", "return": {}, "retcode": 0})
        mod.returner({"id": "m1", "jid": "20240101000000000003", "fun": "state.running", "return": [], "retcode": 0})
        mod.returner("not a dict")
        self.assertEqual(self.broker.take(1, within=0.5), [])

    def test_event_return_publishes_only_state_job_returns(self):
        mod = support.load_returner(self.opts)
        events = [support.load_fixture(p) for p in support.fixture_files()]
        events += [
            {"tag": "salt/job/20240101000000000009/ret/m1", "data": {"id": "m1", "jid": "20240101000000000009",
                                                                     "fun": "test.ping", "return": True}},
            {"tag": "salt/auth", "data": {"id": "m1", "act": "accept"}},
            {"tag": "salt/job/20240101000000000010/prog/m1/0", "data": {"id": "m1", "jid": "20240101000000000010",
                                                                        "fun": "state.apply", "return": {}}},
            "garbage",
        ]
        mod.event_return(events)
        want = [e["tag"] for e in events[:6] if isinstance(e, dict) and "/ret/" in e["tag"]]
        self.assertEqual(len(want), 5)
        got = self.broker.take(len(want))
        self.assertEqual([m["tag"] for _, m in got], want, "in order, one connection")
        self.assertEqual(self.broker.take(1, within=0.3), [])

    def test_options_through_salt_get_returner_options(self):
        fake = fake_salt_returners()
        opts = dict(self.opts)
        opts["runlens_amqp.exchange"] = "wrong-exchange-overridden-by-ret-kwargs"
        mod = support.load_returner(opts, fake_salt=fake)
        self.assertTrue(mod.HAS_SALT)
        data = support.load_fixture(support.fixture_files()[0])["data"]
        data = dict(data, ret_kwargs={"exchange": self.broker.exchange})
        mod.returner(data)
        self.assertTrue(fake.calls, "get_returner_options was used")
        self.assertEqual(fake.calls[0][0], "runlens_amqp")
        self.assertEqual(len(self.broker.take(1)), 1)

    def test_nested_config_and_password_file(self):
        url, password = split_url()
        pw_file = os.path.join(os.environ.get("TMPDIR", "/tmp"), "runlens-test-pw-" + uuid.uuid4().hex)
        with open(pw_file, "w", encoding="utf-8") as f:
            f.write(password + "\n")
        try:
            mod = support.load_returner(
                {"runlens_amqp": {"url": url, "password_file": pw_file, "exchange": self.broker.exchange}}
            )
            mod.returner(support.load_fixture(support.fixture_files()[0])["data"])
        finally:
            os.unlink(pw_file)
        self.assertEqual(len(self.broker.take(1)), 1)

    def test_missing_exchange_with_skip_declare(self):
        opts = dict(self.opts, **{"runlens_amqp.exchange": self.broker.exchange + ".missing",
                                  "runlens_amqp.skip_declare": True})
        mod = support.load_returner(opts)
        with self.assertLogs(mod.log, level="WARNING") as logs:
            started = time.time()
            mod.returner(support.load_fixture(support.fixture_files()[0])["data"])
        self.assertLess(time.time() - started, 3)
        self.assertIn("NOT_FOUND", "\n".join(logs.output))

    def test_withheld_confirm_is_cut_at_the_timeout(self):
        # A proxy that stops passing the broker's answers once the message
        # body went by: the confirm never arrives, as with a quorum queue
        # that lost its majority.
        data = support.load_fixture(support.fixture_files()[0])["data"]
        proxy = FreezingProxy(marker=data["jid"].encode())
        url, password = split_url()
        try:
            mod = support.load_returner(dict(self.opts, **{
                "runlens_amqp.url": "amqp://{}@127.0.0.1:{}/%2F".format(urllib.parse.urlsplit(url).username, proxy.port),
                "runlens_amqp.timeout": 1,
            }))
            with self.assertLogs(mod.log, level="WARNING") as logs:
                started = time.time()
                mod.returner(data)
                took = time.time() - started
        finally:
            proxy.close()
        self.assertTrue(proxy.frozen, "the message went through the proxy")
        self.assertLess(took, 1 + mod._Publisher.GRACE + 1)
        self.assertIn("no answer within 1.0s", "\n".join(logs.output))


class UnreachableTest(unittest.TestCase):
    def test_refused_returns_quickly_and_logs_without_password(self):
        mod = support.load_returner({
            "runlens_amqp.url": "amqp://runlens:url-pw-" + SECRET + "@127.0.0.1:1/%2F",
            "runlens_amqp.password": SECRET,
            "runlens_amqp.exchange": "runlens.test.unreachable",
        })
        data = support.load_fixture(support.fixture_files()[0])["data"]
        with self.assertLogs(mod.log, level="WARNING") as logs:
            started = time.time()
            mod.returner(data)  # must not raise
            mod.event_return([support.load_fixture(support.fixture_files()[0])])
        self.assertLess(time.time() - started, 2)
        text = "\n".join(logs.output)
        self.assertIn("could not publish 1 job return(s) to amqp://runlens@127.0.0.1:1/%2F", text)
        self.assertNotIn(SECRET, text)
        self.assertEqual(len(logs.output), 2)

    def test_silent_server_is_cut_at_the_timeout(self):
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(8)  # never accepted, never answered
        try:
            for scheme in ("amqp", "amqps"):
                mod = support.load_returner({
                    "runlens_amqp.url": "{}://guest@127.0.0.1:{}/%2F".format(scheme, srv.getsockname()[1]),
                    "runlens_amqp.timeout": 0.5,
                })
                with self.subTest(scheme=scheme), self.assertLogs(mod.log, level="WARNING") as logs:
                    started = time.time()
                    mod.returner(support.load_fixture(support.fixture_files()[0])["data"])
                    self.assertLess(time.time() - started, 0.5 + mod._Publisher.GRACE + 0.5)
                self.assertIn("no answer within 0.5s", "\n".join(logs.output))
        finally:
            srv.close()

    def test_bad_config_does_not_raise(self):
        mod = support.load_returner({"runlens_amqp.url": "amqp://h/", "runlens_amqp.password_file": "/nonexistent/pw"})
        with self.assertLogs(mod.log, level="WARNING"):
            mod.returner(support.load_fixture(support.fixture_files()[0])["data"])
            mod.event_return([support.load_fixture(support.fixture_files()[0])])


class FreezingProxy:
    """TCP proxy to the broker that stops forwarding the broker's bytes once
    the client sent `marker`."""

    def __init__(self, marker):
        p = urllib.parse.urlsplit(AMQP_URL)
        self.upstream = (p.hostname or "127.0.0.1", p.port or 5672)
        self.marker = marker
        self.frozen = False
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(4)
        self.port = self.srv.getsockname()[1]
        self.socks = [self.srv]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        try:
            client, _ = self.srv.accept()
        except OSError:
            return
        server = socket.create_connection(self.upstream)
        self.socks += [client, server]
        threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
        threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, src, dst, from_client):
        seen = b""
        try:
            while True:
                chunk = src.recv(65536)
                if not chunk:
                    return
                if from_client:
                    seen = (seen + chunk)[-65536:]
                    if self.marker in seen:
                        self.frozen = True
                elif self.frozen:
                    continue
                dst.sendall(chunk)
        except OSError:
            return

    def close(self):
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass


if __name__ == "__main__":
    unittest.main()
