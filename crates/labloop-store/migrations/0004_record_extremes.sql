-- Per-cycle voltage and current extremes, when the cycler reports them (the safety interlocks read them).
ALTER TABLE cycle_records ADD COLUMN voltage_max_v DOUBLE PRECISION;
ALTER TABLE cycle_records ADD COLUMN voltage_min_v DOUBLE PRECISION;
ALTER TABLE cycle_records ADD COLUMN current_max_a DOUBLE PRECISION;
