"""
Publish Salt state-run returns to RabbitMQ for runlens.

Each return goes to a fanout exchange (default ``chef_reports``) as the JSON
``{"tag": "salt/job/<jid>/ret/<minion>", "data": <the job return>}``, with
``_stamp`` (UTC, Salt's format) added when the return has none: runlens uses it
as the run's end time. Messages are persistent (delivery_mode 2) and the
returner waits for the broker's publisher confirm, within a short timeout. It
never raises into Salt: a failure is logged as a warning (without the
password) and the return is dropped.

Only state runs are published (``state.apply``, ``state.highstate``,
``state.sls``, ``state.test``, ...; runlens counts test=True runs as dry runs,
never as runs), salt-ssh hosts that could not run one (no ``return``, only
``stderr`` / ``_error``) and, from the master's event bus, orchestration
(``salt/run/<jid>/ret`` of ``state.orchestrate``); other functions' returns
are skipped, as runlens would reject them. On a minion the return carries the
minion's identity grains (fqdn, ipv4, os, osrelease, saltversion, roles).
Error texts (state comments, tracebacks, salt-ssh stderr) are capped and
scrubbed of obvious secrets (URL passwords, ``password=...``).

A return that cannot be published is spooled (``spool_dir``, at most
``spool_max`` files, oldest dropped) and sent, oldest first, before the next
one.

Two ways to use it:

* as a minion returner: ``salt '*' state.apply --return runlens_amqp``, or for
  every job with ``return: runlens_amqp`` in the minion config (or a schedule's
  ``returner``);
* on the master, for the returns of every minion without touching them:
  ``event_return: runlens_amqp`` in the master config. Only
  ``salt/job/*/ret/*`` events of state runs are published.

Configuration (minion or master config, grains or pillar; see Salt's
``config.option``)::

    runlens_amqp.url: amqps://runlens@rabbit.example.com:5671/%2F   # no password here
    runlens_amqp.password_file: /etc/salt/runlens_amqp_password      # or runlens_amqp.password
    runlens_amqp.exchange: chef_reports
    runlens_amqp.timeout: 5            # seconds for connect + publish + confirm
    runlens_amqp.skip_declare: False   # True: do not declare the exchange
    runlens_amqp.tls_ca_file: /etc/salt/runlens-ca.pem   # amqps:// only
    runlens_amqp.tls_cert_file: /etc/salt/runlens-client.pem
    runlens_amqp.tls_key_file: /etc/salt/runlens-client.key
    runlens_amqp.tls_server_name: rabbit.example.com     # SNI and the name checked
    runlens_amqp.tls_insecure: False   # True: do not verify the broker (tests only)
    runlens_amqp.spool_dir: /var/cache/salt/minion/runlens_spool   # default: <cachedir>/runlens_spool
    runlens_amqp.spool_max: 100

The URL may instead carry the TLS settings as amqp091-go / the exporter read
them (``?cacertfile=...&certfile=...&keyfile=...&server_name_indication=...``,
and ``verify=verify_none``): they are taken out of the URL, which pika would
otherwise refuse, and mapped onto pika's ``ssl_options``.

The same keys may be given as a dict (``runlens_amqp: {url: ..., ...}``), or
for one job with ``--return_config`` / ``--return_kwargs``.
"""

import datetime
import json
import logging
import os
import re
import ssl
import tempfile
import time
import urllib.parse

try:
    import pika

    HAS_PIKA = True
except ImportError:
    HAS_PIKA = False

try:
    import salt.returners

    HAS_SALT = True
except ImportError:
    HAS_SALT = False

log = logging.getLogger(__name__)

__virtualname__ = "runlens_amqp"

DEFAULTS = {
    "url": "amqp://guest@127.0.0.1:5672/%2F",
    "exchange": "chef_reports",
    "password": None,
    "password_file": None,
    "timeout": 5,
    # Salt's get_returner_options drops falsy values and takes the default
    # instead, so a boolean option must default to False to be settable.
    "skip_declare": False,
    "connection_name": "runlens-salt-returner",
    "tls_ca_file": None,
    "tls_cert_file": None,
    "tls_key_file": None,
    "tls_server_name": None,
    "tls_insecure": False,
    "spool_dir": None,
    "spool_max": 100,
}

