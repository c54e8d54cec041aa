"""Reference parses of the fixture files by established Python readers, for labloop-import's
conformance tests (tests/conformance.rs). Run once, its output recorded in expected.json:

    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install navani==0.1.22 battery-data-toolkit==0.4.6
    /tmp/ref/bin/python tests/reference/reference.py $LABLOOP_SHARED_DATA/cyclers > tests/reference/expected.json

For each file: the reader used and, in Ah, the total charge and discharge capacity over the
whole file and each half cycle's (a charge or a discharge between rests or reversals), which do
not depend on how a reader numbers cycles. batterydata's raw file also gets its published
per-cycle summary (p492-13-summary.csv: Q_chg, Q_dis, E_chg, E_dis per Cycle_Index).
"""
import json
import sys
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
import navani.echem as ec  # noqa: E402
import pandas as pd  # noqa: E402
from battdat.io.arbin import ArbinReader  # noqa: E402
from battdat.postprocess.integral import CapacityPerCycle  # noqa: E402

root = Path(sys.argv[1])
out = {}

# navani: half cycles of its `Capacity` (reset each half cycle), in its units (mAh; Arbin's Ah
# converted to mAh).
for name in ["navani/maccor_example.txt", "navani/test.nda", "navani/test.ndax",
             "navani/jdb11-1_c3_gcpl_5cycles_2V-3p8V_C-24_data_C09.mpr",
             "navani/bs542_004_gr_li_50ua_50mv_1v_191020_Channel_11.xlsx",
             "navani/NJK_CC_156_C30_C_x30.xlsx", "navani/test_without_capacity.bdf"]:
    df = ec.echem_file_loader(str(root / name))
    halves = []
    for half, rows in df.groupby("half cycle"):
        states = set(rows["state"]) - {"R"}
        if len(states) != 1:
            continue
        state = states.pop()
        halves.append(("charge" if state == 0 else "discharge", float(rows["Capacity"].max()) / 1000.0))
    out[name] = {
        "reader": "navani 0.1.22 echem_file_loader, half cycles",
        "charge_halves_ah": [q for k, q in halves if k == "charge"],
        "discharge_halves_ah": [q for k, q in halves if k == "discharge"],
    }

# battery-data-toolkit: its Arbin reader and its per-cycle integral of the current.
name = "battery-data-toolkit/arbin_example.csv"
dataset = ArbinReader().read_dataset([str(root / name)])
summary = CapacityPerCycle(reuse_integrals=False).compute_features(dataset)
out[name] = {
    "reader": "battery-data-toolkit 0.4.6 ArbinReader + CapacityPerCycle (integral of the current)",
    "cycles": [
        {"source_cycle": int(r.cycle_number), "charge_capacity_ah": float(r.capacity_charge),
         "discharge_capacity_ah": float(r.capacity_discharge),
         "charge_energy_wh": float(r.energy_charge), "discharge_energy_wh": float(r.energy_discharge)}
        for r in summary.itertuples()
    ],
}

# batterydata's own per-cycle summary of p492-13.
name = "battery-data-toolkit/batterydata/p492-13-raw.csv"
s = pd.read_csv(root / "battery-data-toolkit/batterydata/p492-13-summary.csv")
out[name] = {
    "reader": "batterydata.energy.gov published summary p492-13-summary.csv",
    "cycles": [
        {"source_cycle": int(r.Cycle_Index),
         "charge_capacity_ah": None if pd.isna(r.Q_chg) else float(r.Q_chg),
         "discharge_capacity_ah": None if pd.isna(r.Q_dis) else float(r.Q_dis),
         "charge_energy_wh": None if pd.isna(r.E_chg) else float(r.E_chg),
         "discharge_energy_wh": None if pd.isna(r.E_dis) else float(r.E_dis)}
        for r in s.itertuples()
    ],
}
json.dump(out, sys.stdout, indent=1)
print()
