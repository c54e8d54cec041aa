//! Examples of the labloop library API live under `[[example]]` entries.
