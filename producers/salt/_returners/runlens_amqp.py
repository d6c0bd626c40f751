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
``state.sls``, ...); other functions' returns are skipped, as runlens would
reject them.

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

The same keys may be given as a dict (``runlens_amqp: {url: ..., ...}``), or
for one job with ``--return_config`` / ``--return_kwargs``.
"""

import datetime
import json
import logging
import re
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
}

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
        msg = _return_message(ret)
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
            if not isinstance(tag, str) or not _RET_TAG.match(tag):
                continue
            msg = _return_message(event.get("data"), tag=tag)
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


def _return_message(ret, tag=None):
    """(body, message_id) for a state-run return, else None."""
    if not isinstance(ret, dict) or "return" not in ret or not _is_state_run(ret.get("fun")):
        return None
    jid, minion = ret.get("jid"), ret.get("id")
    if not jid or not minion:
        return None
    data = {k: v for k, v in ret.items() if k not in _PRIVATE_KEYS}
    if not data.get("_stamp"):
        data["_stamp"] = _utc_stamp()
    if tag is None:
        tag = "salt/job/{}/ret/{}".format(jid, minion)
    body = json.dumps({"tag": tag, "data": data}, default=_json_default, separators=(",", ":"))
    return body.encode("utf-8"), "{}/{}".format(jid, minion)


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
    o["skip_declare"] = str(o["skip_declare"]).strip().lower() in ("1", "true", "yes", "on")
    if not o.get("password") and o.get("password_file"):
        with open(o["password_file"], encoding="utf-8") as f:
            o["password"] = f.readline().rstrip("\r\n")
    return o


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
        params = pika.URLParameters(
            urllib.parse.urlunsplit((parts.scheme, hostport, parts.path, parts.query, ""))
        )
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
    """Publish (body, message_id) pairs; log a warning on failure."""
    target = _Target(o)
    exchange = str(o["exchange"])
    try:
        n = _Publisher(target, exchange, not o["skip_declare"], o["timeout"]).run(messages)
        log.debug("runlens_amqp: published %d job return(s) to %s exchange %s", n, target.display, exchange)
        return True
    except Exception as exc:
        log.warning(
            "runlens_amqp: could not publish %d job return(s) to %s exchange %s: %s",
            len(messages),
            target.display,
            exchange,
            target.redact(exc if isinstance(exc, PublishError) else _describe(exc)),
        )
        return False
