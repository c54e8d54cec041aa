-- A cycler that does not measure a cell's internal resistance or temperature (most vendor
-- cyclers without auxiliary channels) leaves them out of its records: these columns may be NULL,
-- read back as NaN. SQLite cannot drop a NOT NULL constraint, so the table is rebuilt (on both
-- backends, one portable migration).
CREATE TABLE cycle_records_0015 (
    experiment_id TEXT NOT NULL REFERENCES experiments (id),
    cycle BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    charge_capacity_ah DOUBLE PRECISION NOT NULL,
    discharge_capacity_ah DOUBLE PRECISION NOT NULL,
    internal_resistance_ohm DOUBLE PRECISION,
    temperature_min_c DOUBLE PRECISION,
    temperature_avg_c DOUBLE PRECISION,
    temperature_max_c DOUBLE PRECISION,
    charge_time_s DOUBLE PRECISION NOT NULL,
    discharge_curve BYTEA,
    voltage_max_v DOUBLE PRECISION,
    voltage_min_v DOUBLE PRECISION,
    current_max_a DOUBLE PRECISION,
    PRIMARY KEY (experiment_id, cycle)
);
INSERT INTO cycle_records_0015 (experiment_id, cycle, seq, charge_capacity_ah, discharge_capacity_ah,
    internal_resistance_ohm, temperature_min_c, temperature_avg_c, temperature_max_c, charge_time_s,
    discharge_curve, voltage_max_v, voltage_min_v, current_max_a)
SELECT experiment_id, cycle, seq, charge_capacity_ah, discharge_capacity_ah,
    internal_resistance_ohm, temperature_min_c, temperature_avg_c, temperature_max_c, charge_time_s,
    discharge_curve, voltage_max_v, voltage_min_v, current_max_a
FROM cycle_records;
DROP TABLE cycle_records;
ALTER TABLE cycle_records_0015 RENAME TO cycle_records;
