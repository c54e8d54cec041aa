"""Write labloop plugins in pure Python (``plugins/PROTOCOL.md``, protocol ``labloop-plugin/1``).

A plugin is a program labloop starts; it reads one JSON message per line on standard input and
writes one per line on standard output. This module does the talking; you write handlers::

    from labloop_plugin import Plugin

    plugin = Plugin("lab-tools", version="1.0")

    @plugin.step("eis", inputs={"type": "object", "properties": {"amplitude_mv": {"type": "number"}}},
                 outputs={"r_ohmic_ohm": "ohm"})
    def eis(inputs, call):
        return {"r_ohmic_ohm": 0.021}

    plugin.run()

Durability: every call's id and result are journalled in the state folder labloop names in its
``hello`` (fsync'd before the reply is written), so a call repeated under the same id after a
crash of either side is answered from the journal and never carried out twice. A call that was
begun but has no result (the plugin died inside the handler) is answered with the error
``unknown_outcome`` unless its handler was declared ``idempotent=True``: labloop then fails
that attempt and its step's policy decides. Standard output belongs to the protocol: ``print``
goes to standard error (labloop keeps it in the campaign's plugin log).
"""

import json
import os
import sys
import traceback

PROTOCOL = "labloop-plugin/1"

__all__ = ["Plugin", "PluginError", "Call", "PROTOCOL"]


class PluginError(Exception):
    """Raise from a handler to answer with an error ``code`` (``bad_request``, ``busy``,
    ``instrument``, ``timeout``, ``internal``; for instrument calls ``BUSY``,
    ``UNKNOWN_CHANNEL``, ``BAD_COMMAND``, ``FAULT``)."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


class Call:
    """What a handler is told besides its inputs: the call's ``id`` (unique per action: use it
    to make an instrument's action idempotent), the ``experiment`` (id, cell_id, protocol,
    c_rates, formulation, parameters, attempt) and the plugin's ``state_dir``."""

    def __init__(self, id, experiment, state_dir):
        self.id = id
        self.experiment = experiment or {}
        self.state_dir = state_dir


def _outputs(outputs):
    """``{"name": "unit"}`` or ``{"name": {"unit": ..., "description": ...}}``."""
    out = {}
    for name, spec in (outputs or {}).items():
        out[name] = spec if isinstance(spec, dict) else {"unit": spec or ""}
    return out


class _Journal:
    """Results by call id, in an append-only JSON-lines file, synced before each reply."""

    def __init__(self, path):
        self.path = path
        self.begun = set()
        self.results = {}
        if path and os.path.exists(path):
            with open(path, "r", encoding="utf-8") as f:
                for line in f:
                    try:
                        entry = json.loads(line)
                    except ValueError:
                        continue  # a line cut short by a crash
                    if entry.get("begin"):
                        self.begun.add(entry["id"])
                    elif "reply" in entry:
                        self.results[entry["id"]] = entry["reply"]
        self.file = open(path, "a", encoding="utf-8") if path else None

    def _write(self, entry):
        if self.file is None:
            return
        self.file.write(json.dumps(entry) + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())

    def begin(self, id):
        self.begun.add(id)
        self._write({"id": id, "begin": True})

    def finish(self, id, reply):
        self.results[id] = reply
        self._write({"id": id, "reply": reply})