# URL query parameters the exporter (amqp091-go) reads for TLS, mapped onto
# the options above: pika.URLParameters rejects parameters it does not know.
_URL_TLS = {
    "cacertfile": "tls_ca_file",
    "certfile": "tls_cert_file",
    "keyfile": "tls_key_file",
    "server_name_indication": "tls_server_name",
}

# The identity grains sent along with a minion's return.
_GRAINS = ("fqdn", "ipv4", "os", "osrelease", "saltversion", "roles")

# Bounds of the error texts a return carries (runlens keeps 1 KiB of an
# error message; a traceback is for a person reading the run).
_MAX_TEXT = 1024

# runlens' scrubber, the same rules as the Chef handler's Runlens.scrub and
# the exporter's datacollector.Scrub (producers/testdata/scrub-vectors.json).
_URL_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)([^/\s:@]*):([^/\s@]*)@")
_SECRET_VALUE = re.compile(
    r"(password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key)([\"']?\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s\"',;&]+)",
    re.IGNORECASE,
)

# Orchestration runners (salt/runners/state.py) whose salt/run/<jid>/ret
# runlens counts as a run of the master.
_ORCHESTRATE = frozenset(
    (
        "runner.state.orchestrate",
        "runner.state.orch",
        "runner.state.sls",
        "runner.state.orchestrate_single",
        "runner.state.orchestrate_high",
    )
)

APP_ID = "runlens-salt-returner"

# state.* functions that do not apply states (mirrors runlens' decoder).
_NO_RUN = frozenset(
    (
        "state.running",
        "state.list_disabled",
        "state.disable",
        "state.enable",
        "state.sls_exists",
        "state.id_exists",
        "state.clear_cache",
        "state.clear_request",
        "state.check_request",
        "state.pause",
        "state.resume",
        "state.soft_kill",
        "state.get_pauses",
        "state.event",
    )
)

_RET_TAG = re.compile(r"^salt/job/[^/]+/ret/.+")
_RUN_RET_TAG = re.compile(r"^salt/run/([^/]+)/ret$")

# Keys of a return that configure the returner rather than describe the job:
# --return_kwargs may carry a password.
_PRIVATE_KEYS = ("ret_config", "ret_kwargs")


def __virtual__():
    if not HAS_PIKA:
        return (
            False,
            "runlens_amqp returner: the pika library is not installed "
            "(apt-get install python3-pika, or pip install pika)",
        )
    return __virtualname__


def returner(ret):
    """Publish one job return (minion side)."""
    try:
        msg = _return_message(ret, grains=globals().get("__grains__"))
        if msg is None:
            log.debug("runlens_amqp: skipping the return of %r", _get(ret, "fun"))
            return
        _publish([msg], _options(ret))
    except Exception as exc:  # never raise into Salt
        log.warning("runlens_amqp: could not publish the job return: %s", _safe_error(exc))


def event_return(events):
    """Publish the state-run returns among the master's events."""
    try:
        msgs = []
        for event in events or ():
            if not isinstance(event, dict):
                continue
            tag = event.get("tag")
            if not isinstance(tag, str):
                continue
            if _RET_TAG.match(tag):
                msg = _return_message(event.get("data"), tag=tag)
            elif _RUN_RET_TAG.match(tag):
                msg = _runner_message(event.get("data"), tag)
            else:
                continue
            if msg is not None:
                msgs.append(msg)
        if msgs:
            _publish(msgs, _options())
    except Exception as exc:  # never raise into Salt
        log.warning("runlens_amqp: could not publish job returns: %s", _safe_error(exc))


def _get(obj, key):
    return obj.get(key) if isinstance(obj, dict) else None


def _is_state_run(fun):
    """True for functions whose return is a state run runlens accepts."""
    return (
        isinstance(fun, str)
        and fun.startswith("state.")
        and fun not in _NO_RUN
        and not fun.startswith("state.show_")
    )


def _utc_stamp():
    """Now, as the master stamps events: ISO 8601 UTC without a zone."""
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None).isoformat()


