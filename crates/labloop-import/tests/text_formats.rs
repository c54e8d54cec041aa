//! The text formats without a public example file among the fixtures, written here as their
//! software lays them out (header blocks, separators, decimal commas, clocks, state letters):
//! each is told by content, and its per-cycle capacities are the ones its counters say.

use labloop_import::import;

fn read(text: &str, name: &str) -> labloop_import::ImportedFile {
    import(text.as_bytes(), name, None).unwrap_or_else(|e| panic!("{e}"))
}

fn close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-9, "{a} vs {b}");
}

#[test]
fn biologic_mpt_with_decimal_commas() {
    let text = "EC-Lab ASCII FILE\r\n\
Nb header lines : 5\r\n\
\r\n\
Galvanostatic Cycling with Potential Limitation\r\n\
mode\tox/red\terror\tcontrol changes\tNs changes\tcounter inc.\tNs\ttime/s\tcontrol/V/mA\tEwe/V\tI/mA\tdq/mA.h\t(Q-Qo)/mA.h\tcycle number\tQ discharge/mA.h\tQ charge/mA.h\r\n\
1\t1\t0\t0\t0\t0\t0\t0,0\t1,0\t3,00\t1,0\t0,0\t0,0\t0,000000000000000E+000\t0,0\t0,0\r\n\
1\t1\t0\t0\t0\t0\t0\t1800,0\t1,0\t3,40\t1,0\t0,5\t0,5\t0,000000000000000E+000\t0,0\t0,5\r\n\
1\t1\t0\t0\t0\t0\t0\t3600,0\t1,0\t3,60\t1,0\t0,5\t1,0\t0,000000000000000E+000\t0,0\t1,0\r\n\
1\t0\t0\t0\t0\t0\t1\t3601,0\t-1,0\t3,50\t-1,0\t0,0\t1,0\t0,000000000000000E+000\t0,0\t1,0\r\n\
1\t0\t0\t0\t0\t0\t1\t7200,0\t-1,0\t2,50\t-1,0\t-0,9\t0,1\t0,000000000000000E+000\t0,9\t1,0\r\n\
1\t1\t0\t0\t0\t0\t0\t7201,0\t1,0\t3,00\t1,0\t0,0\t0,1\t1,000000000000000E+000\t0,0\t0,0\r\n\
1\t1\t0\t0\t0\t0\t0\t10800,0\t1,0\t3,60\t1,0\t0,8\t0,9\t1,000000000000000E+000\t0,0\t0,8\r\n";
    let file = read(text, "gcpl_C01.mpt");
    assert_eq!(file.format, "biologic-mpt");
    let c = &file.cells[0].cycles;
    assert_eq!(c.len(), 2);
    // `cycle number` counts from 0: labloop's cycles 1 and 2.
    assert_eq!((c[0].cycle, c[0].source_cycle), (1, Some(0)));
    close(c[0].charge_capacity_ah, 0.001);
    close(c[0].discharge_capacity_ah, 0.0009);
    close(c[1].charge_capacity_ah, 0.0008);
}

#[test]
fn novonix_csv_under_its_summary_block() {
    let text = "[Summary]\n\
Cell: NVX-12\n\
Protocol: CC 1C\n\
[End Summary]\n\
[Data]\n\
Date and Time,Cycle Number,Step Type,Run Time (h),Step Time (h),Current (A),Potential (V),Capacity (Ah),Temperature (°C),Circuit Temperature (°C),Energy (Wh)\n\
2021-03-01 10:00:00 AM,0,0,0,0,0,3.40,0,25.0,24.0,0\n\
2021-03-01 10:00:01 AM,0,1,0.0003,0.0003,1.0,3.45,0.0003,25.0,24.0,0.001\n\
2021-03-01 11:00:00 AM,0,1,1.0,1.0,1.0,4.20,1.0,26.0,24.0,3.9\n\
2021-03-01 11:00:01 AM,0,2,1.0003,0.0003,-1.0,4.10,0.0003,26.0,24.0,0.001\n\
2021-03-01 12:00:00 PM,0,2,2.0,1.0,-1.0,3.00,0.98,25.5,24.0,3.6\n";
    let file = read(text, "nvx.csv");
    assert_eq!(file.format, "novonix");
    let c = &file.cells[0].cycles;
    assert_eq!(c.len(), 1);
    // Per-step counters, direction from the current's sign; the reset into the discharge step
    // counts its new value.
    close(c[0].charge_capacity_ah, 1.0);
    close(c[0].discharge_capacity_ah, 0.98);
    close(c[0].end_time_s, 7200.0);
    assert!((c[0].temperature_max_c.unwrap() - 26.0).abs() < 1e-9);
}

