"""A Neware BTS 8 for labloop's tests. Neware ships no simulator, so this one answers in the
shapes of the responses aurora-neware captured from a real BTS 8 (connect_resp, getdevinfo_resp,
getchlstatus_resp, inquire_resp, start_resp, stop_resp: a `<bts version="1.0">` document per
message, ended by "\\n\\n#\\r\\n"), and its channels cycle the cell of `cycling_cell.py`.

A start names a step file (the path in the <start> element): the harness reads the protocol back
from it (the first four timed constant-current charge steps' rates, the CC step to a voltage, the
discharge, the loop's cycle count), as the BTS would run it. Time runs `--acceleration` times
faster than the wall clock.

`--username`/`--password` are the only login accepted. Faults on request: `--garbage-every N`,
`--truncate-every N` (replies), `--busy CH` (channel CH, 0-based, running a test nobody asked
for). `--state FILE` keeps the channels' tests, so a restarted harness goes on with them.
Prints `READY <port>` once it listens.
"""

import argparse
import json
import os
import socketserver
import sys
import threading
import time
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cycling_cell

TERMINATOR = b"\n\n#\r\n"
HEAD = '<?xml version="1.0" encoding="UTF-8"?>\r\n<bts version="1.0">\r\n'


def protocol_of(path):
    """The cycling cell's variables from a step file."""
    config = ET.parse(path).getroot().find("config")
    charges, finish, discharge, cycles = [], 1.0, 1.0, 1
    for step in config.find("Step_Info"):
        kind = step.get("Step_Type")
        main = step.find("Limit/Main")
        rate = main.find("Rate") if main is not None else None
        if kind == "1" and main.find("Time") is not None:
            charges.append(float(rate.get("Value")))
        elif kind == "1":
            finish = float(rate.get("Value"))
        elif kind == "2":
            discharge = float(rate.get("Value"))
        elif kind == "5":
            cycles = int(step.find("Limit/Other/Cycle_Count").get("Value"))
    charges = (charges + [1.0] * 4)[:4]
    variables = {str(k + 1): r for k, r in enumerate(charges)}
    variables.update({"5": finish, "6": discharge, "7": cycles})
    return variables


class Lab:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.requests = 0
        self.channels = {}
        if args.state and os.path.exists(args.state):
            with open(args.state) as f:
                self.channels = {int(k): v for k, v in json.load(f).items()}
        if args.busy is not None and args.busy not in self.channels:
            self.channels[args.busy] = {"vars": {"7": 100000}, "started": time.time(),
                                        "stopped_at": None, "barcode": "someone-else",
                                        "starts": 0, "stops": 0}
        self.save()

    def save(self):
        if self.args.state:
            tmp = self.args.state + ".tmp"
            with open(tmp, "w") as f:
                json.dump(self.channels, f)
            os.replace(tmp, self.args.state)

    def cell(self, test):
        end = test["stopped_at"] or time.time()
        tau = (end - test["started"]) * self.args.acceleration
        return cycling_cell.at(tau, {int(k): v for k, v in test["vars"].items()})

    def status(self, ch):
        test = self.channels.get(ch)
        if test is None:
            return "finish", None
        if test["stopped_at"] is not None:
            return "stop", self.cell(test)
        cell = self.cell(test)
        return ("finish" if cell["phase"] == "complete" else "working"), cell

    def start(self, ch, path, barcode):
        with self.lock:
            if self.status(ch)[0] == "working":
                return "false"
            try:
                variables = protocol_of(path)
            except Exception:
                return "false"
            previous = self.channels.get(ch, {"starts": 0, "stops": 0})
            self.channels[ch] = {"vars": variables, "started": time.time(), "stopped_at": None,
                                 "barcode": barcode, "starts": previous["starts"] + 1,
                                 "stops": previous["stops"], "file": path}
            self.save()
            return "ok"

    def stop(self, ch):
        with self.lock:
            test = self.channels.get(ch)
            if test and test["stopped_at"] is None:
                test["stopped_at"] = time.time()
                test["stops"] += 1
                self.save()
            return "ok"

    def inquire(self, ch):
        with self.lock:
            status, cell = self.status(ch)
            test = self.channels.get(ch, {})
            dev = f"27-21-1-{ch + 1}-0"
            if cell is None:
                return (f'<inquire dev="{dev}" cycle_id="1" step_type="--" workstatus="finish" '
                        'barcode="" current="0" voltage="3.2" capacity="0" energy="0" '
                        'totaltime="0" relativetime="0" open_or_close="0" log_code="0" />')
            kind = {"rest": "rest", "charge": "cc", "discharge": "dc", "complete": "--"}[cell["phase"]]
            current = 0.0 if status == "stop" else cell["current"]
            return (f'<inquire dev="{dev}" cycle_id="{cell["cycle"] + 1}" step_id="{cell["step"]}" '
                    f'step_type="{kind}" workstatus="{status}" barcode="{test.get("barcode", "")}" '
                    f'current="{current:.6f}" voltage="{cell["voltage"]:.5f}" '
                    f'capacity="{cell["step_ah"]:.7f}" energy="{cell["step_ah"] * cell["voltage"]:.7f}" '
                    f'totaltime="{cell["test_time"]:.3f}" relativetime="{cell["step_time"]:.3f}" '
                    'open_or_close="0" log_code="102000" />')