def _ssh_failed(ret):
    """A salt-ssh host that could not run the job: no return, only what the
    ssh command printed (salt/client/ssh/__init__.py handle_routine)."""
    return "return" not in ret and any(ret.get(k) for k in ("_error", "stderr", "stdout"))


def _return_message(ret, tag=None, grains=None):
    """(body, message_id) for a state-run return, else None."""
    if not isinstance(ret, dict) or not ("return" in ret or _ssh_failed(ret)) or not _is_state_run(ret.get("fun")):
        return None
    jid, minion = ret.get("jid"), ret.get("id")
    if not jid or not minion:
        return None
    data = {k: v for k, v in ret.items() if k not in _PRIVATE_KEYS}
    if not data.get("_stamp"):
        data["_stamp"] = _utc_stamp()
    if isinstance(grains, dict) and "grains" not in data:
        data["grains"] = {k: grains[k] for k in _GRAINS if k in grains}
    _scrub_return(data)
    if tag is None:
        tag = "salt/job/{}/ret/{}".format(jid, minion)
    body = json.dumps({"tag": tag, "data": data}, default=_json_default, separators=(",", ":"))
    return body.encode("utf-8"), "{}/{}".format(jid, minion)


def _runner_message(ret, tag):
    """(body, message_id) for an orchestration runner's return, else None."""
    if not isinstance(ret, dict) or ret.get("fun") not in _ORCHESTRATE or "return" not in ret:
        return None
    jid = ret.get("jid") or _RUN_RET_TAG.match(tag).group(1)
    data = {k: v for k, v in ret.items() if k not in _PRIVATE_KEYS}
    if not data.get("_stamp"):
        data["_stamp"] = _utc_stamp()
    body = json.dumps({"tag": tag, "data": data}, default=_json_default, separators=(",", ":"))
    return body.encode("utf-8"), "{}/run".format(jid)


def _scrub(text):
    """Replace the obvious secrets in text: a URL's password, the value of
    password=, token:, api_key= and the like."""
    text = str(text)
    if "=" not in text and ":" not in text:
        return text
    text = _URL_USERINFO.sub(r"\1\2:***@", text)
    return _SECRET_VALUE.sub(r"\1\2***", text)


def _cap(text):
    return _scrub(text)[:_MAX_TEXT]


def _scrub_return(data):
    """Cap and scrub the error texts of a return in place (data is a copy;
    its nested dicts are copied before they change)."""
    for key in ("_error", "stderr", "stdout"):
        if isinstance(data.get(key), str):
            data[key] = _cap(data[key])
    ret = data.get("return")
    if isinstance(ret, str):
        data["return"] = _cap(ret)
    elif isinstance(ret, list):
        data["return"] = [_cap(x) if isinstance(x, str) else x for x in ret]
    elif isinstance(ret, dict):
        out = {}
        for key, state in ret.items():
            if isinstance(state, dict) and isinstance(state.get("comment"), str):
                state = dict(state, comment=_cap(state["comment"]))
            elif isinstance(state, str):
                state = _cap(state)
            out[key] = state
        data["return"] = out


def _json_default(obj):
    if isinstance(obj, (bytes, bytearray)):
        return bytes(obj).decode("utf-8", "replace")
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, (datetime.datetime, datetime.date)):
        return obj.isoformat()
    return str(obj)


def _options(ret=None):
    opts = globals().get("__opts__") or {}
    if HAS_SALT:
        got = salt.returners.get_returner_options(
            __virtualname__,
            ret,
            {k: k for k in DEFAULTS},
            __salt__=globals().get("__salt__") or {},
            __opts__=opts,
            defaults=DEFAULTS,
        )
    else:
        nested = opts.get(__virtualname__) if isinstance(opts.get(__virtualname__), dict) else {}
        got = {}
        for key, default in DEFAULTS.items():
            value = opts.get("{}.{}".format(__virtualname__, key), nested.get(key))
            got[key] = default if value is None else value
        if isinstance(ret, dict) and isinstance(ret.get("ret_kwargs"), dict):
            got.update(ret["ret_kwargs"])
    return _normalise(got)


