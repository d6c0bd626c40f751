"""Tests of the returner's spool, TLS options, grains, scrubbing and the
returns it publishes besides plain state runs (salt-ssh failures,
orchestration), without Salt, against the real RabbitMQ as
test_runlens_amqp.py does.

    /usr/bin/python3 producers/salt/tests/test_runlens_amqp_more.py -v
"""

import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import support  # noqa: E402
from test_runlens_amqp import Broker, split_url  # noqa: E402

VECTORS = os.path.join(os.path.dirname(support.HERE), "..", "testdata", "scrub-vectors.json")


def fixture(prefix):
    path = [p for p in support.fixture_files() if os.path.basename(p).startswith(prefix)][0]
    return support.load_fixture(path)


class ScrubTest(unittest.TestCase):
    def test_shared_vectors(self):
        # The cases every producer's scrubber is held to (the Go and Ruby
        # suites read the same file).
        with open(VECTORS, encoding="utf-8") as f:
            vectors = json.load(f)["vectors"]
        self.assertGreaterEqual(len(vectors), 5)
        mod = support.load_returner()
        for v in vectors:
            self.assertEqual(mod._scrub(v["in"]), v["out"], v["in"])

    def test_return_texts_capped_and_scrubbed(self):
        mod = support.load_returner()
        data = fixture("02-")["data"]
        key = [k for k, v in data["return"].items() if v["result"] is False][0]
        data["return"][key]["comment"] = "pip install https://u:pw@pypi.example.com/simple failed " + "x" * 5000
        body, _ = mod._return_message(data)
        sent = json.loads(body)["data"]
        comment = sent["return"][key]["comment"]
        self.assertLessEqual(len(comment), 1024)
        self.assertTrue(comment.startswith("pip install https://u:***@pypi.example.com"))
        self.assertIn("pw@", data["return"][key]["comment"], "the caller's return is not modified")
        ssh = mod._return_message({"id": "web3", "jid": "1", "fun": "state.apply", "retcode": 255,
                                   "stderr": "ssh: connect to user:s3cret@10.0.0.13 token=abc"})
        self.assertNotIn("abc", ssh[0].decode())


class PublishMoreTest(unittest.TestCase):
    def setUp(self):
        self.broker = Broker()
        url, password = split_url()
        self.cache = tempfile.mkdtemp()
        self.opts = {
            "runlens_amqp.url": url,
            "runlens_amqp.password": password,
            "runlens_amqp.exchange": self.broker.exchange,
            "runlens_amqp.timeout": 3,
            "cachedir": self.cache,
        }

    def tearDown(self):
        self.broker.close()
        shutil.rmtree(self.cache, ignore_errors=True)

    def test_grains_on_the_minion(self):
        mod = support.load_returner(self.opts)
        mod.__grains__ = {"fqdn": "web1.example.com", "ipv4": ["127.0.0.1", "10.0.0.5"], "os": "Ubuntu",
                          "osrelease": "24.04", "saltversion": "3007.1", "roles": ["web"], "mem_total": 1}
        mod.returner(fixture("01-")["data"])
        (_, msg), = self.broker.take(1)
        self.assertEqual(msg["data"]["grains"], {"fqdn": "web1.example.com", "ipv4": ["127.0.0.1", "10.0.0.5"],
                                                 "os": "Ubuntu", "osrelease": "24.04", "saltversion": "3007.1",
                                                 "roles": ["web"]})
        # On the master (event_return) the grains would be the master's: none.
        mod.event_return([fixture("01-")])
        (_, msg), = self.broker.take(1)
        self.assertNotIn("grains", msg["data"])

    def test_spooled_then_sent_first(self):
        mod = support.load_returner(dict(self.opts, **{"runlens_amqp.url": "amqp://runlens@127.0.0.1:1/%2F"}))
        spool = os.path.join(self.cache, "runlens_spool")
        with self.assertLogs(mod.log, level="WARNING") as logs:
            mod.returner(fixture("01-")["data"])
            mod.returner(fixture("02-")["data"])
        self.assertIn("spooled in " + spool, "\n".join(logs.output))
        names = sorted(os.listdir(spool))
        self.assertEqual(len(names), 2)
        for n in names:
            self.assertEqual(os.stat(os.path.join(spool, n)).st_mode & 0o777, 0o600)
        mod = support.load_returner(self.opts)
        mod.returner(fixture("05-")["data"])
        got = self.broker.take(3)
        self.assertEqual([m["data"]["jid"] for _, m in got],
                         [fixture(p)["data"]["jid"] for p in ("01-", "02-", "05-")], "spooled first, in order")
        self.assertEqual([p.message_id.split("/")[0] for p, _ in got], [m["data"]["jid"] for _, m in got])
        self.assertEqual(os.listdir(spool), [])

    def test_spool_bounded(self):
        opts = dict(self.opts, **{"runlens_amqp.url": "amqp://runlens@127.0.0.1:1/%2F", "runlens_amqp.spool_max": 2})
        mod = support.load_returner(opts)
        with self.assertLogs(mod.log, level="WARNING") as logs:
            for prefix in ("01-", "02-", "05-"):
                mod.returner(fixture(prefix)["data"])
        self.assertIn("1 oldest dropped", "\n".join(logs.output))
        self.assertEqual(len(os.listdir(os.path.join(self.cache, "runlens_spool"))), 2)

    def test_ssh_failures_and_orchestration(self):
        mod = support.load_returner(self.opts)
        ssh = {"stdout": "", "stderr": "ssh: connect to host 10.0.0.13 port 22: Connection refused\r\n", "retcode": 255,
               "id": "web03", "fun": "state.apply", "jid": "20240501150000654321"}
        mod.returner(ssh)
        orch = {"fun": "runner.state.orchestrate", "jid": "20240501140000123456", "fun_args": ["orch.x"],
                "return": {"data": {"salt01_master": {}}, "outputter": "highstate", "retcode": 0}}
        events = [
            {"tag": "salt/run/20240501140000123456/ret", "data": orch},
            {"tag": "salt/run/20240501140000123457/ret", "data": {"fun": "runner.jobs.list_jobs", "jid": "1", "return": {}}},
            {"tag": "salt/run/20240501140000123456/new", "data": {"fun": "runner.state.orchestrate"}},
        ]
        mod.event_return(events)
        got = self.broker.take(2)
        self.assertEqual([m["tag"] for _, m in got], ["salt/job/20240501150000654321/ret/web03", "salt/run/20240501140000123456/ret"])
        self.assertEqual([p.message_id for p, _ in got], ["20240501150000654321/web03", "20240501140000123456/run"])
        self.assertEqual(self.broker.take(1, within=0.3), [])

    def test_dry_runs_published_for_the_decoder_to_mark(self):
        mod = support.load_returner(self.opts)
        data = dict(fixture("01-")["data"], fun="state.test")
        mod.returner(data)
        (_, msg), = self.broker.take(1)
        self.assertEqual(msg["data"]["fun"], "state.test")


