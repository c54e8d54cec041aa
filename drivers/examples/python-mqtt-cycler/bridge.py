#!/usr/bin/env python3
"""A reference MQTT bridge for a battery cycler, written from drivers/PROTOCOL.md (1.1) alone.

It stands where a lab's own cycler would: replace `Channel.cycle_once` with a reading of your
instrument. Everything else is the protocol: identify/start/stop/status/replay/data, replies
remembered by command id, tests idempotent by key, telemetry with a gap-free `seq`, a retained
status with an `offline` last will, and a state file so tests, records and replies survive a
restart of the bridge.

    python bridge.py --broker mqtt://127.0.0.1:1883 --prefix labloop/lab1/cycler1 --channels 4

`labloop check-instrument --mqtt URL --prefix P` checks it. `--break RULE` breaks one rule on
purpose (for the checker's own tests); see BREAKS.
"""

import argparse
import json
import os
import random
import threading
import time
import urllib.parse

import paho.mqtt.client as mqtt

PROTOCOL = "1.1"
MODEL = "labloop reference bridge (python)"
REMEMBERED_IDS = 10_000

# Rules this bridge can be told to break, for testing a checker.
BREAKS = {
    "wrong-protocol": "identify and status say protocol 2.0",
    "no-status": "publish no retained status",
    "no-unknown-channel": "answer any channel name as an idle channel",
    "ignore-bad-command": "send no reply to a command it cannot read",
    "not-idempotent": "start with a known key starts the test again",
    "no-id-memory": "carry out a repeated command id again",
    "no-busy": "start another key over a running test",
    "seq-gap": "skip seq 2 in telemetry and data",
    "bad-curve": "send discharge curves with rising voltage",
    "no-replay-end": "send no end message after a replay",
    "stop-clears": "stop clears the channel's finished test",
    "forget-on-restart": "keep no state across a restart",
}


class Channel:
    """One channel: its test (the test JSON labloop sent), records by seq, and whether it ended."""

    def __init__(self, saved=None):
        saved = saved or {}
        self.test = saved.get("test")
        self.records = saved.get("records", [])
        self.ended = saved.get("ended", False)
        self.fault = saved.get("fault")
        self.started_at = saved.get("started_at", 0.0)

    @property
    def key(self):
        return self.test["key"] if self.test else None

    @property
    def running(self):
        return self.test is not None and not self.ended

    def cycle_once(self, rng, bad_curve):
        """The next cycle's record. A real bridge reads this off its instrument."""
        n = len(self.records) + 1
        cycle = self.test.get("cycles_before", 0) + n
        fade = 0.0004 * n * (1.0 + 0.1 * rng.random())
        capacity = 1.07 * (1.0 - fade)
        points = 64
        voltage = [3.55 - 1.55 * (k / (points - 1)) ** 1.5 - 0.3 * fade for k in range(points)]
        if bad_curve:
            voltage.reverse()
        return {
            "cycle": float(cycle),  # numpy/pandas write whole numbers as floats; labloop reads them
            "charge_capacity_ah": capacity * 1.001,
            "discharge_capacity_ah": capacity,
            "internal_resistance_ohm": 0.016 + 1e-6 * n,
            "temperature_min_c": 30.0,
            "temperature_avg_c": 32.0 + rng.random(),
            "temperature_max_c": 35.0,
            "charge_time_s": 600.0,
            "voltage_max_v": 3.6,
            "voltage_min_v": min(voltage),
            "current_max_a": 4.4,
            "discharge_curve": {
                "voltage_v": voltage,
                "capacity_ah": [capacity * k / (points - 1) for k in range(points)],
            },
        }


