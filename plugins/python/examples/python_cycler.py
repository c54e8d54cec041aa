#!/usr/bin/env python3
"""Example labloop plugin: a battery cycler in pure Python.

It speaks the instrument operations of ``drivers/PROTOCOL.md`` (identify, start, stop, status,
data) as ``instrument`` calls, so labloop drives it like any cycler, with no broker and no
serial line. Replace ``Cell.record`` with readings of your own instrument; everything else is
the protocol: tests idempotent by key, records with a gap-free ``seq``, ``BUSY`` and
``UNKNOWN_CHANNEL`` refusals, and the channels' tests kept in the plugin's state folder so a
restarted plugin carries on the same tests.

This example's cells are simulated on an accelerated clock (``--cycle-seconds``, real seconds
per cycle): capacity fades faster the harder a cell is charged (the mean square of its charge
C-rates), with an extra penalty above 6C, so a campaign has something to find.

    python3 python_cycler.py --channels 8 --cycle-seconds 0.01
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from labloop_plugin import Plugin, PluginError  # noqa: E402

MODEL = "labloop example cycler (python plugin)"
PROTOCOL = "1.1"
NOMINAL_AH = 1.1


def fade_per_cycle(rates):
    mean_square = sum(r * r for r in rates) / len(rates)
    peak = max(rates)
    return 0.00012 * (1.0 + 0.08 * mean_square) + 0.0004 * max(0.0, peak - 6.0) ** 2


def record(test, n):
    """Cycle ``n`` (from 1) of ``test``: what a real cycler reads off the cell."""
    rates = [s["c_rate"] for s in test["protocol"]["steps"]] or [1.0]
    fade = fade_per_cycle(rates) * n
    capacity = NOMINAL_AH * max(0.3, 1.0 - fade)
    points = 100
    voltage = [3.55 - 1.5 * (k / (points - 1)) ** 1.4 - 0.2 * fade for k in range(points)]
    return {
        "cycle": test.get("cycles_before", 0) + n,
        "charge_capacity_ah": capacity * 1.0005,
        "discharge_capacity_ah": capacity,
        "internal_resistance_ohm": 0.016 * (1.0 + fade),
        "temperature_min_c": 30.0,
        "temperature_avg_c": 31.0 + 0.1 * max(rates),
        "temperature_max_c": 32.0 + 0.3 * max(rates),
        "charge_time_s": 600.0,
        "discharge_curve": {
            "voltage_v": voltage,
            "capacity_ah": [capacity * k / (points - 1) for k in range(points)],
        },
    }


class Cycler:
    def __init__(self, channels, cycle_seconds, state_file):
        self.names = ["ch%02d" % (i + 1) for i in range(channels)]
        self.cycle_seconds = cycle_seconds
        self.state_file = state_file
        self.channels = {name: None for name in self.names}
        if state_file and os.path.exists(state_file):
            with open(state_file, encoding="utf-8") as f:
                self.channels.update(json.load(f))

    def save(self):
        if not self.state_file:
            return
        tmp = self.state_file + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.channels, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.state_file)

    def done(self, ch):
        """Cycles the channel's test has run so far."""
        if ch.get("stopped_after") is not None:
            return ch["stopped_after"]
        ran = int((time.time() - ch["started_at"]) / self.cycle_seconds)
        return min(ran, ch["test"]["cycles"])

    def channel(self, op):
        name = op.get("channel")
        if name not in self.channels:
            raise PluginError("UNKNOWN_CHANNEL", "%s: no such channel" % name)
        return name, self.channels[name]

    def handle(self, op):
        kind = op.get("op")
        if kind == "identify":
            return {"model": MODEL, "protocol": PROTOCOL, "channels": self.names}
        if kind == "start":
            name, ch = self.channel(op)
            test = op["test"]
            if ch is not None and ch["test"]["key"] == test["key"]:
                return {}
            if ch is not None and self.done(ch) < ch["test"]["cycles"] and ch.get("stopped_after") is None:
                raise PluginError("BUSY", "%s: busy with test %s" % (name, ch["test"]["key"]))
            self.channels[name] = {"test": test, "started_at": time.time(), "stopped_after": None}
            self.save()
            return {}
        if kind == "stop":
            name, ch = self.channel(op)
            if ch is not None and ch.get("stopped_after") is None:
                ch["stopped_after"] = self.done(ch)
                self.save()
            return {}
        if kind == "status":
            name, ch = self.channel(op)
            if ch is None:
                return {"state": "idle", "test_key": None}
            ended = ch.get("stopped_after") is not None or self.done(ch) >= ch["test"]["cycles"]
            return {"state": "finished" if ended else "running", "cycle": self.done(ch),
                    "test_key": ch["test"]["key"]}
        if kind == "data":
            name, ch = self.channel(op)
            if ch is None:
                return {"test_key": None, "records": []}
            done = self.done(ch)
            start = max(1, int(op.get("from_seq", 1)))
            end = min(done, start + int(op.get("max", 50)) - 1)
            records = [{"seq": s, "record": record(ch["test"], s)} for s in range(start, end + 1)]
            reply = {"test_key": ch["test"]["key"], "records": records}
            if ch.get("stopped_after") is not None or done >= ch["test"]["cycles"]:
                reply["end_seq"] = done
            return reply
        raise PluginError("BAD_COMMAND", "unknown op %r (this instrument is a cycler)" % kind)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--cycle-seconds", type=float, default=0.01)
    args = parser.parse_args()
    plugin = Plugin("python-cycler", version="1.0.0")

    class Lazy:
        """The cycler, made once labloop's hello names the state folder."""
        cycler = None

        def handle(self, op):
            if self.cycler is None:
                state = os.path.join(plugin.state_dir, "channels.json") if plugin.state_dir else None
                self.cycler = Cycler(args.channels, args.cycle_seconds, state)
            return self.cycler.handle(op)

    plugin.cycler(Lazy(), channels=args.channels)
    plugin.run()


if __name__ == "__main__":
    main()