def reply(body):
    return (HEAD + body + "</bts>").encode() + TERMINATOR


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--acceleration", type=float, default=3600.0)
    parser.add_argument("--username", default="admin")
    parser.add_argument("--password", default="neware")
    parser.add_argument("--garbage-every", type=int, default=0)
    parser.add_argument("--truncate-every", type=int, default=0)
    parser.add_argument("--busy", type=int, default=None)
    parser.add_argument("--state", default=None)
    args = parser.parse_args()
    lab = Lab(args)

    def answer(text):
        root = ET.fromstring(text)
        cmd = root.findtext("cmd")
        if cmd == "connect":
            ok = root.findtext("username") == args.username and root.findtext("password") == args.password
            return reply(f"  <cmd>connect_resp</cmd>\r\n  <result>{'ok' if ok else 'fail'}</result>\r\n")
        if cmd == "getdevinfo":
            rows = "".join(
                f'    <channel ip="127.0.0.1" devtype="27" devid="21" subdevid="1" Channelid="{c + 1}">true</channel>\r\n'
                for c in range(args.channels))
            return reply('  <cmd>getdevinfo_resp</cmd>\r\n  <serverip count="1">\r\n'
                         '    <server ip="127.0.0.1" port="3306" />\r\n  </serverip>\r\n'
                         f'  <middle count="{args.channels}">\r\n{rows}</middle>\r\n')
        items = list(root.find("list"))
        out = []
        for item in items:
            ch = int(item.get("chlid")) - 1
            if not (0 <= ch < args.channels):
                out.append(f'    <{item.tag} chlid="{ch + 1}">false</{item.tag}>\r\n')
            elif cmd == "inquire":
                out.append("    " + lab.inquire(ch) + "\r\n")
            elif cmd == "start":
                result = lab.start(ch, item.text, item.get("barcode", ""))
                out.append(f'    <start ip="127.0.0.1" devtype="27" devid="21" subdevid="1" chlid="{ch + 1}">{result}</start>\r\n')
            elif cmd == "stop":
                result = lab.stop(ch)
                out.append(f'    <stop ip="127.0.0.1" devtype="27" devid="21" subdevid="1" chlid="{ch + 1}">{result}</stop>\r\n')
            elif cmd == "getchlstatus":
                status = lab.status(ch)[0]
                out.append(f'    <status ip="127.0.0.1" devtype="27" devid="21" subdevid="1" chlid="{ch + 1}" reservepause="1">{status}</status>\r\n')
        return reply(f"  <cmd>{cmd}_resp</cmd>\r\n  <list count=\"{len(out)}\">\r\n{''.join(out)}  </list>\r\n")

    class Handler(socketserver.BaseRequestHandler):
        def handle(self):
            buffer = b""
            while True:
                data = self.request.recv(65536)
                if not data:
                    return
                buffer += data
                while TERMINATOR in buffer:
                    message, buffer = buffer.split(TERMINATOR, 1)
                    with lab.lock:
                        lab.requests += 1
                        n = lab.requests
                    out = answer(message.decode())
                    if args.garbage_every and n % args.garbage_every == 0:
                        out = b"\x00\x13 BTS garbage <<" + TERMINATOR
                    elif args.truncate_every and n % args.truncate_every == 0:
                        out = out[: len(out) // 2] + TERMINATOR
                    self.request.sendall(out)

    socketserver.ThreadingTCPServer.allow_reuse_address = True
    server = socketserver.ThreadingTCPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"READY {args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
