"""An Arbin for labloop's tests: pycti-arbin's own ArbinSpoofer serves MITS Pro's CTI interface,
and this harness gives its channels cells that cycle (`cycling_cell.py`, user variables 1..7).

ArbinSpoofer answers every CTI request with the vendor's frames but keeps its channel readings
fixed and accepts any login. The harness watches the requests (login, assign schedule with its
user variables, start, stop) and, before each channel-info request, writes the channel's reading
at that moment into the spoofer, so labloop reads a cell that charges, discharges and fades; the
charge and discharge counters run over the whole test. Time runs `--acceleration` times faster
than the wall clock.

`--username`/`--password` are the only login accepted. Faults on request: `--garbage-every N`
replaces every Nth reply by bytes that are not a frame, `--truncate-every N` cuts every Nth
reply short, `--busy CH` starts with channel CH (0-based) running a test nobody asked for.
`--state FILE` keeps the channels' tests in a file, so a harness started again goes on with
them. Prints `READY <port>` once it listens.
"""

import argparse
import importlib
import json
import os
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cycling_cell
from pyctiarbin.messages import Msg

spoofer_module = importlib.import_module("pyctiarbin.arbinspoofer.arbin_spoofer")

CHARGE, DISCHARGE, REST, FINISHED, IDLE = 2, 3, 4, 15, 0


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
            self.channels[args.busy] = dict(self.blank(), started=time.time(), name="someone-else")
        self.save()

    def blank(self):
        return {"vars": {}, "schedule": "", "name": "", "started": None, "stopped_at": None,
                "starts": 0, "stops": 0}

    def save(self):
        if self.args.state:
            tmp = self.args.state + ".tmp"
            with open(tmp, "w") as f:
                json.dump(self.channels, f)
            os.replace(tmp, self.args.state)

    def running(self, ch):
        test = self.channels.get(ch)
        return bool(test and test["started"] and test["stopped_at"] is None
                    and self.cell(test)["phase"] != "complete")

    def cell(self, test):
        end = test["stopped_at"] or time.time()
        tau = (end - test["started"]) * self.args.acceleration
        return cycling_cell.at(tau, {int(k): v for k, v in test["vars"].items()})

    def assign(self, ch, message):
        with self.lock:
            if self.running(ch):
                return 20
            previous = self.channels.get(ch) or self.blank()
            test = dict(self.blank(), starts=previous["starts"], stops=previous["stops"])
            test["schedule"] = message["schedule"]
            test["vars"] = {str(k): message[f"user_variable_{k}"] for k in range(1, 17)}
            self.channels[ch] = test
            self.save()
            return 0

    def start(self, ch, name):
        with self.lock:
            test = self.channels.get(ch)
            if test is None or not test["schedule"]:
                return 21
            if self.running(ch):
                return 18
            test.update(started=time.time(), stopped_at=None, name=name, starts=test["starts"] + 1)
            self.save()
            return 0

    def stop(self, ch):
        with self.lock:
            test = self.channels.get(ch)
            if test and test["started"] and test["stopped_at"] is None:
                test["stopped_at"] = time.time()
                test["stops"] += 1
                self.save()
            return 0

    def info(self, ch):
        with self.lock:
            test = self.channels.get(ch)
            if test is None or not test["started"]:
                return {"status": IDLE}
            cell = self.cell(test)
            variables = {int(k): v for k, v in test["vars"].items()}
            before = sum(cycling_cell.capacity(n, variables) for n in range(cell["cycle"]))
            status = {"rest": REST, "charge": CHARGE, "discharge": DISCHARGE,
                      "complete": FINISHED}[cell["phase"]]
            if test["stopped_at"] is not None:
                status = IDLE
            v = cell["voltage"]
            return {"status": status, "test_time_s": cell["test_time"],
                    "step_time_s": cell["step_time"], "voltage_v": v,
                    "current_a": cell["current"] if status != IDLE else 0.0,
                    "charge_capacity_ah": before + cell["cycle_charge_ah"],
                    "discharge_capacity_ah": before + cell["cycle_discharge_ah"],
                    "charge_energy_wh": (before + cell["cycle_charge_ah"]) * 3.3,
                    "discharge_energy_wh": (before + cell["cycle_discharge_ah"]) * 3.1,
                    "internal_resistance_ohm": cycling_cell.R_OHM,
                    "schedule": test["schedule"], "testname": test["name"]}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--acceleration", type=float, default=3600.0)
    parser.add_argument("--username", default="labloop")
    parser.add_argument("--password", default="")
    parser.add_argument("--garbage-every", type=int, default=0)
    parser.add_argument("--truncate-every", type=int, default=0)
    parser.add_argument("--busy", type=int, default=None)
    parser.add_argument("--state", default=None)
    args = parser.parse_args()

    lab = Lab(args)
    spoofer = spoofer_module.ArbinSpoofer(
        {"ip": "127.0.0.1", "port": args.port, "num_channels": args.channels})
    original = spoofer_module.SocketWorker._SocketWorker__process_client_msg

    def process(worker, rx_msg):
        with lab.lock:
            lab.requests += 1
            n = lab.requests
        code = struct.unpack("<L", rx_msg[12:16])[0]
        reply = None
        if code == Msg.Login.Client.command_code:
            login = Msg.Login.Client.unpack(rx_msg)
            ok = login["username"] == args.username and login["password"] == args.password
            reply = Msg.Login.Server.pack({"num_channels": args.channels, "result": 1 if ok else 2})
        elif code == Msg.AssignSchedule.Client.command_code:
            message = Msg.AssignSchedule.Client.unpack(rx_msg)
            result = lab.assign(message["channel"], message)
            reply = Msg.AssignSchedule.Server.pack({"channel": message["channel"],
                                                    "result": chr(result)})
        elif code == Msg.StartSchedule.Client.command_code:
            message = Msg.StartSchedule.Client.unpack(rx_msg)
            result = lab.start(message["channel"], message["test_name"])
            reply = Msg.StartSchedule.Server.pack({"channel": message["channel"],
                                                   "result": chr(result)})
        elif code == Msg.StopSchedule.Client.command_code:
            message = Msg.StopSchedule.Client.unpack(rx_msg)
            lab.stop(message["channel"])
        elif code == Msg.ChannelInfo.Client.command_code:
            message = Msg.ChannelInfo.Client.unpack(rx_msg)
            spoofer.update_channel_status(message["channel"], lab.info(message["channel"]))
        if reply is None:
            reply = original(worker, rx_msg)
        if args.garbage_every and n % args.garbage_every == 0:
            return b"\x00\x13 CTI garbage " + bytes(range(40))
        if args.truncate_every and n % args.truncate_every == 0:
            return reply[: len(reply) // 2]
        return reply

    spoofer_module.SocketWorker._SocketWorker__process_client_msg = process
    spoofer.start()
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