class Plugin:
    """A plugin: its name, version, handlers; ``run()`` serves labloop until it says ``shutdown``
    or closes standard input.

    ``persistent`` (default True) says the plugin keeps results by call id (the journal above);
    a plugin that cannot keep a state folder should pass ``persistent=False``, and labloop then
    never repeats a call that acts."""

    def __init__(self, name, version="0.0.0", persistent=True):
        self.name = name
        self.version = version
        self.persistent = persistent
        self.steps = {}
        self.measurements = {}
        self.models = {}
        self.instrument = None
        self.instrument_kind = None
        self.state_dir = None
        self.journal = _Journal(None)
        self._out = sys.stdout
        # Everything else printed goes to standard error, never into the protocol.
        sys.stdout = sys.stderr

    # -- declaring what the plugin offers --------------------------------------------------

    def step(self, name, inputs=None, outputs=None, description="", idempotent=False):
        """A step kind: ``handler(inputs, call) -> {output: value}``."""

        def register(handler):
            self.steps[name] = (handler, inputs, _outputs(outputs), description, idempotent)
            return handler

        return register

    def measurement(self, name, inputs=None, outputs=None, description=""):
        """A measurement (changes nothing): ``handler(inputs, call) -> {output: number}``; an
        output ``<name>_sigma`` is that output's standard deviation."""

        def register(handler):
            self.measurements[name] = (handler, inputs, _outputs(outputs), description, True)
            return handler

        return register

    def model(self, name, window=100, records=False, description=""):
        """A lifetime model: ``handler(features, records, call) -> {"cycle_life": ..., "sigma":
        ..., "out_of_domain": "why" (optional)}``. ``features`` is labloop's early-cycle features
        by name; ``records`` each early cycle's summary when ``records=True``."""

        def register(handler):
            self.models[name] = (handler, window, records, description)
            return handler

        return register

    def cycler(self, instrument, channels):
        """A cycler: ``instrument.handle(op) -> result`` for the operations of
        ``drivers/PROTOCOL.md`` (``identify``, ``start``, ``stop``, ``status``, ``data``), each
        op a dict as that document writes it; raise ``PluginError("BUSY", "ch01: ...")`` etc."""
        self.instrument = (instrument, channels)
        self.instrument_kind = "cycler"

    def cell_builder(self, instrument, channels=1):
        """A cell builder: ``instrument.handle(op)`` for ``identify`` and ``build``."""
        self.instrument = (instrument, channels)
        self.instrument_kind = "cell_builder"

    def event(self, topic, value):
        """Tells labloop something worth keeping with the campaign's log."""
        self._send({"type": "event", "topic": topic, "value": value})

    # -- serving ---------------------------------------------------------------------------

    def hello(self):
        caps = {}
        if self.steps:
            caps["steps"] = {
                n: {"description": d, "inputs": i, "outputs": o}
                for n, (_, i, o, d, _) in self.steps.items()
            }
        if self.measurements:
            caps["measurements"] = {
                n: {"description": d, "inputs": i, "outputs": o}
                for n, (_, i, o, d, _) in self.measurements.items()
            }
        if self.models:
            caps["models"] = {
                n: {"window": w, "records": r, "description": d}
                for n, (_, w, r, d) in self.models.items()
            }
        if self.instrument is not None:
            caps[self.instrument_kind] = {"channels": self.instrument[1]}
        for section in caps.values():
            if isinstance(section, dict):
                for op in section.values():
                    if isinstance(op, dict) and op.get("inputs") is None:
                        op.pop("inputs", None)
        return {
            "type": "hello",
            "protocol": PROTOCOL,
            "name": self.name,
            "version": self.version,
            "persistent": self.persistent,
            "capabilities": caps,
        }

    def _send(self, message):
        self._out.write(json.dumps(message, allow_nan=False) + "\n")
        self._out.flush()

    def _dispatch(self, method, params, call):
        if method == "ping":
            return {}, True
        if method in ("step.run", "measurement.read"):
            table = self.steps if method == "step.run" else self.measurements
            key = "step" if method == "step.run" else "measurement"
            name = params.get(key)
            if name not in table:
                raise PluginError("bad_request", "no %s %r" % (key, name))
            handler, _, outputs, _, idempotent = table[name]
            result = handler(params.get("inputs") or {}, call)
            if not isinstance(result, dict):
                raise PluginError("internal", "%s %r returned %r, not a dict" % (key, name, result))
            return result, idempotent
        if method == "model.predict":
            name = params.get("model")
            if name not in self.models:
                raise PluginError("bad_request", "no model %r" % name)
            handler = self.models[name][0]
            return handler(params.get("features") or {}, params.get("records"), call), True
        if method == "instrument":
            if self.instrument is None:
                raise PluginError("bad_request", "this plugin drives no instrument")
            return self.instrument[0].handle(params), True
        raise PluginError("bad_request", "unknown method %r" % method)

    def _call(self, message):
        id = message.get("id")
        method = message.get("method", "")
        params = message.get("params") or {}
        journalled = self.persistent and method in ("step.run", "measurement.read", "model.predict")
        if journalled and id in self.journal.results:
            reply = dict(self.journal.results[id])
            self._send(reply)
            return
        if journalled and id in self.journal.begun:
            handler_idempotent = method != "step.run" or self.steps.get(
                params.get("step"), (None, None, None, None, False)
            )[4]
            if not handler_idempotent:
                reply = {
                    "type": "error",
                    "id": id,
                    "code": "unknown_outcome",
                    "message": "call %s was begun before this plugin restarted and has no "
                    "result: it may or may not have been carried out" % id,
                }
                # Kept like any reply: the same id is answered the same way from now on.
                self.journal.finish(id, reply)
                self._send(reply)
                return
        if journalled:
            self.journal.begin(id)
        call = Call(id, params.get("experiment"), self.state_dir)
        try:
            value, _ = self._dispatch(method, params, call)
            reply = {"type": "result", "id": id, "value": value}
        except PluginError as e:
            reply = {"type": "error", "id": id, "code": e.code, "message": e.message}
        except Exception as e:  # a handler's bug: say so, keep serving
            traceback.print_exc()
            reply = {"type": "error", "id": id, "code": "internal", "message": repr(e)}
        if journalled:
            self.journal.finish(id, reply)
        self._send(reply)

    def run(self):
        """Serves labloop: answers ``hello``, then each ``call``, until ``shutdown`` or EOF."""
        for line in sys.stdin:
            line = line.strip()
            if not line:
                continue
            try:
                message = json.loads(line)
            except ValueError:
                print("labloop sent a line that is not JSON: %r" % line[:80], file=sys.stderr)
                continue
            kind = message.get("type")
            if kind == "hello":
                self.state_dir = message.get("state_dir") or None
                if self.persistent and self.state_dir:
                    os.makedirs(self.state_dir, exist_ok=True)
                    self.journal = _Journal(os.path.join(self.state_dir, "calls.jsonl"))
                self._send(self.hello())
            elif kind == "call":
                self._call(message)
            elif kind == "shutdown":
                return
            else:
                print("unknown message type %r" % kind, file=sys.stderr)