def make_pki(d):
    """A CA, a server certificate for 127.0.0.1 and a client certificate,
    made with the openssl command."""
    def run(*args):
        subprocess.run(["openssl"] + list(args), check=True, capture_output=True, cwd=d)
    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key",
        "-out", "ca.pem", "-days", "1", "-subj", "/CN=runlens test CA")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "client.key",
        "-out", "client.csr", "-subj", "/CN=runlens-salt")
    run("x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "client.pem", "-days", "1")
    return {k: os.path.join(d, k) for k in ("ca.pem", "client.pem", "client.key")}


class TLSOptionsTest(unittest.TestCase):
    """The TLS settings reach pika's ssl_options; the URL form the exporter
    reads is taken apart instead of making pika refuse the URL (its
    URLParameters raises on unknown query parameters). The broker side is
    faults/salt_amqps_test.go, against a RabbitMQ node that requires
    client certificates."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp()
        cls.pki = make_pki(cls.dir)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def target(self, url, **opts):
        mod = support.load_returner()
        o = mod._normalise(dict({"url": url}, **opts))
        return mod._Target(o)

    def test_url_parameters_mapped(self):
        import pika

        url = "amqps://runlens@127.0.0.1:5671/%2F?cacertfile={}&certfile={}&keyfile={}&server_name_indication=rabbit.example.com&heartbeat=30".format(
            self.pki["ca.pem"], self.pki["client.pem"], self.pki["client.key"])
        with self.assertRaises(ValueError):
            pika.URLParameters(url.replace("runlens@", "runlens:pw@"))  # why the returner must take them apart
        t = self.target(url)
        self.assertEqual(t.params.ssl_options.server_hostname, "rabbit.example.com")
        ctx = t.params.ssl_options.context
        self.assertEqual(ctx.verify_mode, ssl.CERT_REQUIRED)
        self.assertTrue(ctx.check_hostname)
        self.assertEqual(len(ctx.get_ca_certs()), 1)
        self.assertEqual(t.params.heartbeat, 30, "other parameters still reach pika")
        self.assertNotIn("cacertfile", t.display)

    def test_options_and_insecure(self):
        t = self.target("amqps://runlens@127.0.0.1:5671/%2F", tls_ca_file=self.pki["ca.pem"],
                        tls_cert_file=self.pki["client.pem"], tls_key_file=self.pki["client.key"])
        self.assertEqual(t.params.ssl_options.server_hostname, "127.0.0.1")
        t = self.target("amqps://runlens@127.0.0.1:5671/%2F?verify=verify_none")
        self.assertEqual(t.params.ssl_options.context.verify_mode, ssl.CERT_NONE)
        t = self.target("amqp://runlens@127.0.0.1:5672/%2F", tls_ca_file=self.pki["ca.pem"])
        self.assertIsNone(t.params.ssl_options, "no TLS for amqp://")


if __name__ == "__main__":
    unittest.main()
