"""The cell every vendor harness of labloop's tests cycles: what a channel reads at any moment of
a test, computed from the test's start, so a harness answers each reading request consistently
however often it is asked.

The procedure (the variables labloop sets): a 60 s rest, then per cycle four constant-current
charge steps of 20 % SOC each at C-rates var 1..4, a CC step to full at var 5 (C-rates of the
nominal 1.1 Ah), a discharge to empty at var 6, then the next cycle; after var 7 cycles the test
is complete. Capacity fades faster the harder the cell is charged.
"""

NOMINAL_AH = 1.1
R_OHM = 0.03
REST_S = 60.0


def fade_per_cycle(rates):
    """Capacity lost per cycle, as a fraction of nominal: 0.024 % at 1C, growing with the square
    of the mean charge rate (0.16 % at 6C; labloop's tests compare their records with this)."""
    mean_rate = sum(rates) / len(rates)
    return 0.0002 * (1.0 + 0.2 * mean_rate ** 2)


def capacity(cycle, variables):
    """The cell's capacity (Ah) in cycle `cycle` (from 0): what it takes and gives."""
    rates = [float(variables.get(k, 1.0)) for k in (1, 2, 3, 4)]
    return NOMINAL_AH * max(0.2, 1.0 - fade_per_cycle(rates) * cycle)


def ocv(soc):
    """Open-circuit voltage: 2.0 V empty to 3.6 V full, flat near full, so that a 4C discharge
    spends a fifth of its time above 3.3 V and a seventh below 2.2 V even on a harness's fast
    clock (the predictor reads Q(V) between them)."""
    soc = min(max(soc, 0.0), 1.0)
    return 2.0 + 1.6 * (1.0 - (1.0 - soc) ** 1.5)


def at(tau, variables):
    """The channel `tau` seconds into its test. `variables` maps 1..7 to the test's values.
    Returns phase ('rest', 'charge', 'discharge', 'complete'), cycle (from 0), step (from 1),
    step_time, step_ah (this step's charge so far), cycle_charge_ah and cycle_discharge_ah (this
    cycle's so far), current (A, negative discharging), voltage, test_time."""
    var = lambda n, default: float(variables.get(n, default))
    rates = [var(k, 1.0) for k in (1, 2, 3, 4)]
    finish, discharge, cycles = var(5, 1.0), var(6, 1.0), int(var(7, 1e9))
    state = dict(phase="rest", cycle=0, step=1, step_time=tau, step_ah=0.0, cycle_charge_ah=0.0,
                 cycle_discharge_ah=0.0, current=0.0, voltage=ocv(0.0), test_time=tau)
    if tau < REST_S:
        return state
    t, step = REST_S, 1
    for cycle in range(cycles):
        q = capacity(cycle, variables)
        soc, charged = 0.0, 0.0
        for rate in rates + [finish]:
            step += 1
            amps = rate * NOMINAL_AH
            duration = 0.2 * q / amps * 3600.0
            if tau < t + duration:
                dt = tau - t
                ah = amps * dt / 3600.0
                return dict(state, phase="charge", cycle=cycle, step=step, step_time=dt,
                            step_ah=ah, cycle_charge_ah=charged + ah, current=amps,
                            voltage=min(ocv(soc + ah / q) + R_OHM * amps, 3.65))
            t += duration
            soc += 0.2
            charged += 0.2 * q
        step += 1
        amps = discharge * NOMINAL_AH
        duration = q / amps * 3600.0
        if tau < t + duration:
            dt = tau - t
            ah = amps * dt / 3600.0
            return dict(state, phase="discharge", cycle=cycle, step=step, step_time=dt,
                        step_ah=ah, cycle_charge_ah=charged, cycle_discharge_ah=ah,
                        current=-amps, voltage=max(ocv(1.0 - ah / q) - R_OHM * amps, 2.0))
        t += duration
    return dict(state, phase="complete", cycle=cycles, step=step + 1, step_time=0.0, test_time=t)