#[test]
fn neware_csv_with_clock_times() {
    let text = "DataPoint,Cycle Index,Step Index,Step Type,Time,Total Time,Current(A),Voltage(V),Capacity(Ah),Spec. Cap.(mAh/g),Chg. Cap.(Ah),DChg. Cap.(Ah),Energy(Wh),Chg. Energy(Wh),DChg. Energy(Wh),Date\n\
1,1,1,Rest,00:00:00,00:00:00,0.0000,3.3000,0.0000,0.00,0.0000,0.0000,0.0000,0.0000,0.0000,2022-05-01 09:00:00\n\
2,1,2,CC Chg,00:00:01,00:00:01,0.5000,3.4000,0.0001,0.10,0.0001,0.0000,0.0004,0.0004,0.0000,2022-05-01 09:00:01\n\
3,1,2,CC Chg,02:00:00,02:00:00,0.5000,3.6500,1.0000,300.0,1.0000,0.0000,3.4000,3.4000,0.0000,2022-05-01 11:00:00\n\
4,1,3,CC DChg,00:00:01,02:00:01,-0.5000,3.3000,0.0001,0.10,0.0000,0.0001,0.0003,0.0000,0.0003,2022-05-01 11:00:01\n\
5,1,3,CC DChg,01:55:00,03:55:00,-0.5000,2.5000,0.9500,285.0,0.0000,0.9500,3.0000,0.0000,3.0000,2022-05-01 12:55:00\n";
    let file = read(text, "neware.csv");
    assert_eq!(file.format, "neware-csv");
    let c = &file.cells[0].cycles;
    close(c[0].charge_capacity_ah, 1.0);
    close(c[0].discharge_capacity_ah, 0.95);
    close(c[0].discharge_energy_wh, 3.0);
    // `Total Time` (a clock) is the test time, not the step's `Time`.
    close(c[0].end_time_s, 3.0 * 3600.0 + 55.0 * 60.0);
}

#[test]
fn maccor_newer_header_style() {
    let text = "Rec\tCycle P\tCycle C\tStep\tTest Time (sec)\tStep Time (sec)\tCapacity (Ah)\tEnergy (Wh)\tCurrent (A)\tVoltage (V)\tMd\tES\tDPT Time\n\
1\t0\t0\t1\t0.000\t0.000\t0.0000\t0.0000\t0.0000\t3.3000\tR\t0\t01-Jan-21 10:00:00 AM\n\
2\t0\t0\t2\t10.000\t10.000\t0.0010\t0.0035\t0.3600\t3.4000\tC\t0\t01-Jan-21 10:00:10 AM\n\
3\t0\t0\t2\t10000.000\t9990.0\t1.0000\t3.7000\t0.3600\t3.6000\tC\t5\t01-Jan-21 12:46:40 PM\n\
4\t0\t0\t3\t10010.000\t10.000\t0.0010\t0.0034\t0.3600\t3.3000\tD\t0\t01-Jan-21 12:46:50 PM\n\
5\t0\t0\t3\t20000.000\t9990.0\t0.9800\t3.1000\t0.3600\t2.5000\tD\t5\t01-Jan-21 03:33:20 PM\n\
6\t1\t1\t2\t20010.000\t10.000\t0.0010\t0.0035\t0.3600\t3.4000\tC\t0\t01-Jan-21 03:33:30 PM\n\
7\t1\t1\t2\t30000.000\t9990.0\t0.9900\t3.6600\t0.3600\t3.6000\tC\t5\t01-Jan-21 06:20:00 PM\n";
    let file = read(text, "maccor.073");
    assert_eq!(file.format, "maccor");
    let c = &file.cells[0].cycles;
    assert_eq!(c.len(), 2);
    close(c[0].charge_capacity_ah, 1.0);
    close(c[0].discharge_capacity_ah, 0.98);
    close(c[0].discharge_energy_wh, 3.1);
    close(c[1].charge_capacity_ah, 0.99);
    // `Md` D makes the (unsigned) current a discharge.
    assert!(c[0].discharge_curve.is_some());
}