def _normalise(got):
    o = dict(DEFAULTS)
    o.update({k: v for k, v in (got or {}).items() if v is not None})
    try:
        o["timeout"] = float(o["timeout"])
        if not o["timeout"] > 0:
            raise ValueError
    except (TypeError, ValueError):
        o["timeout"] = float(DEFAULTS["timeout"])
    o["skip_declare"] = _truthy(o["skip_declare"])
    o["tls_insecure"] = _truthy(o["tls_insecure"])
    try:
        o["spool_max"] = max(int(o["spool_max"]), 1)
    except (TypeError, ValueError):
        o["spool_max"] = DEFAULTS["spool_max"]
    if not o.get("spool_dir"):
        cachedir = (globals().get("__opts__") or {}).get("cachedir")
        o["spool_dir"] = os.path.join(cachedir, "runlens_spool") if cachedir else None
    if not o.get("password") and o.get("password_file"):
        with open(o["password_file"], encoding="utf-8") as f:
            o["password"] = f.readline().rstrip("\r\n")
    return o


def _truthy(value):
    return str(value).strip().lower() in ("1", "true", "yes", "on")


class _Target:
    """Connection parameters from the options, with the URL's userinfo taken
    apart: pika 1.2's URLParameters fails on a user without a password
    (amqp://user@host), and a password must not reach a log line."""

    def __init__(self, o):
        parts = urllib.parse.urlsplit(str(o["url"]))
        hostport = parts.netloc.rpartition("@")[2]
        user = urllib.parse.unquote(parts.username) if parts.username else None
        url_password = urllib.parse.unquote(parts.password) if parts.password is not None else None
        password = o.get("password") or url_password
        self.display = urllib.parse.urlunsplit(
            (parts.scheme, (parts.username + "@" if parts.username else "") + hostport, parts.path, "", "")
        )
        self.secrets = [s for s in (o.get("password"), url_password) if s]
        # TLS settings in the URL (the exporter's form) become options:
        # pika.URLParameters refuses query parameters it does not know.
        query, tls = [], {}
        for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
            if key in _URL_TLS:
                tls[_URL_TLS[key]] = value
            elif key == "verify":
                tls["tls_insecure"] = value == "verify_none"
            else:
                query.append((key, value))
        for key, value in tls.items():
            if not o.get(key):
                o = dict(o, **{key: value})
        params = pika.URLParameters(
            urllib.parse.urlunsplit((parts.scheme, hostport, parts.path, urllib.parse.urlencode(query), ""))
        )
        if parts.scheme == "amqps":
            params.ssl_options = _ssl_options(o, parts.hostname)
        if user is not None or password is not None:
            params.credentials = pika.PlainCredentials(user or "guest", password or "")
        timeout = o["timeout"]
        params.socket_timeout = timeout
        params.stack_timeout = timeout
        params.blocked_connection_timeout = timeout
        params.connection_attempts = 1
        params.retry_delay = 0
        params.client_properties = {"connection_name": str(o.get("connection_name") or APP_ID)}
        self.params = params

    def redact(self, text):
        text = re.sub(r"(\w+://[^/:@\s]*):[^@/\s]*@", r"\1:***@", str(text))
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text


def _ssl_options(o, host):
    """pika's ssl_options from the TLS options: the CA that signed the
    broker's certificate (else the system's), a client certificate, the
    name to check the broker's certificate against (and send as SNI;
    default the URL's host)."""
    ctx = ssl.create_default_context(cafile=o.get("tls_ca_file") or None)
    if o.get("tls_cert_file"):
        ctx.load_cert_chain(o["tls_cert_file"], o.get("tls_key_file") or None)
    if o.get("tls_insecure"):
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return pika.SSLOptions(context=ctx, server_hostname=o.get("tls_server_name") or host)