class Bridge:
    def __init__(self, args):
        self.args = args
        self.prefix = args.prefix.rstrip("/")
        self.broken = set(args.break_rules or [])
        self.lock = threading.RLock()
        self.rng = random.Random(args.seed)
        self.state_file = args.state
        saved = self.load()
        names = [f"ch{i:02d}" for i in range(1, args.channels + 1)]
        self.channels = {n: Channel(saved.get("channels", {}).get(n)) for n in names}
        self.replies = saved.get("replies", {})  # id -> reply payload (insertion ordered)
        url = urllib.parse.urlparse(args.broker)
        client_id = "bridge-" + self.prefix.replace("/", "-")
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  clean_session=False)
        if url.username:
            self.client.username_pw_set(url.username, url.password)
        self.client.will_set(self.topic("status"), self.status_payload("offline"), qos=1,
                             retain=True)
        self.client.on_connect = self.on_connect
        self.client.on_message = self.on_message
        self.client.connect(url.hostname or "127.0.0.1", url.port or 1883, keepalive=5)

    # -- state that survives a restart -------------------------------------------------------
    # An append-only journal (one JSON object per line, fsynced): each change is written before the
    # reply or record it covers is sent, and costs one short line however long the tests grow.
    def load(self):
        """The channels and replies the journal describes (empty without one)."""
        state = {"channels": {}, "replies": {}}
        if not self.state_file or "forget-on-restart" in self.broken:
            return state
        try:
            lines = open(self.state_file).read().splitlines()
        except FileNotFoundError:
            return state
        channels = state["channels"]
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line torn by a crash mid-write
            ch = channels.setdefault(entry.get("channel"), {"records": []})
            kind = entry["kind"]
            if kind == "start":
                channels[entry["channel"]] = {"test": entry["test"], "records": [],
                                              "started_at": entry["at"]}
            elif kind == "record":
                ch["records"].append(entry["record"])
            elif kind == "end":
                ch["ended"], ch["fault"] = True, entry.get("fault")
            elif kind == "clear":
                channels[entry["channel"]] = {"records": []}
            elif kind == "reply":
                state["replies"][entry["id"]] = entry["reply"]
        return state

    def journal(self, **entry):
        if not self.state_file:
            return
        line = json.dumps(entry) + "\n"
        with open(self.state_file, "a") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    # -- MQTT ----------------------------------------------------------------------------------
    def topic(self, name):
        return f"{self.prefix}/{name}"

    def protocol(self):
        return "2.0" if "wrong-protocol" in self.broken else PROTOCOL

    def status_payload(self, state):
        return json.dumps({"state": state, "protocol": self.protocol(), "model": MODEL,
                           "channels": list(self.channels) if hasattr(self, "channels") else []})

    def on_connect(self, client, userdata, flags, reason_code, properties):
        client.subscribe(self.topic("cmd"), qos=1)
        if "no-status" not in self.broken:
            client.publish(self.topic("status"), self.status_payload("online"), qos=1, retain=True)

    def publish(self, name, message):
        self.client.publish(self.topic(name), json.dumps(message), qos=1)

    def on_message(self, client, userdata, msg):
        try:
            command = json.loads(msg.payload)
            cid = command["id"]
        except (ValueError, KeyError, TypeError):
            return  # no id to answer to: counted as garbage, dropped
        with self.lock:
            if cid in self.replies and "no-id-memory" not in self.broken:
                reply = self.replies[cid]  # answered before: the same reply, not done again
            else:
                reply = self.execute(cid, command)
                if reply is None:
                    return
                self.replies[cid] = reply
                while len(self.replies) > REMEMBERED_IDS:
                    self.replies.pop(next(iter(self.replies)))
                self.journal(kind="reply", id=cid, reply=reply)
        self.publish("ack", reply)
        if command.get("op") == "replay" and reply.get("ok"):
            self.republish(command["channel"], int(command.get("from_seq", 1)))

    def execute(self, cid, command):
        def ok(result=None):
            return {"id": cid, "ok": True, "result": result or {}}

        def err(code, message):
            return {"id": cid, "ok": False, "error": {"code": code, "message": message}}

        op = command.get("op")
        if op == "identify":
            return ok({"model": MODEL, "protocol": self.protocol(), "channels": list(self.channels)})
        if op not in ("start", "stop", "status", "replay", "data"):
            if "ignore-bad-command" in self.broken:
                return None
            return err("BAD_COMMAND", f"unknown op {op!r} (this instrument is a cycler)")
        name = command.get("channel")
        ch = self.channels.get(name)
        if ch is None:
            if "no-unknown-channel" in self.broken:
                return ok({"state": "idle"})
            return err("UNKNOWN_CHANNEL", f"{name}: no such channel")
        if op == "start":
            test = command.get("test") or {}
            same = ch.key == test.get("key")
            if same and "not-idempotent" not in self.broken:
                return ok()
            if ch.running and not same and "no-busy" not in self.broken:
                return err("BUSY", f"{name}: busy with test {ch.key}")
            ch.test, ch.records, ch.ended, ch.fault = test, [], False, None
            ch.started_at = time.time()
            self.journal(kind="start", channel=name, test=test, at=ch.started_at)
            return ok()
        if op == "stop":
            if ch.running:
                ch.ended = True
                self.journal(kind="end", channel=name)
                self.end_message(name, ch)
            elif "stop-clears" in self.broken:
                ch.test, ch.records = None, []
                self.journal(kind="clear", channel=name)
            return ok()
        if op == "status":
            if ch.test is None:
                return ok({"state": "idle", "test_key": None})
            if ch.fault:
                return ok({"state": "faulted", "reason": ch.fault, "test_key": ch.key})
            state = "finished" if ch.ended else "running"
            return ok({"state": state, "cycle": len(ch.records), "test_key": ch.key})
        if op == "replay":
            return ok({"count": len(self.records_from(ch, int(command.get("from_seq", 1))))})
        if op == "data":
            records = self.records_from(ch, int(command.get("from_seq", 1)))
            result = {"test_key": ch.key, "records": records[: int(command.get("max", 100))]}
            if ch.ended:
                result["end_seq"] = len(ch.records)
                if ch.fault:
                    result["fault"] = ch.fault
            return ok(result)
        return None

    def records_from(self, ch, from_seq):
        out = [{"seq": s, "record": r} for s, r in enumerate(ch.records, start=1) if s >= from_seq]
        if "seq-gap" in self.broken:
            out = [r for r in out if r["seq"] != 2]
        return out

    def end_message(self, name, ch):
        message = {"test_key": ch.key, "end_seq": len(ch.records)}
        if ch.fault:
            message["fault"] = ch.fault
        self.publish(f"telemetry/{name}", message)

    def republish(self, name, from_seq):
        with self.lock:
            ch = self.channels[name]
            for r in self.records_from(ch, from_seq):
                self.publish(f"telemetry/{name}", {"test_key": ch.key, **r})
            if ch.ended and "no-replay-end" not in self.broken:
                self.end_message(name, ch)

    # -- the instrument ------------------------------------------------------------------------
    def run(self):
        self.client.loop_start()
        while True:
            time.sleep(self.args.cycle_seconds)
            with self.lock:
                for name, ch in self.channels.items():
                    if not ch.running:
                        continue
                    record = ch.cycle_once(self.rng, "bad-curve" in self.broken)
                    ch.records.append(record)
                    seq = len(ch.records)
                    done = seq >= int(ch.test.get("cycles", 0))
                    ch.ended = done
                    # Stored before it is sent.
                    self.journal(kind="record", channel=name, record=record)
                    if done:
                        self.journal(kind="end", channel=name)
                    if not ("seq-gap" in self.broken and seq == 2):
                        self.publish(f"telemetry/{name}",
                                     {"test_key": ch.key, "seq": float(seq), "record": record,
                                      "ts": time.time()})
                    if done:
                        self.end_message(name, ch)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", default="mqtt://127.0.0.1:1883")
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--channels", type=int, default=4)
    parser.add_argument("--cycle-seconds", type=float, default=1.0,
                        help="wall time per simulated cycle")
    parser.add_argument("--state",
                        help="journal file: tests, records and replies survive a restart")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--break", dest="break_rules", action="append", choices=sorted(BREAKS),
                        help="break one rule on purpose (testing a checker)")
    Bridge(parser.parse_args()).run()


if __name__ == "__main__":
    main()
