#!/usr/bin/env python3
"""Example labloop plugin: a custom step and a measurement.

- step ``eis``: an impedance spectrum of the cell, summarised (ohmic and charge-transfer
  resistance). A real lab drives its potentiostat here; this example computes a plausible
  spectrum from the cell's charge protocol so the example runs anywhere.
- measurement ``retention``: capacity retention (%) after the early cycles, from the cycle
  step's last capacity and the cell's nominal capacity (the workflow passes both in ``with:``),
  with its σ: an objective beyond cycle life.

Every action the step carries out is appended to the file named by ``LAB_TOOLS_LEDGER`` (if
set), one line per call id, so a test can check that nothing was done twice.
``LAB_TOOLS_EIS_SECONDS`` makes the step take that long (a real spectrum takes minutes);
``LAB_TOOLS_PID`` names a file the plugin writes its process id to (so a test can kill it).

Run by labloop (``plugins: [{name: lab-tools, command: [python3, lab_tools.py]}]``); needs only
the SDK (``pip install ./plugins/python``, or run from the repository).
"""

import math
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from labloop_plugin import Plugin, PluginError  # noqa: E402

plugin = Plugin("lab-tools", version="1.0.0")

EIS_INPUTS = {
    "type": "object",
    "properties": {
        "amplitude_mv": {"type": "number", "exclusiveMinimum": 0, "maximum": 50},
        "f_min_hz": {"type": "number", "exclusiveMinimum": 0},
        "f_max_hz": {"type": "number", "exclusiveMinimum": 0},
        "points_per_decade": {"type": "integer", "minimum": 1, "maximum": 20},
    },
    "required": ["amplitude_mv"],
    "additionalProperties": False,
}


@plugin.step(
    "eis",
    inputs=EIS_INPUTS,
    outputs={"r_ohmic_ohm": "ohm", "r_ct_ohm": "ohm", "points": ""},
    description="Impedance spectrum at open circuit, summarised",
)
def eis(inputs, call):
    seconds = float(os.environ.get("LAB_TOOLS_EIS_SECONDS", "0"))
    if seconds > 0:
        time.sleep(seconds)
    f_min = float(inputs.get("f_min_hz", 0.1))
    f_max = float(inputs.get("f_max_hz", 1e5))
    if f_min >= f_max:
        raise PluginError("bad_request", "f_min_hz must be below f_max_hz")
    per_decade = int(inputs.get("points_per_decade", 10))
    points = int(math.log10(f_max / f_min) * per_decade) + 1
    rates = call.experiment.get("c_rates") or [1.0]
    stress = sum(r * r for r in rates) / len(rates)
    r_ohmic = 0.018 + 0.0002 * stress
    r_ct = 0.010 + 0.0006 * stress
    ledger = os.environ.get("LAB_TOOLS_LEDGER")
    if ledger:
        with open(ledger, "a", encoding="utf-8") as f:
            f.write("eis %s %s\n" % (call.experiment.get("id"), call.id))
            f.flush()
            os.fsync(f.fileno())
    return {"r_ohmic_ohm": r_ohmic, "r_ct_ohm": r_ct, "points": points}


RETENTION_INPUTS = {
    "type": "object",
    "properties": {
        "capacity_ah": {"type": "number", "exclusiveMinimum": 0},
        "nominal_ah": {"type": "number", "exclusiveMinimum": 0},
    },
    "required": ["capacity_ah", "nominal_ah"],
    "additionalProperties": False,
}


@plugin.measurement(
    "retention",
    inputs=RETENTION_INPUTS,
    outputs={"retention_pct": "%", "retention_pct_sigma": "%"},
    description="Capacity retention after the early cycles",
)
def retention(inputs, call):
    value = 100.0 * inputs["capacity_ah"] / inputs["nominal_ah"]
    # The cycler's capacity is good to about 0.1 % of nominal.
    return {"retention_pct": value, "retention_pct_sigma": 0.1}


if __name__ == "__main__":
    pid_file = os.environ.get("LAB_TOOLS_PID")
    if pid_file:
        with open(pid_file, "w", encoding="utf-8") as f:
            f.write(str(os.getpid()))
    plugin.run()