class _Spool:
    """A bounded directory of messages that could not be published, oldest
    first, as the Chef handler keeps (Runlens::Spool): each file written to a
    temporary name, fsynced and renamed, readable by its owner only; at most
    max files, the oldest dropped."""

    def __init__(self, path, max_files):
        self.dir = path
        self.max = max_files

    def paths(self):
        try:
            names = os.listdir(self.dir)
        except OSError:
            return []
        return [os.path.join(self.dir, n) for n in sorted(names) if n.endswith(".json") and not n.startswith(".")]

    def load(self):
        """[(path, body, message_id)] of the spooled messages, oldest first."""
        out = []
        for path in self.paths():
            try:
                with open(path, "rb") as f:
                    body = f.read()
                msg = json.loads(body)
                data = msg.get("data") or {}
                tag = msg.get("tag") or ""
                mid = "{}/run".format(data.get("jid")) if tag.startswith("salt/run/") else "{}/{}".format(data.get("jid"), data.get("id"))
            except (OSError, ValueError, AttributeError):
                self.delete(path)
                continue
            out.append((path, body, mid))
        return out

    def push(self, messages):
        """Spool (body, message_id) pairs; returns how many old files were dropped."""
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        for body, _mid in messages:
            stamp = "{:020d}".format(time.time_ns())
            fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=self.dir)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(body)
                    f.flush()
                    os.fsync(f.fileno())
                os.rename(tmp, os.path.join(self.dir, "{}-{}.json".format(stamp, os.getpid())))
            except OSError:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise
        paths = self.paths()
        extra = len(paths) - self.max
        for path in paths[: max(extra, 0)]:
            self.delete(path)
        return max(extra, 0)

    @staticmethod
    def delete(path):
        try:
            os.unlink(path)
        except OSError:
            pass


def _safe_error(exc):
    return re.sub(r"(\w+://[^/:@\s]*):[^@/\s]*@", r"\1:***@", "{}: {}".format(type(exc).__name__, exc))


class PublishError(Exception):
    pass


class _Publisher:
    """Publishes messages with pika's SelectConnection and waits for their
    confirms, all within one deadline.

    pika's BlockingChannel.basic_publish waits for the confirm with no time
    limit (a quorum queue without a majority withholds confirms for as long
    as that lasts), which would hang a minion's job thread; the event loop
    here is stopped by a timer instead."""

    GRACE = 1.0  # seconds a graceful close may take after the deadline

    def __init__(self, target, exchange, declare, timeout):
        self.target = target
        self.exchange = exchange
        self.declare = declare
        self.timeout = timeout
        self.conn = None
        self.channel = None
        self.messages = []
        self.pending = set()
        self.acked = set()
        self.nacked = set()
        self.error = None
        self.done = False
        self.published = False

    def run(self, messages):
        self.messages = messages
        self.conn = pika.SelectConnection(
            self.target.params,
            on_open_callback=self._on_open,
            on_open_error_callback=self._on_open_error,
            on_close_callback=self._on_closed,
        )
        ioloop = self.conn.ioloop
        timers = [ioloop.call_later(self.timeout, self._on_deadline)]
        self._timers = timers
        try:
            ioloop.start()
        finally:
            for t in timers:
                try:
                    ioloop.remove_timeout(t)
                except Exception:
                    pass
            if not self.conn.is_closed:
                self._abort(ioloop)
            try:
                ioloop.close()
            except Exception:
                pass
        if self.nacked:
            raise PublishError("the broker nacked {} message(s)".format(len(self.nacked)))
        if self.published and not self.pending:
            return len(self.acked)
        if self.error is not None:
            raise PublishError(self.error)
        raise PublishError("no publisher confirm within {}s".format(self.timeout))

    # Connection and channel callbacks.
    def _on_open(self, conn):
        conn.channel(on_open_callback=self._on_channel_open)

    def _on_open_error(self, conn, err):
        self._fail("cannot connect: {}".format(_describe(err)))
        self.conn.ioloop.stop()

    def _on_closed(self, conn, reason):
        if not self.done:
            self._fail("connection closed: {}".format(_describe(reason)))
        self.conn.ioloop.stop()

    def _on_channel_open(self, channel):
        self.channel = channel
        channel.add_on_close_callback(self._on_channel_closed)
        channel.confirm_delivery(ack_nack_callback=self._on_confirm, callback=self._on_confirm_selected)

    def _on_channel_closed(self, channel, reason):
        if not self.done:
            self._fail("channel closed: {}".format(_describe(reason)))
            self._finish()

    def _on_confirm_selected(self, _frame):
        if self.declare:
            self.channel.exchange_declare(
                exchange=self.exchange, exchange_type="fanout", durable=True, callback=self._on_declared
            )
        else:
            self._on_declared(None)

    def _on_declared(self, _frame):
        for tag, (body, message_id) in enumerate(self.messages, start=1):
            props = pika.BasicProperties(
                content_type="application/json",
                delivery_mode=2,
                message_id=message_id,
                timestamp=int(time.time()),
                app_id=APP_ID,
                type="salt",
            )
            self.channel.basic_publish(exchange=self.exchange, routing_key="", body=body, properties=props)
            self.pending.add(tag)
        self.published = True

    def _on_confirm(self, frame):
        method = frame.method
        tags = {t for t in self.pending if t <= method.delivery_tag} if method.multiple else {method.delivery_tag}
        if isinstance(method, pika.spec.Basic.Nack):
            self.nacked |= tags
        else:
            self.acked |= tags
        self.pending -= tags
        if not self.pending:
            self._finish()

    # Ending.
    def _on_deadline(self):
        if not self.done:
            self._fail("no answer within {}s".format(self.timeout))
            self._finish()

    def _fail(self, message):
        if self.error is None:
            self.error = message

    def _finish(self):
        if self.done:
            return
        self.done = True
        ioloop = self.conn.ioloop
        self._timers.append(ioloop.call_later(self.GRACE, ioloop.stop))
        try:
            if self.conn.is_open:
                self.conn.close()
            elif self.conn.is_closed:
                ioloop.stop()
            # Still opening: leave it to pika's own stack_timeout (the same
            # timeout, started a moment later). pika 1.2's Connection.close()
            # during the AMQP handshake trips an AssertionError in its
            # connection workflow (it reports the AMQPConnectionWorkflowAborted
            # class instead of an instance).
        except Exception:
            ioloop.stop()

    def _abort(self, ioloop):
        # Only when a graceful close did not finish within GRACE (the broker
        # stopped answering): drop the socket. pika has no public call for
        # this, and it completes on the event loop, so run that a moment more.
        self.done = True
        try:
            self.conn._adapter_disconnect_stream()
            timer = ioloop.call_later(0.5, ioloop.stop)
            ioloop.start()
            ioloop.remove_timeout(timer)
        except Exception:
            pass


