"""A Maccor for labloop's tests: pymacnet's own MaccorSpoofer serves MacNet's JSON interface, and
this harness gives its channels cells that cycle.

MaccorSpoofer answers every MacNet request with the vendor's message shapes but keeps its channel
readings fixed. The harness watches the requests the spoofer receives (start with procedure,
set variable, reset) and, before each status request, writes the channel's reading at that moment
into the spoofer (`update_channel_status`), so labloop reads a cell that charges, discharges and
fades. Time runs `--acceleration` times faster than the wall clock.

The cell and the procedure every channel runs are `cycling_cell.py`'s (procedure variables 1..7).

Faults on request: `--garbage-every N` replaces every Nth reply by bytes that are not JSON,
`--truncate-every N` cuts every Nth reply short, `--busy CH` starts with channel CH (0-based)
running a test nobody asked for. `--state FILE` keeps the channels' tests in a file, so a
harness started again goes on with them, as a Maccor's channels run on when MacNet restarts.
Prints `READY <port>` once it listens.
"""

import argparse
import json
import os
import sys
import threading
import time

import importlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# The package re-exports the class under its module's name: fetch the module itself.
spoofer_module = importlib.import_module("pymacnet.maccorspoofer.MaccorSpoofer")
MaccorSpoofer = spoofer_module.MaccorSpoofer

import cycling_cell


class Lab:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.channels = {}
        self.requests = 0
        if args.state and os.path.exists(args.state):
            with open(args.state) as f:
                self.channels = {int(k): v for k, v in json.load(f).items()}
        if args.busy is not None and args.busy not in self.channels:
            self.channels[args.busy] = self.new_test("someone-elses-test", {})
        self.save()

    def new_test(self, name, variables):
        return {"name": name, "vars": dict(variables), "t0": time.time(), "stat": 2,
                "starts": 0, "resets": 0, "stopped_at": None}

    def save(self):
        if self.args.state:
            tmp = self.args.state + ".tmp"
            with open(tmp, "w") as f:
                json.dump(self.channels, f)
            os.replace(tmp, self.args.state)

    def start(self, ch, params):
        with self.lock:
            current = self.channels.get(ch)
            if current and current["stopped_at"] is None and self.reading(ch)["Stat"] == 2:
                return "Channel is active"
            starts = (current or {}).get("starts", 0) + 1
            resets = (current or {}).get("resets", 0)
            self.channels[ch] = self.new_test(params.get("TestName", ""), {})
            self.channels[ch]["starts"] = starts
            self.channels[ch]["resets"] = resets
            self.save()
            return "OK"

    def set_var(self, ch, number, value):
        with self.lock:
            if ch in self.channels:
                self.channels[ch]["vars"][str(number)] = value
                self.save()

    def reset(self, ch):
        with self.lock:
            if ch in self.channels:
                test = self.channels[ch]
                if test["stopped_at"] is None:
                    test["stopped_at"] = time.time()
                test["resets"] += 1
                self.save()

    def reading(self, ch):
        """The channel's status reading now, computed from its test's start."""
        test = self.channels.get(ch)
        base = {"Stat": 0, "Cycle": 0, "Step": 0, "TestTime": 0.0, "StepTime": 0.0,
                "Capacity": 0.0, "Energy": 0.0, "Current": 0.0, "Voltage": 3.2, "LastRecNum": 0}
        if test is None:
            return base
        end = test["stopped_at"] or time.time()
        tau = (end - test["t0"]) * self.args.acceleration
        variables = {int(k): v for k, v in test["vars"].items()}
        cell = cycling_cell.at(tau, variables)
        return dict(base, Stat=4 if cell["phase"] == "complete" else 2, Cycle=cell["cycle"],
                    Step=cell["step"], TestTime=cell["test_time"], StepTime=cell["step_time"],
                    Capacity=cell["step_ah"], Energy=cell["step_ah"] * cell["voltage"],
                    Current=cell["current"], Voltage=cell["voltage"],
                    LastRecNum=int(cell["test_time"]))

    def status(self, ch):
        with self.lock:
            reading = self.reading(ch)
            test = self.channels.get(ch)
            if test and test["stopped_at"] is not None:
                reading.update(Stat=0, Current=0.0)
            return reading


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--acceleration", type=float, default=3600.0)
    parser.add_argument("--garbage-every", type=int, default=0)
    parser.add_argument("--truncate-every", type=int, default=0)
    parser.add_argument("--busy", type=int, default=None)
    parser.add_argument("--state", default=None)
    args = parser.parse_args()

    lab = Lab(args)
    spoofer = MaccorSpoofer({"server_ip": "127.0.0.1", "json_port": args.port,
                             "tcp_port": 0, "num_channels": args.channels})
    original = spoofer_module._JsonWorker._process_client_msg

    def process(worker, rx_msg):
        with lab.lock:
            lab.requests += 1
            n = lab.requests
        try:
            message = json.loads(rx_msg)
            params = message["params"]
            op = (params["FClass"], params["FNum"])
            ch = params.get("Chan")
        except Exception:
            return b'{"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}}\r\n'
        if ch is not None and not (0 <= ch < args.channels):
            return (json.dumps({"jsonrpc": "2.0", "error": {"code": -32602,
                    "message": f"no channel {ch}"}, "id": message.get("id")}) + "\r\n").encode()
        refusal = None
        if op == (6, 2):
            result = lab.start(ch, params)
            if result != "OK":
                refusal = result
        elif op == (6, 9):
            lab.set_var(ch, params["VarNum"], params["Value"])
        elif op == (6, 5):
            lab.reset(ch)
        elif op == (4, 7):
            spoofer.update_channel_status(ch, lab.status(ch))
        reply = original(worker, rx_msg)
        if refusal is not None:
            body = json.loads(reply)
            body["result"]["Result"] = refusal
            reply = (json.dumps(body, indent=4) + "\r\n").encode()
        if args.garbage_every and n % args.garbage_every == 0:
            return b"\x00\x13 MacNet garbage {{{\r\n"
        if args.truncate_every and n % args.truncate_every == 0:
            return reply[: len(reply) // 2] + b"\r\n"
        return reply

    spoofer_module._JsonWorker._process_client_msg = process
    spoofer.start()
    # The spoofer binds in its server thread: wait until the port answers.
    import socket
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", args.port), timeout=0.1).close()
            break
        except OSError:
            time.sleep(0.02)
    print(f"READY {args.port}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