def _describe(err):
    if err is None:
        return "unknown error"
    if not isinstance(err, BaseException):
        return str(err)
    text = str(err)
    # pika's AMQPConnectionError prints as "" and keeps the cause in args.
    return "{}: {}".format(type(err).__name__, text) if text else repr(err)


def _publish(messages, o):
    """Publish (body, message_id) pairs, after whatever the spool holds;
    spool them (and log a warning) on failure."""
    target = _Target(o)
    exchange = str(o["exchange"])
    spool = _Spool(o["spool_dir"], o["spool_max"]) if o.get("spool_dir") else None
    spooled = spool.load() if spool else []
    batch = [(body, mid) for _path, body, mid in spooled] + list(messages)
    try:
        n = _Publisher(target, exchange, not o["skip_declare"], o["timeout"]).run(batch)
        for path, _body, _mid in spooled:
            spool.delete(path)
        log.debug(
            "runlens_amqp: published %d job return(s) to %s exchange %s%s",
            n,
            target.display,
            exchange,
            " ({} spooled)".format(len(spooled)) if spooled else "",
        )
        return True
    except Exception as exc:
        reason = target.redact(exc if isinstance(exc, PublishError) else _describe(exc))
        where = "{} exchange {}".format(target.display, exchange)
        if spool is None:
            log.warning("runlens_amqp: could not publish %d job return(s) to %s: %s", len(messages), where, reason)
            return False
        try:
            dropped = spool.push(messages)
            log.warning(
                "runlens_amqp: could not publish %d job return(s) to %s: %s; spooled in %s (%d waiting%s)",
                len(messages),
                where,
                reason,
                spool.dir,
                len(spool.paths()),
                ", {} oldest dropped".format(dropped) if dropped else "",
            )
        except OSError as err:
            log.warning(
                "runlens_amqp: could not publish %d job return(s) to %s: %s; could not spool them either: %s",
                len(messages),
                where,
                reason,
                _safe_error(err),
            )
        return False
